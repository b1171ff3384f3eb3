//! One question being answered: who may still take its answer, and who delivers it when
//! nobody does.
//!
//! A question outlives the request that asked it: the model is called once, in its own task,
//! and the platform's retries of the push come back for the answer. Each request for the push
//! gets a turn ([`Pending::attempt`]); the answer is taken exactly once, either by a request as
//! its passive reply, or by the task (customer-service messages, or kept for the continue
//! word). The decision is made under one lock, so two requests never both reply with it and a
//! request never replies with an answer the task already sent.
//!
//! Owns only this in-memory state; may depend on std, tokio and the store's types.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::sync::lock;

/// How a late answer can still reach the subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Customer-service messages through the outbox.
    CustomerService,
    /// The platform's retries, then the continue word.
    Hold,
}

/// The platform's attempts at one push: the first and two retries.
pub const ATTEMPTS: u32 = 3;

/// How long past its budget a request that must not answer yet keeps its connection open: the
/// platform hangs up at 5 s and sends its retry then; the extra second covers a retry that is a
/// little late, so the platform never gets an answer early enough to stop retrying.
pub const HOLD_PAST_BUDGET: Duration = Duration::from_millis(2500);

/// The answer, as the task finished it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// In order; each fits one passive reply.
    pub parts: Vec<String>,
    /// The rule's fallback (the endpoint failed), not the model's answer.
    pub fallback: bool,
}

/// Who ends up with the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Nobody yet: a request may still take it.
    Open,
    /// A request replied with it.
    Taken,
    /// The task sends it as customer-service messages.
    ByCustomerService,
    /// The task keeps it for the continue word.
    Kept,
    /// Not to be delivered (a hand-off began).
    Dropped,
}

#[derive(Debug)]
struct Slot {
    answer: Option<Finished>,
    fate: Fate,
}

/// What one request for the push ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum Held {
    /// Reply with the answer (the request that took it); `attempt` 1 is the first request.
    Answer { finished: Finished, attempt: u32 },
    /// Reply with the continue prompt: the answer is kept for the continue word.
    Prompt,
    /// Reply `success`: the answer goes out as customer-service messages, or this request's
    /// connection is gone and a newer one took over.
    Success,
    /// Another request already replied with the answer: replay the stored one.
    Replay,
}

/// One question being answered.
#[derive(Debug)]
pub struct Pending {
    pub openid: String,
    pub mode: Mode,
    /// How long a request waits for the answer before replying without it.
    pub budget: Duration,
    /// When the question arrived.
    pub asked: Instant,
    attempts: AtomicU32,
    slot: Mutex<Slot>,
    /// Rung when the answer arrives, when its fate is decided, and when a new attempt comes.
    bell: Notify,
}

impl Pending {
    pub fn new(openid: String, mode: Mode, budget: Duration, asked: Instant) -> Pending {
        Pending {
            openid,
            mode,
            budget,
            asked,
            attempts: AtomicU32::new(0),
            slot: Mutex::new(Slot {
                answer: None,
                fate: Fate::Open,
            }),
            bell: Notify::new(),
        }
    }

    /// Requests that came for this push so far.
    pub fn attempts(&self) -> u32 {
        self.attempts.load(Ordering::Acquire)
    }

    pub fn fate(&self) -> Fate {
        lock(&self.slot).fate
    }

    /// One request for the push, arrived at `arrived`: waits for the answer within the budget,
    /// then decides by the mode what it replies without it.
    pub async fn attempt(&self, arrived: Instant) -> Held {
        let n = self.attempts.fetch_add(1, Ordering::AcqRel) + 1;
        self.bell.notify_waiters();
        let deadline = arrived + self.budget;
        loop {
            let rung = self.bell.notified();
            tokio::pin!(rung);
            rung.as_mut().enable();
            {
                let mut slot = lock(&self.slot);
                match slot.fate {
                    Fate::Open => {
                        if let Some(finished) = slot.answer.take() {
                            slot.fate = Fate::Taken;
                            return Held::Answer {
                                finished,
                                attempt: n,
                            };
                        }
                    }
                    Fate::Taken => return Held::Replay,
                    Fate::Kept => return Held::Prompt,
                    Fate::ByCustomerService | Fate::Dropped => return Held::Success,
                }
                if Instant::now() >= deadline {
                    match self.mode {
                        Mode::CustomerService => {
                            slot.fate = Fate::ByCustomerService;
                            drop(slot);
                            self.bell.notify_waiters();
                            return Held::Success;
                        }
                        Mode::Hold if n >= ATTEMPTS => {
                            slot.fate = Fate::Kept;
                            drop(slot);
                            self.bell.notify_waiters();
                            return Held::Prompt;
                        }
                        Mode::Hold => break,
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = tokio::time::timeout(left, rung).await;
        }
        // Hold: no reply before the platform hangs up, so that it retries; the answer is left
        // for the retry (this connection may already be gone). Wait for the retry to arrive,
        // so the platform cannot see this request end early.
        let until = deadline + HOLD_PAST_BUDGET;
        while self.attempts() == n && Instant::now() < until {
            let rung = self.bell.notified();
            tokio::pin!(rung);
            rung.as_mut().enable();
            if self.attempts() != n {
                break;
            }
            let left = until.saturating_duration_since(Instant::now());
            let _ = tokio::time::timeout(left, rung).await;
        }
        Held::Success
    }

    /// The task's answer arrived. Returns the fate already decided for it (`Open`: a request
    /// may take it now).
    pub fn finish(&self, finished: Finished) -> (Fate, Option<Finished>) {
        let mut slot = lock(&self.slot);
        let fate = slot.fate;
        let back = match fate {
            Fate::Open => {
                slot.answer = Some(finished);
                None
            }
            _ => Some(finished),
        };
        drop(slot);
        self.bell.notify_waiters();
        (fate, back)
    }

    /// After [`Pending::finish`] left the answer open: waits up to `grace` for a request to
    /// take it; if none does, the task takes it back to deliver it by `mode`.
    pub async fn unclaimed_after(&self, grace: Duration) -> Option<Finished> {
        let until = Instant::now() + grace;
        loop {
            let rung = self.bell.notified();
            tokio::pin!(rung);
            rung.as_mut().enable();
            {
                let mut slot = lock(&self.slot);
                if slot.fate != Fate::Open {
                    return None;
                }
                if Instant::now() >= until {
                    slot.fate = match self.mode {
                        Mode::CustomerService => Fate::ByCustomerService,
                        Mode::Hold => Fate::Kept,
                    };
                    return slot.answer.take();
                }
            }
            let left = until.saturating_duration_since(Instant::now());
            let _ = tokio::time::timeout(left, rung).await;
        }
    }

    /// The continue word arrived while the answer is being written: waits up to `wait` for
    /// it; `Some` when this caller now owns it (it was open, or kept and not yet stored).
    pub async fn pull(&self, wait: Duration) -> Option<Finished> {
        let until = Instant::now() + wait;
        loop {
            let rung = self.bell.notified();
            tokio::pin!(rung);
            rung.as_mut().enable();
            {
                let mut slot = lock(&self.slot);
                if matches!(slot.fate, Fate::Open | Fate::Kept) {
                    if let Some(finished) = slot.answer.take() {
                        slot.fate = Fate::Taken;
                        return Some(finished);
                    }
                } else {
                    return None;
                }
            }
            if Instant::now() >= until {
                return None;
            }
            let left = until.saturating_duration_since(Instant::now());
            let _ = tokio::time::timeout(left, rung).await;
        }
    }

    /// A hand-off began: whatever the answer, it is not delivered.
    pub fn drop_answer(&self) {
        let mut slot = lock(&self.slot);
        if matches!(slot.fate, Fate::Open | Fate::Kept | Fate::ByCustomerService) {
            slot.fate = Fate::Dropped;
            slot.answer = None;
        }
        drop(slot);
        self.bell.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(t: &str) -> Finished {
        Finished {
            parts: vec![t.to_string()],
            fallback: false,
        }
    }

    #[tokio::test]
    async fn an_answer_ready_within_the_budget_is_the_first_requests_reply() {
        let p = Pending::new(
            "o".into(),
            Mode::Hold,
            Duration::from_millis(300),
            Instant::now(),
        );
        let (held, _) = tokio::join!(p.attempt(Instant::now()), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            p.finish(answer("hi"))
        });
        assert_eq!(
            held,
            Held::Answer {
                finished: answer("hi"),
                attempt: 1
            }
        );
        assert_eq!(p.fate(), Fate::Taken);
    }

    #[tokio::test]
    async fn with_customer_service_a_late_answer_is_left_to_the_task() {
        let p = Pending::new(
            "o".into(),
            Mode::CustomerService,
            Duration::from_millis(100),
            Instant::now(),
        );
        assert_eq!(p.attempt(Instant::now()).await, Held::Success);
        let (fate, back) = p.finish(answer("late"));
        assert_eq!(fate, Fate::ByCustomerService);
        assert_eq!(back, Some(answer("late")), "the task delivers it");
    }

    #[tokio::test]
    async fn holding_the_first_request_leaves_a_late_answer_for_the_retry() {
        let p = Pending::new(
            "o".into(),
            Mode::Hold,
            Duration::from_millis(100),
            Instant::now(),
        );
        let first = p.attempt(Instant::now());
        let rest = async {
            // Ready after the first request's budget: it must not take it.
            tokio::time::sleep(Duration::from_millis(150)).await;
            assert_eq!(p.finish(answer("x")).0, Fate::Open);
            tokio::time::sleep(Duration::from_millis(50)).await;
            p.attempt(Instant::now()).await
        };
        let (first, retry) = tokio::join!(first, rest);
        assert_eq!(first, Held::Success);
        assert_eq!(
            retry,
            Held::Answer {
                finished: answer("x"),
                attempt: 2
            }
        );
    }

    #[tokio::test]
    async fn the_last_retry_without_the_answer_replies_the_prompt_and_the_answer_is_kept() {
        let p = Pending::new(
            "o".into(),
            Mode::Hold,
            Duration::from_millis(40),
            Instant::now(),
        );
        // Three requests, each superseded by the next.
        let a = p.attempt(Instant::now());
        let b = async {
            tokio::time::sleep(Duration::from_millis(60)).await;
            p.attempt(Instant::now()).await
        };
        let c = async {
            tokio::time::sleep(Duration::from_millis(120)).await;
            p.attempt(Instant::now()).await
        };
        let (a, b, c) = tokio::join!(a, b, c);
        assert_eq!((a, b, c), (Held::Success, Held::Success, Held::Prompt));
        let (fate, back) = p.finish(answer("kept"));
        assert_eq!(fate, Fate::Kept);
        assert_eq!(
            back,
            Some(answer("kept")),
            "the task stores it for the continue word"
        );
    }

    #[tokio::test]
    async fn an_answer_nobody_takes_goes_back_to_the_task() {
        let p = Pending::new(
            "o".into(),
            Mode::Hold,
            Duration::from_millis(40),
            Instant::now(),
        );
        assert_eq!(p.finish(answer("x")).0, Fate::Open);
        assert_eq!(
            p.unclaimed_after(Duration::from_millis(30)).await,
            Some(answer("x"))
        );
        assert_eq!(p.fate(), Fate::Kept);
        assert_eq!(p.attempt(Instant::now()).await, Held::Prompt);
    }

    #[tokio::test]
    async fn a_taken_answer_is_replayed_to_a_later_request() {
        let p = Pending::new(
            "o".into(),
            Mode::Hold,
            Duration::from_millis(40),
            Instant::now(),
        );
        p.finish(answer("x"));
        assert!(matches!(
            p.attempt(Instant::now()).await,
            Held::Answer { .. }
        ));
        assert_eq!(p.attempt(Instant::now()).await, Held::Replay);
        assert_eq!(p.unclaimed_after(Duration::ZERO).await, None);
    }

    #[tokio::test]
    async fn the_continue_word_takes_an_answer_still_being_written() {
        let p = Pending::new(
            "o".into(),
            Mode::Hold,
            Duration::from_millis(10),
            Instant::now(),
        );
        let (pulled, _) = tokio::join!(p.pull(Duration::from_millis(500)), async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            p.finish(answer("y"))
        });
        assert_eq!(pulled, Some(answer("y")));
        assert_eq!(p.fate(), Fate::Taken);
    }

    #[tokio::test]
    async fn a_hand_off_drops_the_answer() {
        let p = Pending::new(
            "o".into(),
            Mode::CustomerService,
            Duration::from_millis(10),
            Instant::now(),
        );
        p.drop_answer();
        let (fate, _) = p.finish(answer("z"));
        assert_eq!(fate, Fate::Dropped);
        assert_eq!(p.attempt(Instant::now()).await, Held::Success);
    }
}
