//! Reading the YAML tree into the typed view: [`AgentConfig`]s and [`Settings`], with
//! errors that name the offending field as a dotted path and pydantic-style lax coercion.

use std::path::Path;

use serde_yaml::{Mapping, Value};

use super::values::{expand_path, py_repr, validate_agent_name};
use super::{AgentConfig, CacheSettings, Limits, Settings, DEFAULT_TIMEOUT};

pub(super) fn parse_agents(
    map: &Mapping,
    home: &Path,
    cwd: &Path,
) -> Result<Vec<(String, AgentConfig)>, String> {
    let mut agents = Vec::with_capacity(map.len());
    for (key, value) in map {
        let Value::String(name) = untag(key) else {
            return Err(format!(
                "agents: agent names must be strings (got {}); quote the name",
                show(key)
            ));
        };
        if validate_agent_name(name).is_err() {
            return Err(format!(
                "agents.{}: invalid agent name (use only letters, digits, hyphens, and underscores; it must start with a letter or digit)",
                py_repr(name)
            ));
        }
        let agent = parse_agent(name, value, home, cwd)?;
        agents.push((name.clone(), agent));
    }
    Ok(agents)
}

fn parse_agent(name: &str, value: &Value, home: &Path, cwd: &Path) -> Result<AgentConfig, String> {
    let path = format!("agents.{name}");
    let Value::Mapping(map) = untag(value) else {
        return Err(format!(
            "{path}: must be a mapping of agent settings with at least a directory (got {})",
            show(value)
        ));
    };
    let s = Section { path, map };
    let directory = match s.get("directory") {
        None => return Err(s.err("directory", "required".to_owned())),
        Some(Value::String(d)) if !d.trim().is_empty() => expand_path(d, home, cwd),
        Some(Value::String(_)) => return Err(s.err("directory", "must not be empty".to_owned())),
        Some(other) => {
            return Err(s.err(
                "directory",
                format!("must be a path string (got {})", show(other)),
            ))
        }
    };
    Ok(AgentConfig {
        directory,
        description: s.string("description")?.unwrap_or_default(),
        timeout: s.int("timeout", 0, u64::MAX)?.unwrap_or(DEFAULT_TIMEOUT),
        max_budget_usd: s.float("max_budget_usd")?,
        model: s.nonempty_string("model")?,
        permission_mode: s.nonempty_string("permission_mode")?,
        allowed_tools: s.list("allowed_tools")?,
        disallowed_tools: s.list("disallowed_tools")?,
        instructions: s
            .string("instructions")?
            .map(|t| t.trim().to_owned())
            .unwrap_or_default(),
        capabilities: s.list("capabilities")?.unwrap_or_default(),
        risky_capabilities: s.list("risky_capabilities")?.unwrap_or_default(),
    })
}

pub(super) fn parse_settings(map: &Mapping) -> Result<Settings, String> {
    let s = Section {
        path: "settings".to_owned(),
        map,
    };
    let d = Settings::default();
    let u32_max = u64::from(u32::MAX);
    let cache = match s.get("cache") {
        None => CacheSettings::default(),
        Some(Value::Mapping(m)) => {
            let c = Section {
                path: "settings.cache".to_owned(),
                map: m,
            };
            let dc = CacheSettings::default();
            CacheSettings {
                enabled: c.bool("enabled")?.unwrap_or(dc.enabled),
                ttl: c.int("ttl", 0, u64::MAX)?.unwrap_or(dc.ttl),
                max_size: c.int("max_size", 1, u64::MAX)?.unwrap_or(dc.max_size),
            }
        }
        Some(other) => {
            return Err(s.err("cache", format!("must be a mapping (got {})", show(other))))
        }
    };
    let limits = match s.get("limits") {
        None => Limits::default(),
        Some(Value::Mapping(m)) => {
            let l = Section {
                path: "settings.limits".to_owned(),
                map: m,
            };
            let dl = Limits::default();
            Limits {
                max_line_bytes: l
                    .int("max_line_bytes", 1024, 1 << 40)?
                    .unwrap_or(dl.max_line_bytes),
                stderr_tail_bytes: l
                    .int("stderr_tail_bytes", 1024, 1 << 32)?
                    .unwrap_or(dl.stderr_tail_bytes),
                progress_tail: l.int("progress_tail", 1, 1000)?.unwrap_or(dl.progress_tail),
                max_parallel_items: l
                    .int("max_parallel_items", 0, 100_000)?
                    .unwrap_or(dl.max_parallel_items),
            }
        }
        Some(other) => {
            return Err(s.err("limits", format!("must be a mapping (got {})", show(other))))
        }
    };
    Ok(Settings {
        limits,
        default_timeout: s
            .int("default_timeout", 1, u64::MAX)?
            .unwrap_or(d.default_timeout),
        default_max_budget_usd: s.float("default_max_budget_usd")?,
        default_permission_mode: s.nonempty_string("default_permission_mode")?,
        default_allowed_tools: s.list("default_allowed_tools")?.unwrap_or_default(),
        default_disallowed_tools: s.list("default_disallowed_tools")?.unwrap_or_default(),
        max_dispatch_depth: s
            .int("max_dispatch_depth", 1, u32_max)?
            .map_or(d.max_dispatch_depth, |v| {
                u32::try_from(v).unwrap_or(u32::MAX)
            }),
        max_concurrency: s
            .int("max_concurrency", 1, u32_max)?
            .map_or(d.max_concurrency, |v| u32::try_from(v).unwrap_or(u32::MAX)),
        cache,
        job_retention_days: s
            .float("job_retention_days")?
            .unwrap_or(d.job_retention_days),
        dispatch_protocol: s.bool("dispatch_protocol")?.unwrap_or(d.dispatch_protocol),
        daemon: s.bool("daemon")?.unwrap_or(d.daemon),
    })
}

/// One mapping being read, with its dotted path for messages. Every getter returns
/// `Ok(None)` for a missing key or a YAML null.
struct Section<'a> {
    path: String,
    map: &'a Mapping,
}

impl<'a> Section<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).map(untag).filter(|v| !v.is_null())
    }

    fn err(&self, key: &str, msg: String) -> String {
        format!("{}.{key}: {msg}", self.path)
    }

    fn int(&self, key: &str, min: u64, max: u64) -> Result<Option<u64>, String> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match to_int(v) {
            Some(i) if i >= i128::from(min) && i <= i128::from(max) => {
                Ok(Some(u64::try_from(i).unwrap_or(max)))
            }
            Some(i) if i > i128::from(max) => Err(self.err(
                key,
                format!("must be an integer <= {max} (got {})", show(v)),
            )),
            _ if min == 0 => Err(self.err(
                key,
                format!("must be a non-negative integer (got {})", show(v)),
            )),
            _ => Err(self.err(
                key,
                format!("must be an integer >= {min} (got {})", show(v)),
            )),
        }
    }

    fn float(&self, key: &str) -> Result<Option<f64>, String> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match to_float(v) {
            // `+ 0.0` turns -0.0 into 0.0.
            Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f + 0.0)),
            _ => Err(self.err(
                key,
                format!("must be a non-negative number (got {})", show(v)),
            )),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, String> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        to_bool(v)
            .map(Some)
            .ok_or_else(|| self.err(key, format!("must be true or false (got {})", show(v))))
    }

    fn string(&self, key: &str) -> Result<Option<String>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.err(
                key,
                format!("must be a string (got {}); quote it", show(other)),
            )),
        }
    }

    /// A string where "" (or blanks) means the same as null.
    fn nonempty_string(&self, key: &str) -> Result<Option<String>, String> {
        Ok(self.string(key)?.filter(|s| !s.trim().is_empty()))
    }

    fn list(&self, key: &str) -> Result<Option<Vec<String>>, String> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let Value::Sequence(items) = v else {
            return Err(self.err(key, format!("must be a list of strings (got {})", show(v))));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match untag(item) {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!(
                    "{}.{key}[{i}]: must be a string (got {})",
                    self.path,
                    show(other)
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

pub(super) fn untag(mut v: &Value) -> &Value {
    while let Value::Tagged(t) = v {
        v = &t.value;
    }
    v
}

/// A value as shown in messages.
pub(super) fn show(v: &Value) -> String {
    match untag(v) {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => py_repr(s),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(_) => "a mapping".to_owned(),
        Value::Tagged(_) => "a tagged value".to_owned(),
    }
}

/// Lax integer coercion: integers, integral floats, and strings holding either.
fn to_int(v: &Value) -> Option<i128> {
    fn integral(f: f64) -> Option<i128> {
        // 2^100 is far beyond u64 and exact in both types; bigger values are out of range.
        (f.is_finite() && f.fract() == 0.0 && f.abs() < 1.267_650_600_228_229_4e30)
            .then_some(f as i128)
    }
    match v {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .or_else(|| n.as_f64().and_then(integral)),
        Value::String(s) => {
            let t = s.trim();
            t.parse::<i128>()
                .ok()
                .or_else(|| t.parse::<f64>().ok().and_then(integral))
        }
        _ => None,
    }
}

/// Lax float coercion: numbers and numeric strings.
fn to_float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
}

/// Lax boolean coercion, as pydantic does it (also covers YAML 1.1's yes/no/on/off).
fn to_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "y" | "t" | "1" => Some(true),
            "false" | "no" | "off" | "n" | "f" | "0" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::tests::{agent, parse_err, parse_ok};
    use super::super::{AgentConfig, CacheSettings, Config, Limits, Settings};

    #[test]
    fn parses_every_field() {
        let doc = parse_ok(
            "agents:
  web:
    directory: /srv/web
    description: The web app
    timeout: 600
    max_budget_usd: 0.5
    model: sonnet
    permission_mode: plan
    allowed_tools: [Read, 'Bash(git diff)']
    disallowed_tools: []
    instructions: '  Be brief.  '
    capabilities: [deploy]
    risky_capabilities: [prod-db]
  api:
    directory: ~/api
settings:
  default_timeout: 120
  default_max_budget_usd: 2
  default_permission_mode: acceptEdits
  default_allowed_tools: [Read]
  default_disallowed_tools: [Write]
  max_dispatch_depth: 2
  max_concurrency: 8
  cache: {enabled: false, ttl: 0, max_size: 1}
  job_retention_days: 1.5
  dispatch_protocol: true
  daemon: true
",
        );
        let c = &doc.config;
        assert_eq!(c.names(), ["web", "api"]);
        let web = c.agent("web").expect("web");
        assert_eq!(
            *web,
            AgentConfig {
                directory: PathBuf::from("/srv/web"),
                description: "The web app".into(),
                timeout: 600,
                max_budget_usd: Some(0.5),
                model: Some("sonnet".into()),
                permission_mode: Some("plan".into()),
                allowed_tools: Some(vec!["Read".into(), "Bash(git diff)".into()]),
                disallowed_tools: Some(vec![]),
                instructions: "Be brief.".into(),
                capabilities: vec!["deploy".into()],
                risky_capabilities: vec!["prod-db".into()],
            }
        );
        assert_eq!(*c.agent("api").expect("api"), agent("/home/u/api"));
        assert!(c.agent("nope").is_none());
        assert_eq!(
            c.settings,
            Settings {
                default_timeout: 120,
                default_max_budget_usd: Some(2.0),
                default_permission_mode: Some("acceptEdits".into()),
                default_allowed_tools: vec!["Read".into()],
                default_disallowed_tools: vec!["Write".into()],
                max_dispatch_depth: 2,
                max_concurrency: 8,
                cache: CacheSettings {
                    enabled: false,
                    ttl: 0,
                    max_size: 1
                },
                job_retention_days: 1.5,
                dispatch_protocol: true,
                daemon: true,
                limits: Limits::default(),
            }
        );
    }

    #[test]
    fn limits_are_bounded_settings() {
        let doc = parse_ok(
            "settings:\n  limits:\n    max_line_bytes: 4096\n    stderr_tail_bytes: '2048'\n    progress_tail: 5\n    max_parallel_items: 7\n",
        );
        let limits = &doc.config.settings.limits;
        assert_eq!(
            (
                limits.max_line_bytes,
                limits.stderr_tail_bytes,
                limits.progress_tail,
                limits.max_parallel_items
            ),
            (4096, 2048, 5, 7)
        );
        assert_eq!(limits.parallel_cap(3), 7);
        assert_eq!(Limits::default().parallel_cap(3), 100);
        assert_eq!(Limits::default().parallel_cap(8), 160);
        let e = parse_err("settings:\n  limits:\n    max_line_bytes: 10\n");
        assert!(
            e.contains("settings.limits.max_line_bytes") && e.contains("1024"),
            "{e}"
        );
        let e = parse_err("settings:\n  limits:\n    progress_tail: 5000\n");
        assert!(e.contains("settings.limits.progress_tail"), "{e}");
        let e = parse_err("settings:\n  limits: 3\n");
        assert!(
            e.contains("settings.limits") && e.contains("mapping"),
            "{e}"
        );
    }

    #[test]
    fn lax_coercion() {
        let doc = parse_ok(
            "agents:
  web:
    directory: ./web/../web2/.
    timeout: '30'
    max_budget_usd: '1.25'
settings:
  default_timeout: 60.0
  max_concurrency: ' 7 '
  cache:
    enabled: 'false'
    ttl: '10'
  dispatch_protocol: yes
  daemon: 'On'
  job_retention_days: 3
",
        );
        let web = doc.config.agent("web").expect("web");
        assert_eq!(web.timeout, 30);
        assert_eq!(web.max_budget_usd, Some(1.25));
        assert_eq!(web.directory, PathBuf::from("/work/here/web2"));
        let s = &doc.config.settings;
        assert_eq!(s.default_timeout, 60);
        assert_eq!(s.max_concurrency, 7);
        assert!(!s.cache.enabled);
        assert_eq!(s.cache.ttl, 10);
        assert!(s.dispatch_protocol);
        assert!(s.daemon);
        assert_eq!(s.job_retention_days, 3.0);
    }

    #[test]
    fn nulls_mean_defaults() {
        let doc = parse_ok(
            "agents:
  web:
    directory: /w
    description: null
    timeout: ~
    max_budget_usd: null
    model: null
    allowed_tools: null
    capabilities: null
    instructions: null
settings:
  default_timeout: null
  cache: null
  default_allowed_tools: null
",
        );
        assert_eq!(*doc.config.agent("web").expect("web"), agent("/w"));
        assert_eq!(doc.config.settings, Settings::default());
        let doc = parse_ok("agents:\nsettings:\n");
        assert_eq!(doc.config, Config::default());
    }

    #[test]
    fn empty_strings_for_optional_strings_mean_none() {
        let doc = parse_ok(
            "agents:\n  web:\n    directory: /w\n    model: ''\n    permission_mode: ' '\n",
        );
        let web = doc.config.agent("web").expect("web");
        assert_eq!(web.model, None);
        assert_eq!(web.permission_mode, None);
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let doc = parse_ok(
            "version: 2
groups:
  g: {members: [{agent: web}]}
agents:
  web: {directory: /w, color: blue}
settings:
  usage_log: false
  cache: {shape: round}
",
        );
        assert_eq!(doc.config.names(), ["web"]);
        assert_eq!(doc.config.settings, Settings::default());
    }

    #[test]
    fn errors_name_the_field() {
        let cases: &[(&str, &str)] = &[
            (
                "agents:\n  web: {directory: /w, timeout: -5}\n",
                "agents.web.timeout: must be a non-negative integer (got -5)",
            ),
            (
                "agents:\n  web: {directory: /w, timeout: 2.5}\n",
                "agents.web.timeout: must be a non-negative integer (got 2.5)",
            ),
            (
                "agents:\n  web: {directory: /w, timeout: soon}\n",
                "agents.web.timeout: must be a non-negative integer (got 'soon')",
            ),
            (
                "agents:\n  web: {directory: /w, timeout: true}\n",
                "agents.web.timeout: must be a non-negative integer (got true)",
            ),
            (
                "settings:\n  max_concurrency: 0\n",
                "settings.max_concurrency: must be an integer >= 1 (got 0)",
            ),
            (
                "settings:\n  max_concurrency: -1\n",
                "settings.max_concurrency: must be an integer >= 1 (got -1)",
            ),
            (
                "settings:\n  max_dispatch_depth: 0\n",
                "settings.max_dispatch_depth: must be an integer >= 1 (got 0)",
            ),
            (
                "settings:\n  max_dispatch_depth: 5000000000\n",
                "settings.max_dispatch_depth: must be an integer <= 4294967295 (got 5000000000)",
            ),
            (
                "settings:\n  default_timeout: 0\n",
                "settings.default_timeout: must be an integer >= 1 (got 0)",
            ),
            (
                "settings:\n  cache: {ttl: -1}\n",
                "settings.cache.ttl: must be a non-negative integer (got -1)",
            ),
            (
                "settings:\n  cache: {max_size: 0}\n",
                "settings.cache.max_size: must be an integer >= 1 (got 0)",
            ),
            (
                "settings:\n  cache: {enabled: maybe}\n",
                "settings.cache.enabled: must be true or false (got 'maybe')",
            ),
            (
                "settings:\n  cache: [1]\n",
                "settings.cache: must be a mapping (got a list)",
            ),
            (
                "settings:\n  job_retention_days: -1\n",
                "settings.job_retention_days: must be a non-negative number (got -1)",
            ),
            (
                "settings:\n  job_retention_days: .inf\n",
                "settings.job_retention_days: must be a non-negative number (got .inf)",
            ),
            (
                "settings:\n  default_max_budget_usd: .nan\n",
                "settings.default_max_budget_usd: must be a non-negative number (got .nan)",
            ),
            (
                "settings:\n  default_allowed_tools: Read\n",
                "settings.default_allowed_tools: must be a list of strings (got 'Read')",
            ),
            (
                "settings: [1, 2]\n",
                "settings: must be a mapping (got a list)",
            ),
            (
                "agents:\n  web: {directory: /w, max_budget_usd: -0.5}\n",
                "agents.web.max_budget_usd: must be a non-negative number (got -0.5)",
            ),
            (
                "agents:\n  web: {directory: /w, max_budget_usd: 'lots'}\n",
                "agents.web.max_budget_usd: must be a non-negative number (got 'lots')",
            ),
            (
                "agents:\n  web: {directory: /w, allowed_tools: 5}\n",
                "agents.web.allowed_tools: must be a list of strings (got 5)",
            ),
            (
                "agents:\n  web: {directory: /w, allowed_tools: [Read, 5]}\n",
                "agents.web.allowed_tools[1]: must be a string (got 5)",
            ),
            (
                "agents:\n  web: {directory: /w, capabilities: {a: 1}}\n",
                "agents.web.capabilities: must be a list of strings (got a mapping)",
            ),
            (
                "agents:\n  web: {directory: /w, model: 4}\n",
                "agents.web.model: must be a string (got 4); quote it",
            ),
            (
                "agents:\n  web: {description: x}\n",
                "agents.web.directory: required",
            ),
            (
                "agents:\n  web: {directory: null}\n",
                "agents.web.directory: required",
            ),
            (
                "agents:\n  web: {directory: ''}\n",
                "agents.web.directory: must not be empty",
            ),
            (
                "agents:\n  web: {directory: [a]}\n",
                "agents.web.directory: must be a path string (got a list)",
            ),
            (
                "agents:\n  web:\n",
                "agents.web: must be a mapping of agent settings with at least a directory (got null)",
            ),
            (
                "agents: [web]\n",
                "agents: must be a mapping of agent name to settings (got a list)",
            ),
            (
                "agents: web\n",
                "agents: must be a mapping of agent name to settings (got 'web')",
            ),
            (
                "agents:\n  123: {directory: /w}\n",
                "agents: agent names must be strings (got 123); quote the name",
            ),
            (
                "- a\n- b\n",
                "the file must be a mapping with 'agents' and 'settings' (got a list)",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse_err(text), *want, "for {text:?}");
        }
    }

    #[test]
    fn bad_agent_names_in_the_file_are_rejected() {
        assert_eq!(
            parse_err("agents:\n  'bad name!': {directory: /w}\n"),
            "agents.'bad name!': invalid agent name (use only letters, digits, hyphens, and underscores; it must start with a letter or digit)"
        );
        let err = parse_err("agents:\n  \"web\\n\": {directory: /w}\n");
        assert!(
            err.starts_with("agents.'web\\n': invalid agent name"),
            "{err}"
        );
        let err = parse_err("agents:\n  _web: {directory: /w}\n");
        assert!(
            err.starts_with("agents.'_web': invalid agent name"),
            "{err}"
        );
    }
}
