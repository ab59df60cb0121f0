//! Failed sign-ins counted per key (an account's email, a client's address), in memory and
//! bounded: past a threshold within the window the key is locked for a while that doubles
//! with each lock-out (at most 15 minutes). Checked before any password is hashed, and the
//! same for emails that exist and emails that do not.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures are forgotten after this long without another.
const WINDOW: Duration = Duration::from_secs(15 * 60);
/// The first lock-out; each next one doubles.
const FIRST_LOCK: Duration = Duration::from_secs(30);
const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// Keys kept at most (oldest dropped first).
const MAX_KEYS: usize = 20_000;

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    last: Instant,
    locked_until: Option<Instant>,
    lockouts: u32,
}

#[derive(Debug, Default)]
pub struct Limiter {
    keys: Mutex<HashMap<String, Entry>>,
}

impl Limiter {
    /// `Err(seconds)` while `key` is locked.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        let now = Instant::now();
        let Ok(keys) = self.keys.lock() else {
            return Ok(());
        };
        match keys.get(key).and_then(|e| e.locked_until) {
            Some(until) if until > now => Err((until - now).as_secs().max(1)),
            _ => Ok(()),
        }
    }

    /// Counts a failure; past `threshold` failures the key is locked (returns the seconds).
    pub fn fail(&self, key: &str, threshold: u32) -> Option<u64> {
        let now = Instant::now();
        let Ok(mut keys) = self.keys.lock() else {
            return None;
        };
        if keys.len() >= MAX_KEYS && !keys.contains_key(key) {
            keys.retain(|_, e| now.duration_since(e.last) < WINDOW);
            if keys.len() >= MAX_KEYS
                && let Some(oldest) = keys
                    .iter()
                    .min_by_key(|(_, e)| e.last)
                    .map(|(k, _)| k.clone())
            {
                keys.remove(&oldest);
            }
        }
        let e = keys.entry(key.to_owned()).or_insert(Entry {
            failures: 0,
            last: now,
            locked_until: None,
            lockouts: 0,
        });
        if now.duration_since(e.last) >= WINDOW {
            e.failures = 0;
            e.lockouts = 0;
        }
        e.failures += 1;
        e.last = now;
        if e.failures >= threshold {
            let lock = FIRST_LOCK
                .checked_mul(1 << e.lockouts.min(10))
                .unwrap_or(MAX_LOCK)
                .min(MAX_LOCK);
            e.locked_until = Some(now + lock);
            e.lockouts += 1;
            e.failures = 0;
            return Some(lock.as_secs());
        }
        None
    }

    /// A success forgets the key's failures.
    pub fn succeed(&self, key: &str) {
        if let Ok(mut keys) = self.keys.lock() {
            keys.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Limiter;

    #[test]
    fn a_key_is_locked_after_the_threshold_and_released_by_success() {
        let l = Limiter::default();
        for _ in 0..4 {
            assert_eq!(l.fail("a", 5), None);
            assert!(l.check("a").is_ok());
        }
        let secs = l.fail("a", 5);
        assert_eq!(secs, Some(30));
        assert!(l.check("a").is_err());
        assert!(l.check("b").is_ok(), "other keys are not affected");
        for _ in 0..4 {
            l.fail("a", 5);
        }
        assert_eq!(l.fail("a", 5), Some(60), "the next lock-out doubles");
        l.succeed("a");
        assert!(l.check("a").is_ok());
    }
}
