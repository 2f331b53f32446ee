//! Identifiers shared by the core and its drivers.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id {
    ($(#[$doc:meta])* $name:ident, $label:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($label, "#{}"), self.0)
            }
        }
    };
}

id!(
    /// One MCP client connection. Assigned by the driver (stdio always uses `ClientId(0)`).
    ClientId,
    "client"
);
id!(
    /// One child process. Assigned by the core in `Effect::Spawn`; OS pids never drive logic.
    ProcId,
    "proc"
);
id!(
    /// One I/O request. Assigned by the core in `Effect::Io`, answered by `Input::IoDone`.
    OpId,
    "op"
);
