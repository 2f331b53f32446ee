//! The `claude` command line of one dispatch (spec §3.3 with the §8 changes): the settings
//! that apply to the run, the argv built value by value (never through a shell), and the
//! guard that refuses flag-looking values before anything is spawned.
//!
//! Why the layout is what it is: `claude` parses its command line with commander.js, whose
//! options declared as `<value...>` (`--allowedTools`, `--disallowedTools`, `--add-dir`,
//! `--mcp-config`, …) are *variadic*: they take every following argument that does not start
//! with `-`. So
//! - the prompt goes right after `-p`, before any variadic option; placed after
//!   `--allowedTools Read` it would be swallowed as one more tool name and the CLI would find
//!   no prompt at all;
//! - every tool gets its own `--allowedTools <tool>` pair: the next token is always another
//!   flag (or the end), which closes the list, so each value stays exactly one rule and
//!   nothing positional can ever follow a list;
//! - a value that starts with `-` would be read as a flag (or end a list early), so such
//!   values are refused, and a prompt that starts with `-` goes on stdin instead (see
//!   [`prompt_via_stdin`]): commander would parse it as options (`-c …` even means
//!   `--continue`).

use crate::config::{py_float, py_repr, AgentConfig, Settings};

/// Max bytes of one argv entry on Linux (MAX_ARG_STRLEN 131072 incl. NUL).
pub(crate) const MAX_ARG_BYTES: usize = 131_071;

/// Longest session id `--resume` accepts from a caller.
const MAX_SESSION_ID_CHARS: usize = 200;

/// Bounds of a one-off `timeout_seconds`.
const MIN_TIMEOUT_OVERRIDE: u64 = 10;
const MAX_TIMEOUT_OVERRIDE: u64 = 7200;

/// The settings that apply to one run, after agent values, settings defaults and a one-off
/// timeout are combined.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Effective {
    pub timeout_secs: u64,
    pub model: Option<String>,
    pub permission_mode: Option<String>,
    pub allowed_tools: Vec<String>,
    pub disallowed_tools: Vec<String>,
    pub max_budget_usd: Option<f64>,
}

/// Tri-state tool lists (None inherit settings.default_*; Some([]) none; Some(list)); model; mode = agent or settings default (blank = none);
/// budget = agent or settings default, None when 0; timeout: override > 0 → clamp(override, 10, 7200), else agent.timeout, or settings.default_timeout when agent.timeout == 0.
///
/// Blank model and mode values count as unset and are trimmed otherwise; blank tool names
/// are dropped. A budget that is not a positive finite number is no budget (the CLI refuses
/// `--max-budget-usd 0`).
pub(crate) fn effective(
    agent: &AgentConfig,
    settings: &Settings,
    timeout_override: i64,
) -> Effective {
    let timeout_secs = match u64::try_from(timeout_override) {
        Ok(secs) if secs > 0 => secs.clamp(MIN_TIMEOUT_OVERRIDE, MAX_TIMEOUT_OVERRIDE),
        _ if agent.timeout == 0 => settings.default_timeout,
        _ => agent.timeout,
    };
    let non_blank = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let permission_mode =
        non_blank(&agent.permission_mode).or_else(|| non_blank(&settings.default_permission_mode));
    let tools = |own: &Option<Vec<String>>, default: &Vec<String>| {
        own.as_ref()
            .unwrap_or(default)
            .iter()
            .filter(|t| !t.trim().is_empty())
            .cloned()
            .collect()
    };
    let positive = |b: Option<f64>| b.filter(|b| *b > 0.0 && b.is_finite());
    Effective {
        timeout_secs,
        model: non_blank(&agent.model),
        permission_mode,
        allowed_tools: tools(&agent.allowed_tools, &settings.default_allowed_tools),
        disallowed_tools: tools(&agent.disallowed_tools, &settings.default_disallowed_tools),
        max_budget_usd: positive(agent.max_budget_usd)
            .or_else(|| positive(settings.default_max_budget_usd)),
    }
}

/// Which conversation the run belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Session<'a> {
    /// A new conversation with this pre-assigned id (a fresh UUID): `--session-id <id>`.
    New(&'a str),
    /// Continue this earlier conversation: `--resume <id>`.
    Resume(&'a str),
}

/// Whether the prompt must go on stdin (`build_args(None, ..)`) rather than after `-p`:
/// too long for one argv entry, a NUL byte (impossible in argv), or a leading `-`, which
/// commander.js would parse as options rather than as the prompt.
pub(crate) fn prompt_via_stdin(prompt: &str) -> bool {
    prompt.len() > MAX_ARG_BYTES || prompt.starts_with('-') || prompt.contains('\0')
}

/// Whether `id` can be a session id to resume: non-empty, at most 200 characters, no
/// whitespace or control characters, and not flag-like. (The CLI itself wants a UUID or a
/// session title; this only keeps garbage and injection attempts off the command line.)
pub(crate) fn plausible_session_id(id: &str) -> bool {
    !id.is_empty()
        && !id.starts_with('-')
        && id.chars().count() <= MAX_SESSION_ID_CHARS
        && !id.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The argv after the program name. `prompt` Some → `-p <prompt>`; None → `-p` alone (the prompt goes on stdin). Then `--output-format stream-json --verbose`, then `--append-system-prompt <text>` (when `system_prompt` is not empty; fresh and resumed runs alike), then `--session-id <uuid>` or `--resume <id>`, `--max-budget-usd <py_float>`, `--model`, `--permission-mode`, one `--allowedTools <t>` per tool, one `--disallowedTools <t>` per tool.
///
/// Err(message) — no spawn — when session id / model / permission mode / any tool name /
/// the system prompt starts with '-' (or holds a NUL byte), when a resume id is not a
/// plausible session id, or when `prompt` or the system prompt cannot be one argv entry
/// (use [`prompt_via_stdin`] to choose for the prompt).
pub(crate) fn build_args(
    prompt: Option<&str>,
    session: Session<'_>,
    e: &Effective,
    system_prompt: &str,
) -> Result<Vec<String>, String> {
    let (session_flag, session_id) = match session {
        Session::New(id) => ("--session-id", id),
        Session::Resume(id) => ("--resume", id),
    };
    guard("session_id", session_id)?;
    if let Session::Resume(id) = session {
        if !plausible_session_id(id) {
            return Err(format!(
                "Refusing to dispatch: session_id {} is not a valid session id (expected the \
                 session_id returned by an earlier dispatch).",
                py_repr(id)
            ));
        }
    }
    if let Some(model) = &e.model {
        guard("model", model)?;
    }
    if let Some(mode) = &e.permission_mode {
        guard("permission_mode", mode)?;
    }
    for tool in &e.allowed_tools {
        guard("allowed tool", tool)?;
    }
    for tool in &e.disallowed_tools {
        guard("disallowed tool", tool)?;
    }
    // The protocol text starts with '#'; only standing instructions could make it
    // unpassable. (Not quoted back: it is long, and the caller did not write it.)
    if system_prompt.starts_with('-') {
        return Err(
            "Refusing to dispatch: the system prompt starts with '-' and would be \
                    interpreted as a command-line flag by the claude CLI."
                .to_owned(),
        );
    }
    if system_prompt.contains('\0') {
        return Err(
            "Refusing to dispatch: the system prompt (the agent's standing \
                    instructions) contains a NUL byte, which cannot be passed on a command \
                    line."
                .to_owned(),
        );
    }
    if system_prompt.len() > MAX_ARG_BYTES {
        return Err(format!(
            "Refusing to dispatch: the system prompt ({} bytes: the dispatch protocol and the \
             agent's standing instructions) cannot be passed as one command-line argument; \
             shorten the instructions.",
            system_prompt.len()
        ));
    }

    let mut args = vec!["-p".to_owned()];
    if let Some(prompt) = prompt {
        if prompt.len() > MAX_ARG_BYTES || prompt.contains('\0') {
            return Err(format!(
                "Refusing to dispatch: the prompt ({} bytes) cannot be passed as one \
                 command-line argument; it must go on stdin.",
                prompt.len()
            ));
        }
        args.push(prompt.to_owned());
    }
    // `--verbose` is required with `-p --output-format stream-json` (spec §8 0.6).
    args.extend(["--output-format", "stream-json", "--verbose"].map(str::to_owned));
    let mut pair = |flag: &str, value: &str| {
        args.push(flag.to_owned());
        args.push(value.to_owned());
    };
    if !system_prompt.is_empty() {
        // One value, never split: a long Markdown text that starts with '#'.
        pair("--append-system-prompt", system_prompt);
    }
    pair(session_flag, session_id);
    if let Some(budget) = e.max_budget_usd {
        pair("--max-budget-usd", &py_float(budget));
    }
    if let Some(model) = &e.model {
        pair("--model", model);
    }
    if let Some(mode) = &e.permission_mode {
        pair("--permission-mode", mode);
    }
    for tool in &e.allowed_tools {
        pair("--allowedTools", tool);
    }
    for tool in &e.disallowed_tools {
        pair("--disallowedTools", tool);
    }
    Ok(args)
}

/// Refuses a structured value the CLI would read as a flag (or that cannot be an argument).
fn guard(label: &str, value: &str) -> Result<(), String> {
    if value.starts_with('-') {
        return Err(format!(
            "Refusing to dispatch: {label} {} starts with '-' and would be interpreted as a \
             command-line flag by the claude CLI.",
            py_repr(value)
        ));
    }
    if value.contains('\0') {
        return Err(format!(
            "Refusing to dispatch: {label} {} contains a NUL byte, which cannot be passed on \
             a command line.",
            py_repr(value)
        ));
    }
    Ok(())
}

/// Whether a failed fresh run should be retried once without --session-id (old CLI; spec §8 0.6): rc≠0, no result line, stderr (lowercased) mentions `--session-id` and one of unknown option|unrecognized option|unknown argument|unexpected argument.
///
/// Only the stderr test is made here; the caller checks that the run was fresh, failed,
/// produced no result line and was not retried already.
pub(crate) fn old_cli_rejects_session_id(stderr: &str) -> bool {
    let text = stderr.to_lowercase();
    text.contains("--session-id")
        && [
            "unknown option",
            "unrecognized option",
            "unknown argument",
            "unexpected argument",
        ]
        .iter()
        .any(|needle| text.contains(needle))
}

/// The same argv without the `--session-id <id>` pair.
///
/// The search starts after `-p` and the prompt slot, so a prompt that is literally
/// `--session-id` is never taken for the flag (every later value is guarded against a
/// leading `-`, so the first match from there is the flag).
pub(crate) fn without_session_id(args: &[String]) -> Vec<String> {
    let at = args
        .iter()
        .enumerate()
        .skip(2)
        .find(|(_, a)| *a == "--session-id")
        .map(|(i, _)| i);
    match at {
        Some(i) => args
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i && *j != i + 1)
            .map(|(_, a)| a.clone())
            .collect(),
        None => args.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const SID: &str = "11111111-2222-4333-8444-555555555555";

    fn agent() -> AgentConfig {
        AgentConfig::new(PathBuf::from("/srv/web"))
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn plain() -> Effective {
        effective(&agent(), &Settings::default(), 0)
    }

    /// The spec's verified example (§3.3), adapted to stream-json + --verbose + --session-id.
    fn verified() -> Effective {
        let mut a = agent();
        a.model = Some("sonnet".into());
        a.max_budget_usd = Some(0.5);
        a.permission_mode = Some("plan".into());
        a.allowed_tools = Some(strings(&["Read", "Bash(git diff)"]));
        a.disallowed_tools = Some(strings(&["Write"]));
        effective(&a, &Settings::default(), 0)
    }

    #[test]
    fn baseline_argv() {
        let args = build_args(Some("hello"), Session::New(SID), &plain(), "").unwrap();
        assert_eq!(
            args,
            strings(&[
                "-p",
                "hello",
                "--output-format",
                "stream-json",
                "--verbose",
                "--session-id",
                SID
            ])
        );
    }

    #[test]
    fn verified_example_in_order() {
        let args = build_args(Some("<p>"), Session::New(SID), &verified(), "").unwrap();
        assert_eq!(
            args,
            strings(&[
                "-p",
                "<p>",
                "--output-format",
                "stream-json",
                "--verbose",
                "--session-id",
                SID,
                "--max-budget-usd",
                "0.5",
                "--model",
                "sonnet",
                "--permission-mode",
                "plan",
                "--allowedTools",
                "Read",
                "--allowedTools",
                "Bash(git diff)",
                "--disallowedTools",
                "Write",
            ])
        );
    }

    #[test]
    fn resume_takes_the_session_id_slot() {
        let args = build_args(Some("<p>"), Session::Resume("abc"), &verified(), "").unwrap();
        assert_eq!(
            args[..9],
            strings(&[
                "-p",
                "<p>",
                "--output-format",
                "stream-json",
                "--verbose",
                "--resume",
                "abc",
                "--max-budget-usd",
                "0.5"
            ])
        );
        assert!(!args.contains(&"--session-id".to_owned()));
    }

    #[test]
    fn budget_is_printed_like_python_floats() {
        for (budget, text) in [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (0.00001, "1e-05"),
            (2.25, "2.25"),
        ] {
            let mut e = plain();
            e.max_budget_usd = Some(budget);
            let args = build_args(Some("p"), Session::New(SID), &e, "").unwrap();
            assert_eq!(args[7..9], strings(&["--max-budget-usd", text]));
        }
    }

    #[test]
    fn long_prompt_goes_on_stdin() {
        let prompt = "x".repeat(200 * 1024);
        assert!(prompt_via_stdin(&prompt));
        let args = build_args(None, Session::New(SID), &plain(), "").unwrap();
        assert_eq!(
            args,
            strings(&[
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--session-id",
                SID
            ])
        );
        // As an argument it is refused rather than failing at exec with E2BIG.
        let err = build_args(Some(&prompt), Session::New(SID), &plain(), "").unwrap_err();
        assert_eq!(
            err,
            "Refusing to dispatch: the prompt (204800 bytes) cannot be passed as one command-line argument; it must go on stdin."
        );
        // The exact limit still fits in argv.
        let edge = "y".repeat(MAX_ARG_BYTES);
        assert!(!prompt_via_stdin(&edge));
        assert!(prompt_via_stdin(&format!("{edge}y")));
        assert_eq!(
            build_args(Some(&edge), Session::New(SID), &plain(), "").unwrap()[1].len(),
            131_071
        );
    }

    #[test]
    fn flag_like_or_nul_prompts_go_on_stdin() {
        assert!(prompt_via_stdin("--output-format"));
        assert!(prompt_via_stdin("-c do it"));
        assert!(prompt_via_stdin("a\0b"));
        assert!(!prompt_via_stdin("## Task\n--x"));
        assert!(!prompt_via_stdin("fix it"));
        // The prompt itself is exempt from the guard when passed anyway.
        let args = build_args(Some("--output-format"), Session::New(SID), &plain(), "").unwrap();
        assert_eq!(args[1], "--output-format");
    }

    #[test]
    fn flag_guard_refuses_every_structured_value() {
        fn refused(set: fn(&mut Effective)) -> String {
            let mut e = plain();
            set(&mut e);
            build_args(Some("p"), Session::New(SID), &e, "").unwrap_err()
        }
        let msg = |what: &str| {
            format!("Refusing to dispatch: {what} starts with '-' and would be interpreted as a command-line flag by the claude CLI.")
        };
        assert_eq!(
            refused(|e| e.model = Some("--dangerously-skip-permissions".into())),
            msg("model '--dangerously-skip-permissions'")
        );
        assert_eq!(
            refused(|e| e.permission_mode = Some("-x".into())),
            msg("permission_mode '-x'")
        );
        assert_eq!(
            refused(|e| e.allowed_tools = strings(&["Read", "--add-dir"])),
            msg("allowed tool '--add-dir'")
        );
        assert_eq!(
            refused(|e| e.disallowed_tools = strings(&["-rf"])),
            msg("disallowed tool '-rf'")
        );
        let err = build_args(Some("p"), Session::Resume("--continue"), &plain(), "").unwrap_err();
        assert_eq!(
            err,
            "Refusing to dispatch: session_id '--continue' starts with '-' and would be interpreted as a command-line flag by the claude CLI."
        );
        let err = build_args(Some("p"), Session::New("-1"), &plain(), "").unwrap_err();
        assert!(err.starts_with("Refusing to dispatch: session_id '-1' starts with '-'"));
        let mut e = plain();
        e.model = Some("so\0nnet".into());
        assert_eq!(
            build_args(Some("p"), Session::New(SID), &e, "").unwrap_err(),
            "Refusing to dispatch: model 'so\\x00nnet' contains a NUL byte, which cannot be passed on a command line."
        );
    }

    #[test]
    fn implausible_resume_ids_are_refused() {
        let long = "a".repeat(201);
        for bad in ["", "abc def", "abc\n", "a\tb", long.as_str()] {
            let err = build_args(Some("p"), Session::Resume(bad), &plain(), "").unwrap_err();
            assert_eq!(
                err,
                format!(
                    "Refusing to dispatch: session_id {} is not a valid session id (expected the session_id returned by an earlier dispatch).",
                    py_repr(bad)
                )
            );
        }
        assert!(build_args(Some("p"), Session::Resume(&"a".repeat(200)), &plain(), "").is_ok());
        assert!(build_args(Some("p"), Session::Resume("my title"), &plain(), "").is_err());
        assert!(plausible_session_id(SID));
        assert!(!plausible_session_id("-x"));
    }

    #[test]
    fn effective_tri_state_tools() {
        let settings = Settings {
            default_allowed_tools: strings(&["Read", "Grep"]),
            default_disallowed_tools: strings(&["Write"]),
            ..Settings::default()
        };
        // None inherits the defaults.
        let e = effective(&agent(), &settings, 0);
        assert_eq!(e.allowed_tools, strings(&["Read", "Grep"]));
        assert_eq!(e.disallowed_tools, strings(&["Write"]));
        // [] is an explicit "none" that suppresses the defaults.
        let mut a = agent();
        a.allowed_tools = Some(vec![]);
        a.disallowed_tools = Some(vec![]);
        let e = effective(&a, &settings, 0);
        assert!(e.allowed_tools.is_empty() && e.disallowed_tools.is_empty());
        let args = build_args(Some("p"), Session::New(SID), &e, "").unwrap();
        assert_eq!(args.len(), 7);
        // A list replaces the defaults; blank names are dropped.
        a.allowed_tools = Some(strings(&["Bash", " "]));
        a.disallowed_tools = None;
        let e = effective(&a, &settings, 0);
        assert_eq!(e.allowed_tools, strings(&["Bash"]));
        assert_eq!(e.disallowed_tools, strings(&["Write"]));
        let args = build_args(Some("p"), Session::New(SID), &e, "").unwrap();
        assert_eq!(
            args[7..],
            strings(&["--allowedTools", "Bash", "--disallowedTools", "Write"])
        );
    }

    #[test]
    fn effective_model_mode_and_budget() {
        let settings = Settings {
            default_permission_mode: Some("acceptEdits".into()),
            default_max_budget_usd: Some(2.0),
            ..Settings::default()
        };
        let e = effective(&agent(), &settings, 0);
        assert_eq!(e.model, None);
        assert_eq!(e.permission_mode.as_deref(), Some("acceptEdits"));
        assert_eq!(e.max_budget_usd, Some(2.0));

        let mut a = agent();
        a.model = Some(" opus ".into());
        a.permission_mode = Some("plan".into());
        a.max_budget_usd = Some(0.25);
        let e = effective(&a, &settings, 0);
        assert_eq!(e.model.as_deref(), Some("opus"));
        assert_eq!(e.permission_mode.as_deref(), Some("plan"));
        assert_eq!(e.max_budget_usd, Some(0.25));

        // Blank values are unset; a 0 budget falls back to the default, and is no budget there.
        a.model = Some("  ".into());
        a.permission_mode = Some(" ".into());
        a.max_budget_usd = Some(0.0);
        let e = effective(&a, &settings, 0);
        assert_eq!(e.model, None);
        assert_eq!(e.permission_mode.as_deref(), Some("acceptEdits"));
        assert_eq!(e.max_budget_usd, Some(2.0));
        let bare = Settings {
            default_permission_mode: Some("".into()),
            default_max_budget_usd: Some(0.0),
            ..Settings::default()
        };
        let e = effective(&a, &bare, 0);
        assert_eq!(e.permission_mode, None);
        assert_eq!(e.max_budget_usd, None);
    }

    #[test]
    fn effective_timeout() {
        let settings = Settings {
            default_timeout: 90,
            ..Settings::default()
        };
        let mut a = agent();
        assert_eq!(effective(&a, &settings, 0).timeout_secs, 300);
        a.timeout = 45;
        assert_eq!(effective(&a, &settings, 0).timeout_secs, 45);
        assert_eq!(effective(&a, &settings, -5).timeout_secs, 45);
        a.timeout = 0;
        assert_eq!(effective(&a, &settings, 0).timeout_secs, 90);
        assert_eq!(effective(&a, &settings, 1).timeout_secs, 10);
        assert_eq!(effective(&a, &settings, 600).timeout_secs, 600);
        assert_eq!(effective(&a, &settings, 99_999).timeout_secs, 7200);
        assert_eq!(effective(&a, &settings, i64::MAX).timeout_secs, 7200);
    }

    #[test]
    fn old_cli_detection() {
        assert!(old_cli_rejects_session_id(
            "error: unknown option '--session-id'\n"
        ));
        assert!(old_cli_rejects_session_id(
            "Error: Unrecognized option: --SESSION-ID"
        ));
        assert!(old_cli_rejects_session_id(
            "unexpected argument '--session-id' found"
        ));
        assert!(old_cli_rejects_session_id("--session-id: unknown argument"));
        assert!(!old_cli_rejects_session_id(
            "error: unknown option '--bogus-flag'"
        ));
        assert!(!old_cli_rejects_session_id(
            "Error: Session ID 11111111-2222-4333-8444-555555555555 is already in use."
        ));
        assert!(!old_cli_rejects_session_id(
            "Error: --session-id with --continue or --resume also needs --fork-session."
        ));
        assert!(!old_cli_rejects_session_id(""));
    }

    #[test]
    fn dropping_the_session_id_pair() {
        let args = build_args(Some("p"), Session::New(SID), &verified(), "").unwrap();
        let retry = without_session_id(&args);
        let mut want = args.clone();
        want.drain(5..7);
        assert_eq!(retry, want);
        assert_eq!(
            retry[..5],
            strings(&["-p", "p", "--output-format", "stream-json", "--verbose"])
        );
        // A prompt that is literally the flag is left alone.
        let args = build_args(Some("--session-id"), Session::New(SID), &plain(), "").unwrap();
        assert_eq!(
            without_session_id(&args),
            strings(&[
                "-p",
                "--session-id",
                "--output-format",
                "stream-json",
                "--verbose"
            ])
        );
        // Prompt on stdin.
        let args = build_args(None, Session::New(SID), &plain(), "").unwrap();
        assert_eq!(
            without_session_id(&args),
            strings(&["-p", "--output-format", "stream-json", "--verbose"])
        );
        // Nothing to drop.
        let args = build_args(Some("p"), Session::Resume("abc"), &plain(), "").unwrap();
        assert_eq!(without_session_id(&args), args);
    }
    // ---- --append-system-prompt (spec §8 0.14) ------------------------------------------

    const PROTOCOL: &str = "## Dispatch protocol\nYou are the agent \"web\" …\n- End your reply with one final line: `STATUS: done` …";

    #[test]
    fn system_prompt_goes_right_after_the_output_format() {
        let args = build_args(Some("<p>"), Session::New(SID), &verified(), PROTOCOL).unwrap();
        assert_eq!(
            args,
            strings(&[
                "-p",
                "<p>",
                "--output-format",
                "stream-json",
                "--verbose",
                "--append-system-prompt",
                PROTOCOL,
                "--session-id",
                SID,
                "--max-budget-usd",
                "0.5",
                "--model",
                "sonnet",
                "--permission-mode",
                "plan",
                "--allowedTools",
                "Read",
                "--allowedTools",
                "Bash(git diff)",
                "--disallowedTools",
                "Write",
            ])
        );
        // Also on resume, before --resume; and with the prompt on stdin.
        let args = build_args(None, Session::Resume("abc"), &plain(), PROTOCOL).unwrap();
        assert_eq!(
            args,
            strings(&[
                "-p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--append-system-prompt",
                PROTOCOL,
                "--resume",
                "abc",
            ])
        );
    }

    #[test]
    fn empty_system_prompt_adds_no_flag() {
        let args = build_args(Some("p"), Session::New(SID), &plain(), "").unwrap();
        assert!(!args.contains(&"--append-system-prompt".to_owned()));
        assert_eq!(args.len(), 7);
    }

    #[test]
    fn system_prompt_is_one_value_and_is_guarded() {
        // Newlines, quotes and flag-looking lines stay inside the one value.
        let text =
            "## Standing instructions for \"web\"\n--dangerously-skip-permissions\n'x' \"y\"";
        let args = build_args(Some("p"), Session::New(SID), &plain(), text).unwrap();
        assert_eq!(
            args[5..8],
            strings(&["--append-system-prompt", text, "--session-id"])
        );
        assert_eq!(args.len(), 9);
        assert_eq!(
            build_args(Some("p"), Session::New(SID), &plain(), "--x").unwrap_err(),
            "Refusing to dispatch: the system prompt starts with '-' and would be interpreted as a command-line flag by the claude CLI."
        );
        assert_eq!(
            build_args(Some("p"), Session::New(SID), &plain(), "## a\0b").unwrap_err(),
            "Refusing to dispatch: the system prompt (the agent's standing instructions) contains a NUL byte, which cannot be passed on a command line."
        );
        let huge = format!("## x\n{}", "i".repeat(MAX_ARG_BYTES));
        assert_eq!(
            build_args(Some("p"), Session::New(SID), &plain(), &huge).unwrap_err(),
            "Refusing to dispatch: the system prompt (131076 bytes: the dispatch protocol and the agent's standing instructions) cannot be passed as one command-line argument; shorten the instructions."
        );
        let edge = format!("#{}", "i".repeat(MAX_ARG_BYTES - 1));
        assert!(build_args(Some("p"), Session::New(SID), &plain(), &edge).is_ok());
    }

    #[test]
    fn dropping_the_session_id_keeps_the_system_prompt() {
        let args = build_args(Some("p"), Session::New(SID), &plain(), PROTOCOL).unwrap();
        assert_eq!(
            without_session_id(&args),
            strings(&[
                "-p",
                "p",
                "--output-format",
                "stream-json",
                "--verbose",
                "--append-system-prompt",
                PROTOCOL,
            ])
        );
        // A system prompt mentioning the flag is never taken for it.
        let text = "## x\n--session-id";
        let args = build_args(Some("p"), Session::New(SID), &plain(), text).unwrap();
        assert_eq!(
            without_session_id(&args)[5..],
            strings(&["--append-system-prompt", text])
        );
    }
}
