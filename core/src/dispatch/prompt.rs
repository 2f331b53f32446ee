//! The prompt a dispatched agent receives (spec §3.2), and the system-prompt addition of
//! the 0.14 dispatch protocol (spec §8), passed as `--append-system-prompt`.

use crate::dispatch::outcome::py_g;

/// The JSON-mode footer, appended to either prompt layout when `response_format == "json"`.
const JSON_FOOTER: &str = "\n\n## Response format\nRespond with a single valid JSON value \
(object, array, or scalar) and nothing else. Do not wrap the JSON in markdown code fences. \
Do not add any explanatory text before or after. If you cannot satisfy this, respond with \
{\"error\": \"<reason>\"}.";

/// The dispatch protocol's bullets that hold in every mode (the time-budget bullet sits
/// between these and the reply-format ones).
const PROTOCOL_RULES: [&str; 2] = [
    "- Nobody can answer a question or approve an action. Never end with a clarifying \
     question — state your assumption and proceed; when two readings differ materially, \
     take the safer one and say which you took.",
    "- If a tool is denied or something is missing, report it and still finish everything \
     that is possible.",
];

/// The reply-format bullets, left out in JSON mode (the answer must be JSON alone there).
const PROTOCOL_REPLY_RULES: [&str; 2] = [
    "- Reply for a machine reader: lead with the outcome or answer, then the evidence and \
     what you changed; list what you could not do and why. No preamble, no restating the \
     task.",
    "- End your reply with one final line: `STATUS: done` (task fully completed), \
     `STATUS: partial` (some of it done — say what is missing), or `STATUS: blocked` (no \
     progress possible — say what you need).",
];

/// What the system-prompt addition of one run is made of.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SystemPrompt<'a> {
    /// `settings.dispatch_protocol`.
    pub protocol: bool,
    pub agent: &'a str,
    /// Who dispatched (the request's `caller`); empty = unknown.
    pub caller: &'a str,
    /// The run's effective timeout.
    pub timeout_secs: u64,
    /// The run's effective spend cap.
    pub budget: Option<f64>,
    pub json_mode: bool,
    /// The agent's standing instructions.
    pub instructions: &'a str,
}

/// The `--append-system-prompt` text (spec §8 0.14); empty = no flag.
///
/// With the protocol on: the `## Dispatch protocol` block (who the agent is and who
/// dispatched it, the rules, the time budget, and — unless JSON mode — the reply format and
/// the `STATUS:` line). Then, when the agent has standing instructions,
/// `## Standing instructions for "<name>"` with them (alone, without the leading blank
/// line, when the protocol is off). Always starts with `#` when not empty, so it can never
/// be read as a flag.
pub(crate) fn system_prompt(s: &SystemPrompt<'_>) -> String {
    let mut text = String::new();
    if s.protocol {
        let by = if s.caller.is_empty() {
            "another agent".to_owned()
        } else {
            format!("\"{}\" (another agent)", s.caller)
        };
        let cap = s
            .budget
            .map(|b| format!(", spend cap ${}", py_g(b)))
            .unwrap_or_default();
        let mut lines = vec![
            "## Dispatch protocol".to_owned(),
            format!(
                "You are the agent \"{}\", dispatched by {by} and running non-interactively: \
                 no human is watching this session.",
                s.agent
            ),
        ];
        lines.extend(PROTOCOL_RULES.map(str::to_owned));
        lines.push(format!(
            "- Time budget: about {} seconds for the whole run{cap}. Scope the work to fit; a \
             complete partial answer beats an unfinished perfect one.",
            s.timeout_secs
        ));
        if !s.json_mode {
            lines.extend(PROTOCOL_REPLY_RULES.map(str::to_owned));
        }
        text = lines.join("\n");
    }
    let instructions = s.instructions.trim();
    if !instructions.is_empty() {
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        text.push_str(&format!(
            "## Standing instructions for \"{}\"\n{instructions}",
            s.agent
        ));
    }
    text
}

/// What a caller asked for. Empty strings mean "not given".
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    pub task: &'a str,
    pub context: &'a str,
    pub caller: &'a str,
    pub goal: &'a str,
    pub response_format: &'a str,
}

/// Whether the caller asked for a JSON answer: exactly `"json"` (case and spaces matter,
/// as in the Python version; other values only change the cache key).
pub(crate) fn is_json_mode(response_format: &str) -> bool {
    response_format == "json"
}

/// The prompt text.
///
/// Without caller and goal: `Context:\n<context>\n\nTask:\n<task>`, or the task verbatim
/// when there is no context. Otherwise Markdown sections `## Goal`, `## Dispatched by`,
/// `## Context` (each only when given) and `## Task`, separated by blank lines. JSON mode
/// appends the response-format footer to either layout.
pub(crate) fn build_prompt(r: &Request) -> String {
    let mut prompt = if r.caller.is_empty() && r.goal.is_empty() {
        if r.context.is_empty() {
            r.task.to_owned()
        } else {
            format!("Context:\n{}\n\nTask:\n{}", r.context, r.task)
        }
    } else {
        let sections = [
            ("Goal", r.goal),
            ("Dispatched by", r.caller),
            ("Context", r.context),
        ];
        let mut parts: Vec<String> = sections
            .iter()
            .filter(|(_, body)| !body.is_empty())
            .map(|(title, body)| format!("## {title}\n{body}"))
            .collect();
        parts.push(format!("## Task\n{}", r.task));
        parts.join("\n\n")
    };
    if is_json_mode(r.response_format) {
        prompt.push_str(JSON_FOOTER);
    }
    prompt
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(task: &'a str, context: &'a str, caller: &'a str, goal: &'a str) -> Request<'a> {
        Request {
            task,
            context,
            caller,
            goal,
            response_format: "",
        }
    }

    #[test]
    fn bare_task_is_verbatim() {
        assert_eq!(
            build_prompt(&req("list the logs", "", "", "")),
            "list the logs"
        );
        // Nothing is trimmed or escaped.
        assert_eq!(build_prompt(&req("  --x\n", "", "", "")), "  --x\n");
    }

    #[test]
    fn context_without_caller_or_goal_uses_the_plain_layout() {
        assert_eq!(
            build_prompt(&req("fix it", "the build fails", "", "")),
            "Context:\nthe build fails\n\nTask:\nfix it"
        );
    }

    #[test]
    fn caller_or_goal_switches_to_sections() {
        assert_eq!(
            build_prompt(&req("fix it", "the build fails", "web", "ship 1.2")),
            "## Goal\nship 1.2\n\n## Dispatched by\nweb\n\n## Context\nthe build fails\n\n## Task\nfix it"
        );
        assert_eq!(
            build_prompt(&req("fix it", "", "web", "")),
            "## Dispatched by\nweb\n\n## Task\nfix it"
        );
        assert_eq!(
            build_prompt(&req("fix it", "", "", "ship")),
            "## Goal\nship\n\n## Task\nfix it"
        );
        assert_eq!(
            build_prompt(&req("fix it", "ctx", "", "ship")),
            "## Goal\nship\n\n## Context\nctx\n\n## Task\nfix it"
        );
    }

    #[test]
    fn json_footer_is_appended_to_either_layout() {
        let footer = "\n\n## Response format\nRespond with a single valid JSON value (object, array, or scalar) and nothing else. Do not wrap the JSON in markdown code fences. Do not add any explanatory text before or after. If you cannot satisfy this, respond with {\"error\": \"<reason>\"}.";
        let mut r = req("count errors", "", "", "");
        r.response_format = "json";
        assert_eq!(build_prompt(&r), format!("count errors{footer}"));
        assert!(build_prompt(&r).ends_with("{\"error\": \"<reason>\"}."));
        let mut r = req("count errors", "logs", "web", "");
        r.response_format = "json";
        assert_eq!(
            build_prompt(&r),
            format!("## Dispatched by\nweb\n\n## Context\nlogs\n\n## Task\ncount errors{footer}")
        );
    }

    #[test]
    fn only_exact_json_is_json_mode() {
        assert!(is_json_mode("json"));
        for other in ["", "JSON", " json", "json ", "text", "yaml"] {
            assert!(!is_json_mode(other), "{other:?}");
            let mut r = req("t", "", "", "");
            r.response_format = other;
            assert_eq!(build_prompt(&r), "t");
        }
    }
    // ---- the dispatch protocol (spec §8 0.14) ------------------------------------------

    const HEAD_NO_CALLER: &str = "## Dispatch protocol\nYou are the agent \"web\", dispatched by another agent and running non-interactively: no human is watching this session.";
    const RULES: &str = "- Nobody can answer a question or approve an action. Never end with a clarifying question — state your assumption and proceed; when two readings differ materially, take the safer one and say which you took.\n- If a tool is denied or something is missing, report it and still finish everything that is possible.";
    const REPLY: &str = "- Reply for a machine reader: lead with the outcome or answer, then the evidence and what you changed; list what you could not do and why. No preamble, no restating the task.\n- End your reply with one final line: `STATUS: done` (task fully completed), `STATUS: partial` (some of it done — say what is missing), or `STATUS: blocked` (no progress possible — say what you need).";

    fn sp() -> SystemPrompt<'static> {
        SystemPrompt {
            protocol: true,
            agent: "web",
            caller: "",
            timeout_secs: 300,
            budget: None,
            json_mode: false,
            instructions: "",
        }
    }

    #[test]
    fn protocol_text_without_caller_budget_or_instructions() {
        assert_eq!(
            system_prompt(&sp()),
            format!("{HEAD_NO_CALLER}\n{RULES}\n- Time budget: about 300 seconds for the whole run. Scope the work to fit; a complete partial answer beats an unfinished perfect one.\n{REPLY}")
        );
        assert!(system_prompt(&sp()).starts_with('#'));
    }

    #[test]
    fn protocol_text_with_caller_budget_and_instructions() {
        let s = SystemPrompt {
            caller: "orchestrator",
            timeout_secs: 45,
            budget: Some(0.5),
            instructions: "  Stay in src/.\nNever push.  \n",
            ..sp()
        };
        assert_eq!(
            system_prompt(&s),
            format!(
                "## Dispatch protocol\nYou are the agent \"web\", dispatched by \"orchestrator\" (another agent) and running non-interactively: no human is watching this session.\n{RULES}\n- Time budget: about 45 seconds for the whole run, spend cap $0.5. Scope the work to fit; a complete partial answer beats an unfinished perfect one.\n{REPLY}\n\n## Standing instructions for \"web\"\nStay in src/.\nNever push."
            )
        );
    }

    #[test]
    fn protocol_budget_is_printed_like_python_g() {
        for (budget, text) in [
            (1.0, "$1."),
            (2.5, "$2.5."),
            (0.0001, "$0.0001."),
            (0.00001, "$1e-05."),
            (1234567.0, "$1.23457e+06."),
        ] {
            let s = SystemPrompt {
                budget: Some(budget),
                ..sp()
            };
            let want = format!("about 300 seconds for the whole run, spend cap {text} Scope");
            assert!(system_prompt(&s).contains(&want), "{budget}");
        }
    }

    #[test]
    fn json_mode_drops_the_reply_format_bullets() {
        let s = SystemPrompt {
            json_mode: true,
            ..sp()
        };
        assert_eq!(
            system_prompt(&s),
            format!("{HEAD_NO_CALLER}\n{RULES}\n- Time budget: about 300 seconds for the whole run. Scope the work to fit; a complete partial answer beats an unfinished perfect one.")
        );
        assert!(!system_prompt(&s).contains("STATUS"));
    }

    #[test]
    fn protocol_off() {
        let off = SystemPrompt {
            protocol: false,
            ..sp()
        };
        // Nothing to add: no flag at all.
        assert_eq!(system_prompt(&off), "");
        let blank = SystemPrompt {
            instructions: " \n\t ",
            ..off
        };
        assert_eq!(system_prompt(&blank), "");
        // Instructions alone, without leading blank lines.
        let with = SystemPrompt {
            instructions: "\nBe brief.\n",
            ..off
        };
        assert_eq!(
            system_prompt(&with),
            "## Standing instructions for \"web\"\nBe brief."
        );
    }
}
