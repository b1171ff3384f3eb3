//! Retry single flight: one push is handled once however many times the platform sends it.
//!
//! The platform gives up on an answer after 5 s and sends the same push again (up to three
//! times in all). A retry that arrives while the first attempt is still being handled (a slow
//! webhook, say) must not handle the push a second time: it waits here for the first attempt's
//! answer, then reads it where every later retry does (the dedupe memory). If the first attempt
//! ends without an answer (an error, or its future was dropped because the platform hung up),
//! one waiter takes over at once rather than sitting out its wait.
//!
//! Owns only the in-flight map; knows nothing of the store, replies or rules. May depend on
//! std, tokio and foldhash.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::sync::lock;

/// How long a retry waits for the first attempt's answer before looking again (and leading, if
/// the first attempt is gone).
pub const WAIT: Duration = Duration::from_secs(4);

/// One push being handled: whether it has its answer yet, and a bell for the retries waiting.
///
/// Lighter than a `watch` channel (one `Notify`, rung once, instead of eight behind a lock on
/// every send): nearly every push has no retry waiting on it.
#[derive(Default)]
struct Flight {
    /// Set once the answer is stored: a waiting retry reads it from there, as a later retry
    /// would. (Nearly no push has a waiter, so nothing is copied for one.)
    answered: AtomicBool,
    /// Set when the leader's guard drops, answered or not; a waiter that sees it without an
    /// answer tries to lead.
    ended: AtomicBool,
    bell: Notify,
}

/// The pushes being handled right now, by dedupe key.
#[derive(Default)]
pub struct SingleFlight {
    flights: Mutex<foldhash::HashMap<String, Arc<Flight>>>,
}

/// What [`SingleFlight::join`] gave this attempt.
pub enum Turn<'a> {
    /// No other attempt is handling the push: this one does, and reports through the guard.
    Lead(Leader<'a>),
    /// Another attempt stored its answer: read it from the dedupe memory.
    Answered,
}

/// Held by the attempt handling a push. However its future ends (answer, error or
/// cancellation), dropping it removes the flight and wakes the waiters: they take the answer if
/// [`Leader::answered`] was called, or one of them leads.
pub struct Leader<'a> {
    owner: &'a SingleFlight,
    key: &'a str,
    flight: Arc<Flight>,
}

impl Leader<'_> {
    /// The answer is stored: waiters may read it.
    pub fn answered(&self) {
        self.flight.answered.store(true, Ordering::Release);
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        lock(&self.owner.flights).remove(self.key);
        self.flight.ended.store(true, Ordering::Release);
        self.flight.bell.notify_waiters();
    }
}

impl SingleFlight {
    /// Leads the push with this key, or waits for the attempt that does.
    pub async fn join<'a>(&'a self, key: &'a str) -> Turn<'a> {
        loop {
            let (flight, leader) = {
                let mut map = lock(&self.flights);
                match map.get(key) {
                    Some(f) => (f.clone(), false),
                    None => {
                        let f = Arc::new(Flight::default());
                        map.insert(key.to_string(), f.clone());
                        (f, true)
                    }
                }
            };
            if leader {
                return Turn::Lead(Leader {
                    owner: self,
                    key,
                    flight,
                });
            }
            // Armed before the checks, so a bell rung between them is not missed.
            let rung = flight.bell.notified();
            tokio::pin!(rung);
            rung.as_mut().enable();
            if !flight.answered.load(Ordering::Acquire) && !flight.ended.load(Ordering::Acquire) {
                // On timeout, look again: wait more, or lead if the leader is gone.
                let _ = tokio::time::timeout(WAIT, rung).await;
            }
            if flight.answered.load(Ordering::Acquire) {
                return Turn::Answered;
            }
            // The leader failed or was cancelled (or is still at it after WAIT): look again.
        }
    }

    /// Pushes in flight now.
    pub fn len(&self) -> usize {
        lock(&self.flights).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_retry_waits_for_the_leaders_answer() {
        let sf = SingleFlight::default();
        let Turn::Lead(leader) = sf.join("k").await else {
            panic!("the first attempt leads")
        };
        let retry = async { matches!(sf.join("k").await, Turn::Answered) };
        let lead = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            leader.answered();
            drop(leader);
        };
        let (answered, ()) = tokio::join!(retry, lead);
        assert!(answered, "the waiting retry is told the answer is stored");
        assert!(sf.is_empty());
    }

    #[tokio::test]
    async fn a_retry_leads_when_the_leader_ends_without_an_answer() {
        let sf = SingleFlight::default();
        let Turn::Lead(leader) = sf.join("k").await else {
            panic!("the first attempt leads")
        };
        let started = std::time::Instant::now();
        let retry = async { matches!(sf.join("k").await, Turn::Lead(_)) };
        let fail = async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            drop(leader);
        };
        let (leads, ()) = tokio::join!(retry, fail);
        assert!(leads, "the retry takes over");
        assert!(
            started.elapsed() < WAIT,
            "at once, not after its whole wait"
        );
    }

    #[tokio::test]
    async fn different_pushes_do_not_wait_for_each_other() {
        let sf = SingleFlight::default();
        let a = sf.join("a").await;
        let b = sf.join("b").await;
        assert!(matches!(a, Turn::Lead(_)) && matches!(b, Turn::Lead(_)));
        assert_eq!(sf.len(), 2);
    }
}
