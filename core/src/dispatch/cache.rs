//! The result cache of `dispatch`: SHA-256 keys over the request *and* the agent's effective
//! config, a TTL, and a size cap with oldest-first eviction. Only clean successes are stored.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::dispatch::outcome::DispatchResult;
use crate::time::Timestamp;

/// Hit/miss counters and entries.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    entries: BTreeMap<String, (Timestamp, String, DispatchResult)>,
    order: VecDeque<String>,
    hits: u64,
    misses: u64,
    evictions: u64,
}

/// The TTL and size cap in force (re-read from the config on every call).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub ttl: Duration,
    pub max_size: usize,
}

/// The cache key: every field of the request and a snapshot of the config that shapes the
/// run, so a changed or re-added agent never gets an old answer.
pub(crate) fn key(fields: &[&str], config_snapshot: &Value) -> String {
    let doc = json!({ "request": fields, "config": config_snapshot });
    hex::encode(Sha256::digest(doc.to_string().as_bytes()))
}

impl Cache {
    /// Looks up a fresh entry (expired ones are dropped and count as a miss).
    pub fn get(&mut self, key: &str, now: Timestamp, limits: Limits) -> Option<DispatchResult> {
        let fresh = match self.entries.get(key) {
            Some((at, _, result)) if now.since(*at) <= limits.ttl => Some(result.clone()),
            Some(_) => {
                self.remove(key);
                None
            }
            None => None,
        };
        match fresh {
            Some(_) => self.hits += 1,
            None => self.misses += 1,
        }
        fresh
    }

    /// Stores a clean success; a new key at capacity evicts the oldest entry.
    pub fn put(
        &mut self,
        key: String,
        agent: &str,
        result: &DispatchResult,
        now: Timestamp,
        limits: Limits,
    ) {
        if !result.is_clean_success() || limits.max_size == 0 {
            return;
        }
        if self.entries.contains_key(&key) {
            self.order.retain(|k| *k != key);
        }
        while !self.entries.contains_key(&key) && self.entries.len() >= limits.max_size {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.entries.remove(&oldest);
            self.evictions += 1;
        }
        self.order.push_back(key.clone());
        self.entries
            .insert(key, (now, agent.to_string(), result.clone()));
    }

    /// Drops every entry of `agent` (after it was edited or removed).
    pub fn forget_agent(&mut self, agent: &str) {
        let stale: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, (_, a, _))| a == agent)
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            self.remove(&k);
        }
    }

    /// Empties the cache and resets the counters; returns how many entries were removed.
    pub fn clear(&mut self) -> usize {
        let n = self.entries.len();
        *self = Cache::default();
        n
    }

    /// `cache_stats` (spec §4), after dropping expired entries.
    pub fn stats(&mut self, now: Timestamp, limits: Limits) -> Value {
        let expired: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, (at, _, _))| now.since(*at) > limits.ttl)
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            self.remove(&k);
        }
        let total = self.hits + self.misses;
        let hit_rate = if total == 0 {
            0.0
        } else {
            (self.hits as f64 / total as f64 * 1000.0).round() / 1000.0
        };
        json!({
            "size": self.entries.len(),
            "max_size": limits.max_size,
            "hits": self.hits,
            "misses": self.misses,
            "evictions": self.evictions,
            "hit_rate": hit_rate,
            "ttl": limits.ttl.as_secs(),
        })
    }

    fn remove(&mut self, key: &str) {
        self.entries.remove(key);
        self.order.retain(|k| k != key);
    }
}
