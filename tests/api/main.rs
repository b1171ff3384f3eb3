//! Integration tests: the real server on a random port, driven as WeChat's servers drive it.

/// The fake platform of `tests/platform.rs`, shared; not every helper is used here.
#[allow(dead_code)]
#[path = "../platform/fake.rs"]
mod fake;
mod helpers;

mod admin;
mod assistant;
mod bad_input;
/// ChromeDriver helpers shared by the browser stories.
mod browser;
mod dashboard;
mod dashbrowser;
mod edge;
/// The fake OpenAI-compatible model API, shared by the model client's tests and the assistant
/// stories; not every control is used by every story.
#[allow(dead_code)]
mod fakeai;
/// The fake WeChat Pay, shared by the payment stories; not every control is used by every story.
#[allow(dead_code)]
mod fakepay;
mod faults;
mod handoff;
mod metrics;
mod model;
mod pages;
mod pay;
mod paybrowser;
mod process;
mod protocol;
mod reload;
mod retries;
mod unanswered;
mod verification;
mod webhook;
