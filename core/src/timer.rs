//! The timer table: every deadline the core keeps, and the earliest of them for the driver.
//!
//! There is no timer effect. The driver sleeps until `Core::poll_timeout()` and feeds
//! `Input::Timeout`; the core then fires every key whose deadline has passed, in key order.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::ProcId;
use crate::time::Timestamp;

/// What a deadline is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerKey {
    /// A run reached its timeout: stop it.
    RunDeadline(ProcId),
    /// A stopped run ignored SIGTERM for the grace period: SIGKILL its group.
    KillGrace(ProcId),
    /// A run's leader exited (or was killed) but its pipes are still held: stop waiting.
    Linger(ProcId),
    /// Buffered progress notifications of a call are due.
    Progress(u64),
    /// A call waiting for a job: its deadline, or its next look at a job another process owns.
    Wait(u64),
    /// An owned job's record is due a write (coalesced progress, or the heartbeat).
    JobWrite(u64),
    /// Nothing has happened for the configured idle time: exit.
    IdleExit,
}

/// Deadlines by key; one deadline per key.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    by_key: BTreeMap<TimerKey, Timestamp>,
    by_time: BTreeSet<(Timestamp, TimerKey)>,
}

impl Timers {
    /// Sets (or moves) the deadline of `key`.
    pub fn set(&mut self, key: TimerKey, at: Timestamp) {
        self.cancel(key);
        self.by_key.insert(key, at);
        self.by_time.insert((at, key));
    }

    /// Sets the deadline of `key` to `at` unless it already has an earlier one.
    pub fn set_at_most(&mut self, key: TimerKey, at: Timestamp) {
        if self.by_key.get(&key).is_none_or(|current| *current > at) {
            self.set(key, at);
        }
    }

    /// Removes the deadline of `key`, if any.
    pub fn cancel(&mut self, key: TimerKey) {
        if let Some(at) = self.by_key.remove(&key) {
            self.by_time.remove(&(at, key));
        }
    }

    /// Whether `key` has a deadline.
    pub fn is_set(&self, key: TimerKey) -> bool {
        self.by_key.contains_key(&key)
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<(Timestamp, TimerKey)> {
        self.by_time.first().copied()
    }

    /// Removes and returns the earliest key whose deadline is at or before `now`.
    pub fn pop_due(&mut self, now: Timestamp) -> Option<TimerKey> {
        let (at, key) = self.next()?;
        if at > now {
            return None;
        }
        self.cancel(key);
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_due_keys_in_time_order_and_ignores_early_calls() {
        let mut t = Timers::default();
        t.set(TimerKey::RunDeadline(ProcId(1)), Timestamp::from_millis(50));
        t.set(TimerKey::KillGrace(ProcId(2)), Timestamp::from_millis(10));
        t.set(TimerKey::RunDeadline(ProcId(1)), Timestamp::from_millis(30)); // moved
        assert_eq!(
            t.next(),
            Some((Timestamp::from_millis(10), TimerKey::KillGrace(ProcId(2))))
        );
        assert_eq!(t.pop_due(Timestamp::from_millis(5)), None);
        assert_eq!(
            t.pop_due(Timestamp::from_millis(40)),
            Some(TimerKey::KillGrace(ProcId(2)))
        );
        assert_eq!(
            t.pop_due(Timestamp::from_millis(40)),
            Some(TimerKey::RunDeadline(ProcId(1)))
        );
        assert_eq!(t.pop_due(Timestamp::from_millis(40)), None);
        t.set(TimerKey::Linger(ProcId(3)), Timestamp::from_millis(9));
        t.set_at_most(TimerKey::Linger(ProcId(3)), Timestamp::from_millis(20));
        assert_eq!(
            t.next(),
            Some((Timestamp::from_millis(9), TimerKey::Linger(ProcId(3))))
        );
        t.set_at_most(TimerKey::Linger(ProcId(3)), Timestamp::from_millis(4));
        assert_eq!(
            t.next(),
            Some((Timestamp::from_millis(4), TimerKey::Linger(ProcId(3))))
        );
        t.cancel(TimerKey::Linger(ProcId(3)));
        assert_eq!(t.next(), None);
    }
}
