//! The prompt a dispatched agent receives (spec §3.2).

/// The JSON-mode footer, appended to either prompt layout when `response_format == "json"`.
const JSON_FOOTER: &str = "\n\n## Response format\nRespond with a single valid JSON value \
(object, array, or scalar) and nothing else. Do not wrap the JSON in markdown code fences. \
Do not add any explanatory text before or after. If you cannot satisfy this, respond with \
{\"error\": \"<reason>\"}.";

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
}
