//! Edits to agents: the three-way [`Edit`], [`AgentUpdate`] and its raw [`UpdateArgs`]
//! (shared by the MCP tool and the CLI), and [`build_agent`] for `add` with its [`AddArgs`].

use std::path::PathBuf;

use super::values::{
    check_not_flag, checked_tools, is_none_word, parse_tool_list, permission_mode_warning,
    py_float, timeout_error, validate_agent_name,
};
use super::{AgentConfig, DEFAULT_TIMEOUT};

/// Three-way field edit.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Edit<T> {
    /// Leave the field alone.
    #[default]
    Keep,
    /// Reset the field to its default (null, `""`, `[]`).
    Clear,
    /// Set the field to this value.
    Set(T),
}

impl<T> Edit<T> {
    /// Whether this edit leaves the field alone.
    pub fn is_keep(&self) -> bool {
        matches!(self, Edit::Keep)
    }
}

/// A change to some of an agent's fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentUpdate {
    /// `Clear` sets `""`.
    pub description: Edit<String>,
    /// `Clear` restores the default (300).
    pub timeout: Edit<u64>,
    /// `Clear` removes the budget.
    pub max_budget_usd: Edit<f64>,
    /// `Clear` removes the model.
    pub model: Edit<String>,
    /// `Clear` falls back to the settings default.
    pub permission_mode: Edit<String>,
    /// `Clear` inherits the settings default; `Set([])` means none.
    pub allowed_tools: Edit<Vec<String>>,
    /// Like `allowed_tools`.
    pub disallowed_tools: Edit<Vec<String>>,
    /// `Clear` sets `""`.
    pub instructions: Edit<String>,
    /// `Clear` sets `[]`.
    pub capabilities: Edit<Vec<String>>,
    /// `Clear` sets `[]`.
    pub risky_capabilities: Edit<Vec<String>>,
}

/// Raw update arguments with the MCP convention (shared by the MCP tool and the CLI):
/// empty string / 0 = keep; `none` (any case) = clear.
#[derive(Debug, Clone, Copy, Default)]
pub struct UpdateArgs<'a> {
    /// Literal text; `none` clears it to `""`.
    pub description: &'a str,
    /// Seconds; 0 keeps, negative is an error.
    pub timeout: i64,
    /// Dollars; 0 keeps, negative clears, non-finite is an error.
    pub max_budget_usd: f64,
    /// Model name; `none` clears.
    pub model: &'a str,
    /// Permission mode; `none` clears; unknown modes warn.
    pub permission_mode: &'a str,
    /// CSV; `none` inherits the defaults; `","` means none.
    pub allowed_tools: &'a str,
    /// CSV like `allowed_tools`.
    pub disallowed_tools: &'a str,
    /// Text (stripped); `none` clears.
    pub instructions: &'a str,
    /// CSV; `none` clears.
    pub capabilities: &'a str,
    /// CSV; `none` clears.
    pub risky_capabilities: &'a str,
}

impl AgentUpdate {
    /// Reads update arguments; returns the update and any warnings (unknown permission
    /// mode). Errors for a negative timeout, a non-finite budget and flag-like values.
    pub fn from_args(a: &UpdateArgs) -> Result<(AgentUpdate, Vec<String>), String> {
        let mut warnings = Vec::new();
        let description = if a.description.trim().is_empty() {
            Edit::Keep
        } else if is_none_word(a.description) {
            Edit::Clear
        } else {
            Edit::Set(a.description.to_owned())
        };
        let timeout = match a.timeout {
            t if t < 0 => return Err(timeout_error(t)),
            0 => Edit::Keep,
            t => Edit::Set(t.unsigned_abs()),
        };
        let max_budget_usd = match a.max_budget_usd {
            b if !b.is_finite() => {
                return Err(format!(
                    "max_budget_usd must be a finite number (got {})",
                    py_float(b)
                ))
            }
            b if b < 0.0 => Edit::Clear,
            b if b > 0.0 => Edit::Set(b),
            _ => Edit::Keep,
        };
        let model = match text_edit(a.model) {
            Edit::Set(m) => {
                check_not_flag("model", &m)?;
                Edit::Set(m)
            }
            other => other,
        };
        let permission_mode = match text_edit(a.permission_mode) {
            Edit::Set(m) => {
                check_not_flag("permission_mode", &m)?;
                warnings.extend(permission_mode_warning(&m));
                Edit::Set(m)
            }
            other => other,
        };
        Ok((
            AgentUpdate {
                description,
                timeout,
                max_budget_usd,
                model,
                permission_mode,
                allowed_tools: tools_edit("allowed tool", a.allowed_tools)?,
                disallowed_tools: tools_edit("disallowed tool", a.disallowed_tools)?,
                instructions: text_edit(a.instructions),
                capabilities: list_edit(a.capabilities),
                risky_capabilities: list_edit(a.risky_capabilities),
            },
            warnings,
        ))
    }

    /// Whether the update changes nothing.
    pub fn is_empty(&self) -> bool {
        self.description.is_keep()
            && self.timeout.is_keep()
            && self.max_budget_usd.is_keep()
            && self.model.is_keep()
            && self.permission_mode.is_keep()
            && self.allowed_tools.is_keep()
            && self.disallowed_tools.is_keep()
            && self.instructions.is_keep()
            && self.capabilities.is_keep()
            && self.risky_capabilities.is_keep()
    }

    /// Applies the update; returns the names of the fields set or cleared, in field order.
    pub fn apply(&self, agent: &mut AgentConfig) -> Vec<&'static str> {
        let mut fields = Vec::new();
        fn edit<T: Clone, U>(
            fields: &mut Vec<&'static str>,
            name: &'static str,
            edit: &Edit<T>,
            slot: &mut U,
            cleared: U,
            set: impl FnOnce(T) -> U,
        ) {
            match edit {
                Edit::Keep => return,
                Edit::Clear => *slot = cleared,
                Edit::Set(v) => *slot = set(v.clone()),
            }
            fields.push(name);
        }
        let f = &mut fields;
        edit(
            f,
            "description",
            &self.description,
            &mut agent.description,
            String::new(),
            |v| v,
        );
        edit(
            f,
            "timeout",
            &self.timeout,
            &mut agent.timeout,
            DEFAULT_TIMEOUT,
            |v| v,
        );
        edit(
            f,
            "max_budget_usd",
            &self.max_budget_usd,
            &mut agent.max_budget_usd,
            None,
            Some,
        );
        edit(f, "model", &self.model, &mut agent.model, None, Some);
        edit(
            f,
            "permission_mode",
            &self.permission_mode,
            &mut agent.permission_mode,
            None,
            Some,
        );
        edit(
            f,
            "allowed_tools",
            &self.allowed_tools,
            &mut agent.allowed_tools,
            None,
            Some,
        );
        edit(
            f,
            "disallowed_tools",
            &self.disallowed_tools,
            &mut agent.disallowed_tools,
            None,
            Some,
        );
        edit(
            f,
            "instructions",
            &self.instructions,
            &mut agent.instructions,
            String::new(),
            |v| v,
        );
        edit(
            f,
            "capabilities",
            &self.capabilities,
            &mut agent.capabilities,
            Vec::new(),
            |v| v,
        );
        edit(
            f,
            "risky_capabilities",
            &self.risky_capabilities,
            &mut agent.risky_capabilities,
            Vec::new(),
            |v| v,
        );
        fields
    }
}

/// Blank keeps, `none` clears, anything else sets the trimmed text.
fn text_edit(raw: &str) -> Edit<String> {
    let t = raw.trim();
    if t.is_empty() {
        Edit::Keep
    } else if t.eq_ignore_ascii_case("none") {
        Edit::Clear
    } else {
        Edit::Set(t.to_owned())
    }
}

/// Blank keeps, `none` clears (inherit), anything else is a checked CSV list.
fn tools_edit(label: &str, raw: &str) -> Result<Edit<Vec<String>>, String> {
    if is_none_word(raw) {
        return Ok(Edit::Clear);
    }
    match parse_tool_list(raw) {
        None => Ok(Edit::Keep),
        Some(tools) => Ok(Edit::Set(checked_tools(label, tools)?)),
    }
}

/// Blank keeps, `none` clears, anything else is a CSV list.
fn list_edit(raw: &str) -> Edit<Vec<String>> {
    if is_none_word(raw) {
        return Edit::Clear;
    }
    parse_tool_list(raw).map_or(Edit::Keep, Edit::Set)
}

/// Raw `add` arguments with the MCP convention: empty string / 0 = not given.
#[derive(Debug, Clone, Copy, Default)]
pub struct AddArgs<'a> {
    /// The new agent's name.
    pub name: &'a str,
    /// Blank = generate one from the directory.
    pub description: &'a str,
    /// Seconds; 0 = 300, negative is an error.
    pub timeout: i64,
    /// Dollars; 0 = none, negative or non-finite is an error.
    pub max_budget_usd: f64,
    /// Model name.
    pub model: &'a str,
    /// Permission mode; unknown modes warn.
    pub permission_mode: &'a str,
    /// CSV; blank inherits the defaults; `","` means none.
    pub allowed_tools: &'a str,
    /// CSV like `allowed_tools`.
    pub disallowed_tools: &'a str,
    /// Standing instructions (stripped).
    pub instructions: &'a str,
    /// CSV.
    pub capabilities: &'a str,
    /// CSV.
    pub risky_capabilities: &'a str,
}

/// Builds the `AgentConfig` for `add` from its arguments, the resolved `directory` and the
/// generated description (used only when `args.description` is blank). Returns the agent
/// and any warnings (unknown permission mode).
pub fn build_agent(
    args: &AddArgs,
    directory: PathBuf,
    auto_description: impl FnOnce() -> String,
) -> Result<(AgentConfig, Vec<String>), String> {
    validate_agent_name(args.name)?;
    let timeout = match args.timeout {
        t if t < 0 => return Err(timeout_error(t)),
        0 => DEFAULT_TIMEOUT,
        t => t.unsigned_abs(),
    };
    let budget = args.max_budget_usd;
    if !budget.is_finite() || budget < 0.0 {
        return Err(format!(
            "max_budget_usd must be >= 0 (got {})",
            py_float(budget)
        ));
    }
    let mut warnings = Vec::new();
    let model = match text_edit(args.model) {
        Edit::Set(m) => {
            check_not_flag("model", &m)?;
            Some(m)
        }
        _ => None,
    };
    let permission_mode = match text_edit(args.permission_mode) {
        Edit::Set(m) => {
            check_not_flag("permission_mode", &m)?;
            warnings.extend(permission_mode_warning(&m));
            Some(m)
        }
        _ => None,
    };
    let tools = |label: &str, raw: &str| -> Result<Option<Vec<String>>, String> {
        match tools_edit(label, raw)? {
            Edit::Set(t) => Ok(Some(t)),
            _ => Ok(None),
        }
    };
    let allowed_tools = tools("allowed tool", args.allowed_tools)?;
    let disallowed_tools = tools("disallowed tool", args.disallowed_tools)?;
    let list = |raw: &str| match list_edit(raw) {
        Edit::Set(items) => items,
        _ => Vec::new(),
    };
    let description = if args.description.trim().is_empty() {
        auto_description()
    } else {
        args.description.to_owned()
    };
    let instructions = match text_edit(args.instructions) {
        Edit::Set(t) => t,
        _ => String::new(),
    };
    Ok((
        AgentConfig {
            directory,
            description,
            timeout,
            max_budget_usd: (budget > 0.0).then_some(budget),
            model,
            permission_mode,
            allowed_tools,
            disallowed_tools,
            instructions,
            capabilities: list(args.capabilities),
            risky_capabilities: list(args.risky_capabilities),
        },
        warnings,
    ))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::tests::{agent, parse_ok};
    use super::*;

    // --- update arguments -----------------------------------------------------------

    fn args_update(a: UpdateArgs) -> (AgentUpdate, Vec<String>) {
        AgentUpdate::from_args(&a).expect("valid args")
    }

    #[test]
    fn empty_args_are_an_empty_update() {
        let (u, w) = args_update(UpdateArgs::default());
        assert!(u.is_empty());
        assert!(w.is_empty());
        let (u, _) = args_update(UpdateArgs {
            description: "  ",
            model: " ",
            allowed_tools: "  ",
            ..UpdateArgs::default()
        });
        assert!(u.is_empty());
        assert!(!args_update(UpdateArgs {
            timeout: 1,
            ..UpdateArgs::default()
        })
        .0
        .is_empty());
    }

    #[test]
    fn none_semantics() {
        let (u, w) = args_update(UpdateArgs {
            description: "NONE",
            max_budget_usd: -1.0,
            model: "None",
            permission_mode: "none",
            allowed_tools: "none",
            disallowed_tools: " nOnE ",
            instructions: "none",
            capabilities: "none",
            risky_capabilities: "none",
            ..UpdateArgs::default()
        });
        assert!(w.is_empty());
        assert_eq!(
            u,
            AgentUpdate {
                description: Edit::Clear,
                timeout: Edit::Keep,
                max_budget_usd: Edit::Clear,
                model: Edit::Clear,
                permission_mode: Edit::Clear,
                allowed_tools: Edit::Clear,
                disallowed_tools: Edit::Clear,
                instructions: Edit::Clear,
                capabilities: Edit::Clear,
                risky_capabilities: Edit::Clear,
            }
        );
        let mut a = AgentConfig {
            directory: PathBuf::from("/w"),
            description: "old".into(),
            timeout: 60,
            max_budget_usd: Some(1.0),
            model: Some("opus".into()),
            permission_mode: Some("plan".into()),
            allowed_tools: Some(vec!["Read".into()]),
            disallowed_tools: Some(vec![]),
            instructions: "x".into(),
            capabilities: vec!["c".into()],
            risky_capabilities: vec!["r".into()],
        };
        let fields = u.apply(&mut a);
        assert_eq!(
            fields,
            [
                "description",
                "max_budget_usd",
                "model",
                "permission_mode",
                "allowed_tools",
                "disallowed_tools",
                "instructions",
                "capabilities",
                "risky_capabilities"
            ]
        );
        let mut want = agent("/w");
        want.timeout = 60;
        assert_eq!(a, want);
    }

    #[test]
    fn set_values_and_field_order() {
        let (u, w) = args_update(UpdateArgs {
            description: " literal  text ",
            timeout: 90,
            max_budget_usd: 2.5,
            model: " sonnet ",
            permission_mode: " auto ",
            allowed_tools: "Read, Bash(git diff) ,,",
            disallowed_tools: ",",
            instructions: "  Stay in src/.  ",
            capabilities: "a,b",
            risky_capabilities: "x",
        });
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(u.description, Edit::Set(" literal  text ".into()));
        assert_eq!(u.timeout, Edit::Set(90));
        assert_eq!(u.max_budget_usd, Edit::Set(2.5));
        assert_eq!(u.model, Edit::Set("sonnet".into()));
        assert_eq!(u.permission_mode, Edit::Set("auto".into()));
        assert_eq!(
            u.allowed_tools,
            Edit::Set(vec!["Read".into(), "Bash(git diff)".into()])
        );
        assert_eq!(u.disallowed_tools, Edit::Set(vec![]));
        assert_eq!(u.instructions, Edit::Set("Stay in src/.".into()));
        assert_eq!(u.capabilities, Edit::Set(vec!["a".into(), "b".into()]));
        let mut doc = parse_ok("agents:\n  web: {directory: /w}\n");
        assert_eq!(
            doc.update_agent("web", &u),
            Ok(vec![
                "description",
                "timeout",
                "max_budget_usd",
                "model",
                "permission_mode",
                "allowed_tools",
                "disallowed_tools",
                "instructions",
                "capabilities",
                "risky_capabilities"
            ])
        );
        let back = parse_ok(&doc.to_yaml().unwrap());
        let web = back.config.agent("web").expect("web");
        assert_eq!(web.timeout, 90);
        assert_eq!(web.disallowed_tools, Some(vec![]));
        assert_eq!(web.risky_capabilities, vec!["x".to_owned()]);
    }

    #[test]
    fn unknown_permission_mode_warns_but_is_stored() {
        let (u, w) = args_update(UpdateArgs {
            permission_mode: "yolo",
            ..UpdateArgs::default()
        });
        assert_eq!(u.permission_mode, Edit::Set("yolo".into()));
        assert_eq!(
            w,
            ["Unknown permission_mode: 'yolo'. Known values: acceptEdits, auto, bypassPermissions, default, dontAsk, manual, plan"]
        );
    }

    #[test]
    fn update_arg_errors() {
        let err = |a: UpdateArgs| AgentUpdate::from_args(&a).expect_err("error");
        assert_eq!(
            err(UpdateArgs { timeout: -5, ..UpdateArgs::default() }),
            "timeout must be a positive number of seconds (got -5); pass 0 to keep the agent's current value."
        );
        assert_eq!(
            err(UpdateArgs {
                max_budget_usd: f64::INFINITY,
                ..UpdateArgs::default()
            }),
            "max_budget_usd must be a finite number (got inf)"
        );
        assert_eq!(
            err(UpdateArgs {
                max_budget_usd: f64::NAN,
                ..UpdateArgs::default()
            }),
            "max_budget_usd must be a finite number (got nan)"
        );
        assert_eq!(
            err(UpdateArgs { allowed_tools: "Read,-x", ..UpdateArgs::default() }),
            "allowed tool '-x' starts with '-' and would be interpreted as a command-line flag by the claude CLI."
        );
        assert_eq!(
            err(UpdateArgs { disallowed_tools: "--dangerously-skip-permissions", ..UpdateArgs::default() }),
            "disallowed tool '--dangerously-skip-permissions' starts with '-' and would be interpreted as a command-line flag by the claude CLI."
        );
        assert_eq!(
            err(UpdateArgs { model: " -m", ..UpdateArgs::default() }),
            "model '-m' starts with '-' and would be interpreted as a command-line flag by the claude CLI."
        );
        assert_eq!(
            err(UpdateArgs { permission_mode: "--x", ..UpdateArgs::default() }),
            "permission_mode '--x' starts with '-' and would be interpreted as a command-line flag by the claude CLI."
        );
    }

    // --- add ------------------------------------------------------------------------

    #[test]
    fn build_agent_defaults_and_auto_description() {
        let args = AddArgs {
            name: "web",
            ..AddArgs::default()
        };
        let (a, w) = build_agent(&args, PathBuf::from("/w"), || "auto desc".into()).expect("ok");
        assert!(w.is_empty());
        let mut want = agent("/w");
        want.description = "auto desc".into();
        assert_eq!(a, want);
    }

    #[test]
    fn build_agent_uses_given_values() {
        let args = AddArgs {
            name: "web-2_x",
            description: "Mine",
            timeout: 45,
            max_budget_usd: 0.25,
            model: "haiku",
            permission_mode: "weird",
            allowed_tools: ",",
            disallowed_tools: "Write, Edit",
            instructions: " Be careful. ",
            capabilities: "a, b",
            risky_capabilities: "",
        };
        let (a, w) = build_agent(&args, PathBuf::from("/w"), || panic!("not needed")).expect("ok");
        assert_eq!(w.len(), 1);
        assert!(
            w[0].starts_with("Unknown permission_mode: 'weird'."),
            "{w:?}"
        );
        assert_eq!(
            a,
            AgentConfig {
                directory: PathBuf::from("/w"),
                description: "Mine".into(),
                timeout: 45,
                max_budget_usd: Some(0.25),
                model: Some("haiku".into()),
                permission_mode: Some("weird".into()),
                allowed_tools: Some(vec![]),
                disallowed_tools: Some(vec!["Write".into(), "Edit".into()]),
                instructions: "Be careful.".into(),
                capabilities: vec!["a".into(), "b".into()],
                risky_capabilities: vec![],
            }
        );
    }

    #[test]
    fn build_agent_errors() {
        let build = |args: AddArgs| build_agent(&args, PathBuf::from("/w"), String::new);
        assert_eq!(
            build(AddArgs { name: "a b", ..AddArgs::default() }).expect_err("name"),
            "Invalid agent name: 'a b'. Use only letters, digits, hyphens, and underscores. Must start with a letter or digit."
        );
        assert_eq!(
            build(AddArgs { name: "a", timeout: -1, ..AddArgs::default() }).expect_err("timeout"),
            "timeout must be a positive number of seconds (got -1); pass 0 to keep the agent's current value."
        );
        assert_eq!(
            build(AddArgs {
                name: "a",
                max_budget_usd: -1.0,
                ..AddArgs::default()
            })
            .expect_err("budget"),
            "max_budget_usd must be >= 0 (got -1.0)"
        );
        assert_eq!(
            build(AddArgs {
                name: "a",
                max_budget_usd: f64::NAN,
                ..AddArgs::default()
            })
            .expect_err("nan"),
            "max_budget_usd must be >= 0 (got nan)"
        );
        assert!(build(AddArgs {
            name: "a",
            model: "-x",
            ..AddArgs::default()
        })
        .expect_err("model")
        .starts_with("model '-x' starts with '-'"));
        assert!(build(AddArgs {
            name: "a",
            allowed_tools: "-x",
            ..AddArgs::default()
        })
        .expect_err("tool")
        .starts_with("allowed tool '-x' starts with '-'"));
    }
}
