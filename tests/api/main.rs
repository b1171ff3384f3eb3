//! Integration tests: the real server on a random port, driven as WeChat's servers drive it.

mod helpers;

mod admin;
mod bad_input;
mod handoff;
mod pages;
mod process;
mod protocol;
mod reload;
mod retries;
mod verification;
