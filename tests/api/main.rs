//! Integration tests: the real server on a random port, driven as WeChat's servers drive it.

mod helpers;

mod admin;
mod bad_input;
mod pages;
mod process;
mod protocol;
mod retries;
mod verification;
