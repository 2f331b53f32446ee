//! The one concurrency limiter: every child from every path takes a slot, first come first
//! served, and gives it back only when the child has really exited.

use std::collections::{BTreeSet, VecDeque};

use crate::ids::ProcId;

/// A FIFO counting limiter over processes.
#[derive(Debug)]
pub(crate) struct Limiter {
    limit: usize,
    running: BTreeSet<ProcId>,
    waiting: VecDeque<ProcId>,
}

impl Limiter {
    /// Creates a limiter allowing `limit` (at least 1) children at once.
    pub fn new(limit: usize) -> Self {
        Limiter {
            limit: limit.max(1),
            running: BTreeSet::new(),
            waiting: VecDeque::new(),
        }
    }

    /// Changes the limit (from a re-read config). Running children keep their slots; a
    /// smaller limit only delays the next grants.
    pub fn resize(&mut self, limit: usize) {
        self.limit = limit.max(1);
    }

    /// Asks for a slot: true when `proc` may start now, false when it was queued.
    pub fn acquire(&mut self, proc: ProcId) -> bool {
        if self.waiting.is_empty() && self.running.len() < self.limit {
            self.running.insert(proc);
            true
        } else {
            self.waiting.push_back(proc);
            false
        }
    }

    /// Gives back `proc`'s slot (or drops it from the queue). Returns the processes that
    /// may start now, in arrival order.
    pub fn release(&mut self, proc: ProcId) -> Vec<ProcId> {
        self.running.remove(&proc);
        self.waiting.retain(|p| *p != proc);
        self.grant()
    }

    /// Returns the queued processes that fit under the (possibly raised) limit.
    pub fn grant(&mut self) -> Vec<ProcId> {
        let mut started = Vec::new();
        while self.running.len() < self.limit {
            let Some(next) = self.waiting.pop_front() else {
                break;
            };
            self.running.insert(next);
            started.push(next);
        }
        started
    }

    /// Whether `proc` holds a slot (as opposed to waiting for one).
    pub fn is_running(&self, proc: ProcId) -> bool {
        self.running.contains(&proc)
    }

    /// How many children hold a slot.
    #[cfg(test)]
    pub fn running(&self) -> usize {
        self.running.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_come_first_served_and_slots_free_only_on_release() {
        let mut l = Limiter::new(2);
        assert!(l.acquire(ProcId(1)));
        assert!(l.acquire(ProcId(2)));
        assert!(!l.acquire(ProcId(3)));
        assert!(!l.acquire(ProcId(4)));
        assert_eq!(l.running(), 2);
        assert_eq!(l.release(ProcId(2)), vec![ProcId(3)]);
        assert_eq!(l.release(ProcId(4)), vec![]); // a queued one that gave up
        l.resize(1);
        assert_eq!(l.release(ProcId(1)), vec![]);
        assert_eq!(l.running(), 1);
        assert!(!l.acquire(ProcId(5)));
        l.resize(3);
        assert_eq!(l.grant(), vec![ProcId(5)]);
    }
}
