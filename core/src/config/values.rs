//! Value rules shared by the tools and the CLI: path expansion, agent names, Python-style
//! `repr`/`str(float)`, permission modes, tool lists and the checks on flag-like values.

use std::path::{Component, Path, PathBuf};

use super::KNOWN_PERMISSION_MODES;

/// Expands `~` and `~/x` with `home`, makes relative paths absolute against `cwd`, and
/// removes `.` and `..` lexically (symlinks are the driver's business).
pub fn expand_path(raw: &str, home: &Path, cwd: &Path) -> PathBuf {
    let path = if raw == "~" {
        home.to_path_buf()
    } else if let Some(rest) = raw.strip_prefix("~/") {
        home.join(rest.trim_start_matches('/'))
    } else {
        PathBuf::from(raw)
    };
    let absolute = if path.is_absolute() {
        path
    } else {
        cwd.join(path)
    };
    let mut out = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Checks an agent (or group) name: the whole string must match
/// `^[a-zA-Z0-9][a-zA-Z0-9_-]*$` (a trailing newline does not slip through).
pub fn validate_agent_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "Invalid agent name: {}. Use only letters, digits, hyphens, and underscores. Must start with a letter or digit.",
            py_repr(name)
        ))
    }
}

/// Python's `repr()` of a string: single quotes unless the text has `'` but no `"`,
/// backslash escapes for control and other non-printable characters.
pub fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if py_printable(c) => out.push(c),
            c => {
                let n = u32::from(c);
                if n <= 0xff {
                    out.push_str(&format!("\\x{n:02x}"));
                } else if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
        }
    }
    out.push(quote);
    out
}

/// An approximation of Python's `str.isprintable` for one character: control, format,
/// separator (other than space), private-use and non-characters are not printable.
fn py_printable(c: char) -> bool {
    let n = u32::from(c);
    if n < 0x20 || n == 0x7f {
        return false;
    }
    if n < 0x7f {
        return true;
    }
    let unprintable = matches!(n,
        0x80..=0xa0
        | 0xad
        | 0x600..=0x605
        | 0x61c
        | 0x6dd
        | 0x70f
        | 0x890..=0x891
        | 0x8e2
        | 0x1680
        | 0x180e
        | 0x2000..=0x200f
        | 0x2028..=0x202f
        | 0x205f..=0x2064
        | 0x2066..=0x206f
        | 0x3000
        | 0xd800..=0xf8ff
        | 0xfdd0..=0xfdef
        | 0xfeff
        | 0xfff9..=0xfffb
        | 0x110bd
        | 0x110cd
        | 0x13430..=0x1343f
        | 0x1bca0..=0x1bca3
        | 0x1d173..=0x1d17a
        | 0xe0001
        | 0xe0020..=0xe007f
        | 0xf0000..=0x10ffff
    );
    !unprintable && (n & 0xfffe) != 0xfffe
}

/// Python's `str(float)`: `0.5`, `1.0`, `1e-05`, `1e+16`, `inf`, `nan`.
pub fn py_float(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    // `{:e}` gives the shortest round-tripping digits, like Python's repr.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let (sign, mantissa) = match mantissa.strip_prefix('-') {
            Some(m) => ("-", m),
            None => ("", mantissa),
        };
        let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
        let point = exp + 1; // digits before the decimal point
        let body = if point <= 0 {
            let zeros = usize::try_from(-point).unwrap_or(0);
            format!("0.{}{digits}", "0".repeat(zeros))
        } else {
            let point = usize::try_from(point).unwrap_or(0);
            if digits.len() <= point {
                format!("{digits}{}.0", "0".repeat(point - digits.len()))
            } else {
                format!("{}.{}", &digits[..point], &digits[point..])
            }
        };
        format!("{sign}{body}")
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.unsigned_abs())
    }
}

/// The warning for a permission mode `claude` does not know; `None` for known modes and
/// for empty or blank input.
pub fn permission_mode_warning(mode: &str) -> Option<String> {
    let mode = mode.trim();
    if mode.is_empty() || KNOWN_PERMISSION_MODES.contains(&mode) {
        return None;
    }
    Some(format!(
        "Unknown permission_mode: {}. Known values: {}",
        py_repr(mode),
        KNOWN_PERMISSION_MODES.join(", ")
    ))
}

/// Splits a comma-separated tool list: blank input gives `None`; items are trimmed and
/// empty ones dropped, so `","` gives `Some([])` ("explicitly none").
pub fn parse_tool_list(csv: &str) -> Option<Vec<String>> {
    if csv.trim().is_empty() {
        return None;
    }
    Some(
        csv.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

pub(super) fn is_none_word(s: &str) -> bool {
    s.trim().eq_ignore_ascii_case("none")
}

/// Refuses values that `claude` would read as a flag.
pub(super) fn check_not_flag(label: &str, value: &str) -> Result<(), String> {
    if value.starts_with('-') {
        Err(format!(
            "{label} {} starts with '-' and would be interpreted as a command-line flag by the claude CLI.",
            py_repr(value)
        ))
    } else {
        Ok(())
    }
}

pub(super) fn checked_tools(label: &str, tools: Vec<String>) -> Result<Vec<String>, String> {
    for tool in &tools {
        check_not_flag(label, tool)?;
    }
    Ok(tools)
}

pub(super) fn timeout_error(timeout: i64) -> String {
    format!(
        "timeout must be a positive number of seconds (got {timeout}); pass 0 to keep the agent's current value."
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::tests::{cwd, home};
    use super::*;

    #[test]
    fn agent_names() {
        for good in ["a", "A", "0", "web", "web-2", "my_agent", "a-", "9_-"] {
            assert_eq!(validate_agent_name(good), Ok(()), "{good:?}");
        }
        let msg = |n: &str| {
            format!(
                "Invalid agent name: {n}. Use only letters, digits, hyphens, and underscores. Must start with a letter or digit."
            )
        };
        assert_eq!(validate_agent_name("web\n"), Err(msg("'web\\n'")));
        assert_eq!(validate_agent_name("-x"), Err(msg("'-x'")));
        assert_eq!(validate_agent_name(""), Err(msg("''")));
        assert_eq!(validate_agent_name("a b"), Err(msg("'a b'")));
        assert_eq!(validate_agent_name("_a"), Err(msg("'_a'")));
        assert_eq!(validate_agent_name("a.b"), Err(msg("'a.b'")));
        assert_eq!(validate_agent_name("café"), Err(msg("'café'")));
        assert_eq!(validate_agent_name("it's"), Err(msg("\"it's\"")));
    }

    #[test]
    fn python_repr() {
        assert_eq!(py_repr("foo"), "'foo'");
        assert_eq!(py_repr(""), "''");
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("it's \"x\""), "'it\\'s \"x\"'");
        assert_eq!(py_repr("say \"hi\""), "'say \"hi\"'");
        assert_eq!(py_repr("a\\b"), "'a\\\\b'");
        assert_eq!(py_repr("a\nb\tc\r"), "'a\\nb\\tc\\r'");
        assert_eq!(py_repr("\x00\x1b\x7f"), "'\\x00\\x1b\\x7f'");
        assert_eq!(
            py_repr("caf\u{e9} \u{65e5}\u{672c} \u{1f600}"),
            "'café 日本 😀'"
        );
        assert_eq!(py_repr("\u{85}\u{a0}\u{ad}"), "'\\x85\\xa0\\xad'");
        assert_eq!(
            py_repr("\u{200b}\u{2028}\u{feff}"),
            "'\\u200b\\u2028\\ufeff'"
        );
        assert_eq!(py_repr("\u{e000}\u{10ffff}"), "'\\ue000\\U0010ffff'");
    }

    #[test]
    fn python_float() {
        let cases: &[(f64, &str)] = &[
            (0.5, "0.5"),
            (1.0, "1.0"),
            (-1.0, "-1.0"),
            (0.0, "0.0"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (123.456, "123.456"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (2.5e-7, "2.5e-07"),
            (1.5e300, "1.5e+300"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ];
        for (f, want) in cases {
            assert_eq!(py_float(*f), *want, "{f:?}");
        }
    }

    #[test]
    fn path_expansion() {
        let e = |raw: &str| expand_path(raw, &home(), &cwd());
        assert_eq!(e("~"), PathBuf::from("/home/u"));
        assert_eq!(e("~/"), PathBuf::from("/home/u"));
        assert_eq!(e("~/proj"), PathBuf::from("/home/u/proj"));
        assert_eq!(e("~//proj/"), PathBuf::from("/home/u/proj"));
        assert_eq!(e("proj"), PathBuf::from("/work/here/proj"));
        assert_eq!(e("./a/./b/../c"), PathBuf::from("/work/here/a/c"));
        assert_eq!(e("../x"), PathBuf::from("/work/x"));
        assert_eq!(e("/a/b/../../../.."), PathBuf::from("/"));
        assert_eq!(e("/abs//path/"), PathBuf::from("/abs/path"));
        assert_eq!(e("~user/x"), PathBuf::from("/work/here/~user/x"));
    }

    #[test]
    fn permission_mode_warnings() {
        for known in KNOWN_PERMISSION_MODES {
            assert_eq!(permission_mode_warning(known), None);
        }
        assert_eq!(permission_mode_warning(""), None);
        assert_eq!(permission_mode_warning("  "), None);
        assert_eq!(permission_mode_warning(" plan "), None);
        assert_eq!(
            permission_mode_warning(" Plan "),
            Some("Unknown permission_mode: 'Plan'. Known values: acceptEdits, auto, bypassPermissions, default, dontAsk, manual, plan".to_owned())
        );
        let mut sorted = KNOWN_PERMISSION_MODES.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, KNOWN_PERMISSION_MODES);
    }

    #[test]
    fn tool_lists() {
        assert_eq!(parse_tool_list(""), None);
        assert_eq!(parse_tool_list("   "), None);
        assert_eq!(parse_tool_list(","), Some(vec![]));
        assert_eq!(parse_tool_list(" , ,"), Some(vec![]));
        assert_eq!(
            parse_tool_list(" Read ,Bash(git diff), ,Write"),
            Some(vec!["Read".into(), "Bash(git diff)".into(), "Write".into()])
        );
    }
}
