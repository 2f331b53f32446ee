//! Human-facing output: results on stdout, messages on stderr, colour only on a terminal and
//! only when `NO_COLOR` is unset, and the error type every command returns.

use std::fmt;
use std::io::{IsTerminal, Write};

/// Writes one line to stdout. A closed pipe (`agent-dispatch list | head -1`) is not an error.
macro_rules! say {
    () => { $crate::ui::write_out(format_args!("")) };
    ($($arg:tt)*) => { $crate::ui::write_out(format_args!($($arg)*)) };
}

/// Writes one line to stderr, ignoring a closed stream.
macro_rules! note {
    () => { $crate::ui::write_err(format_args!("")) };
    ($($arg:tt)*) => { $crate::ui::write_err(format_args!($($arg)*)) };
}

pub(crate) use {note, say};

pub fn write_out(args: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stdout().lock(), "{args}");
}

pub fn write_err(args: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// Prints a JSON value, pretty, on stdout.
pub fn print_json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    say!("{text}");
}

/// Exit codes.
pub const EXIT_FAILURE: i32 = 1;
/// A command line that does not make sense (argh's errors, out-of-range values).
pub const EXIT_USAGE: i32 = 2;

/// Why a command did not succeed. `main` prints it and exits with `code`.
#[derive(Debug)]
pub struct CliError {
    /// The process exit code (1 failure, 2 usage).
    pub code: i32,
    /// Printed as `Error: <message>`; nothing is printed when empty.
    pub message: String,
    /// Printed as `Hint: <hint>` after the message.
    pub hint: Option<String>,
}

impl CliError {
    /// The command failed (exit 1).
    pub fn fail(message: impl Into<String>) -> CliError {
        CliError {
            code: EXIT_FAILURE,
            message: message.into(),
            hint: None,
        }
    }

    /// The command line is wrong (exit 2).
    pub fn usage(message: impl Into<String>) -> CliError {
        CliError {
            code: EXIT_USAGE,
            message: message.into(),
            hint: None,
        }
    }

    /// Exit with `code` without printing anything more (the command already reported).
    pub fn quiet(code: i32) -> CliError {
        CliError {
            code,
            message: String::new(),
            hint: None,
        }
    }

    /// Adds a hint line.
    pub fn with_hint(mut self, hint: impl Into<String>) -> CliError {
        let hint = hint.into();
        if !hint.trim().is_empty() {
            self.hint = Some(hint);
        }
        self
    }

    /// Prints the error on stderr.
    pub fn report(&self) {
        if self.message.is_empty() {
            return;
        }
        let paint = Paint::stderr();
        note!("{} {}", paint.red("Error:"), self.message);
        if let Some(hint) = &self.hint {
            note!("Hint: {hint}");
        }
    }
}

/// What every command returns.
pub type Outcome = Result<(), CliError>;

/// Colours for one stream: on only for a terminal with `NO_COLOR` unset or empty.
#[derive(Debug, Clone, Copy)]
pub struct Paint {
    on: bool,
}

impl Paint {
    /// Colours for stdout.
    pub fn stdout() -> Paint {
        Paint {
            on: std::io::stdout().is_terminal() && colour_allowed(),
        }
    }

    /// Colours for stderr.
    pub fn stderr() -> Paint {
        Paint {
            on: std::io::stderr().is_terminal() && colour_allowed(),
        }
    }

    fn wrap(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub fn green(&self, text: &str) -> String {
        self.wrap("32", text)
    }

    pub fn yellow(&self, text: &str) -> String {
        self.wrap("33", text)
    }

    pub fn red(&self, text: &str) -> String {
        self.wrap("31", text)
    }

    pub fn bold(&self, text: &str) -> String {
        self.wrap("1", text)
    }
}

/// <https://no-color.org>: a non-empty `NO_COLOR` turns colour off.
fn colour_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Prints a warning on stderr: `Warning: <text>`.
pub fn warn(text: &str) {
    note!("{} {text}", Paint::stderr().yellow("Warning:"));
}

/// `1 issue` / `2 issues`.
pub fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Quotes a word for a POSIX shell, for commands we print for the user to copy.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting_keeps_plain_words_and_quotes_the_rest() {
        assert_eq!(
            shell_quote("/usr/bin/agent-dispatch"),
            "/usr/bin/agent-dispatch"
        );
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(r#"{"a":1}"#), r#"'{"a":1}'"#);
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn plurals() {
        assert_eq!(plural(1, "issue", "issues"), "1 issue");
        assert_eq!(plural(0, "issue", "issues"), "0 issues");
    }
}
