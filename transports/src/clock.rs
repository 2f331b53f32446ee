//! The driver's clock: monotonic time as core `Timestamp`s, plus the wall-clock anchor.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use agent_dispatch_core::Timestamp;

/// Monotonic time since the driver started, in the core's units.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
    unix_at_epoch: f64,
}

impl Clock {
    /// Starts a clock whose epoch (`Timestamp::ZERO`) is now.
    pub fn new() -> Self {
        let unix_at_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Clock {
            epoch: Instant::now(),
            unix_at_epoch,
        }
    }

    /// The current time since the epoch.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_duration(self.epoch.elapsed())
    }

    /// The `Instant` a timestamp stands for (for `smol::Timer::at`).
    pub fn instant(&self, at: Timestamp) -> Instant {
        // A deadline too far away to represent is as good as never; clamp to ~100 years.
        self.epoch
            .checked_add(at.as_duration())
            .unwrap_or_else(|| self.epoch + std::time::Duration::from_secs(100 * 365 * 86_400))
    }

    /// Unix time in seconds at the epoch (for `Options::unix_time_at_epoch`).
    pub fn unix_time_at_epoch(&self) -> f64 {
        self.unix_at_epoch
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}
