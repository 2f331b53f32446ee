//! The `claude` run model: prompt, argv, stream-json parsing, outcome classification, and
//! the machinery that runs children (one FIFO limiter, the run state machine, the cache).

pub(crate) mod argv;
pub(crate) mod cache;
pub(crate) mod limiter;
pub(crate) mod outcome;
pub(crate) mod prompt;
pub(crate) mod run;
pub(crate) mod stream;
