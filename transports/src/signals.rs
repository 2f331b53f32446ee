//! Stop signals as core inputs: SIGTERM, SIGINT and SIGHUP become `Input::Shutdown`, so the
//! core stops taking requests, lets running work finish and exits 0.
//!
//! A second stop signal means "now": the process exits at once with `128 + signal`. Children
//! go with it (the group guard kills their groups when our end of its pipe closes), and stale
//! jobs are recovered on the next start.

use agent_dispatch_core::{Input, LogLevel};
use async_channel::Sender;
use async_signal::{Signal, Signals};
use futures_lite::StreamExt;

/// The signals that ask a server to stop.
const STOP: [Signal; 3] = [Signal::Term, Signal::Int, Signal::Hup];

/// Installs handlers for the stop signals and forwards the first one as `Input::Shutdown` on
/// `inputs`. Replaces the default action (terminate) of those signals for the whole process.
/// On failure the signals keep their default action and a warning is logged.
pub(crate) fn forward_stop_signals(inputs: Sender<Input>) {
    let mut signals = match Signals::new(STOP) {
        Ok(signals) => signals,
        Err(err) => {
            crate::log(
                LogLevel::Warn,
                &format!("cannot handle SIGTERM/SIGINT/SIGHUP ({err}); they will end the process at once"),
            );
            return;
        }
    };
    smol::spawn(async move {
        let mut stopping = false;
        while let Some(received) = signals.next().await {
            let Ok(signal) = received else { continue };
            let name = signal_name(signal);
            if stopping {
                crate::log(
                    LogLevel::Warn,
                    &format!("second stop signal ({name}); exiting now"),
                );
                std::process::exit(128 + signal as i32);
            }
            stopping = true;
            crate::log(
                LogLevel::Info,
                &format!("{name} received; finishing running calls, then exiting (send it again to exit now)"),
            );
            if inputs.send(Input::Shutdown).await.is_err() {
                // The drive loop is gone: nothing left to drain.
                return;
            }
        }
    })
    .detach();
}

fn signal_name(signal: Signal) -> &'static str {
    match signal {
        Signal::Term => "SIGTERM",
        Signal::Int => "SIGINT",
        Signal::Hup => "SIGHUP",
        _ => "signal",
    }
}
