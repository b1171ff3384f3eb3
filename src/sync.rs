//! How mpgate treats a poisoned lock, once for the whole crate.
//!
//! A `std::sync::Mutex` is poisoned when a thread panicked while holding it. mpgate's locks
//! guard caches, in-memory indexes and queues whose every update is a single step (an insert, a
//! remove, a swap), so a panic cannot leave them half-changed in a way a later reader could
//! misread. Refusing every later request instead (poison is permanent) would turn one bug into
//! an outage that only a restart ends. So a poisoned lock is taken anyway, the poison is cleared
//! so this happens once per panic, and the event is logged loudly: the panic itself is the bug
//! to look at. Every `Mutex` in the crate is locked through [`lock`].
//!
//! May depend on std and tracing only.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, taking it over if an earlier holder panicked (see the module doc).
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned: PoisonError<MutexGuard<'_, T>>| {
        tracing::error!(
            "a lock was poisoned by an earlier panic; continuing with its data (see the panic above)"
        );
        m.clear_poison();
        poisoned.into_inner()
    })
}

/// [`lock`] for a mutex this caller owns exclusively (no other thread can hold it).
pub fn get_mut<T: ?Sized>(m: &mut Mutex<T>) -> &mut T {
    if m.is_poisoned() {
        tracing::error!("a lock was poisoned by an earlier panic; continuing with its data");
        m.clear_poison();
    }
    m.get_mut().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_taken_over_once_and_then_clean() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("a bug while holding the lock");
        })
        .join();
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert!(
            !m.is_poisoned(),
            "cleared, so the next caller is not warned again"
        );
        assert_eq!(*lock(&m), 2);
    }
}
