//! The `agents.yaml` model: parsing with precise, field-naming errors, the typed view the
//! tools work with, and edits that keep whatever else the file holds.
//!
//! Everything here is pure: the driver reads the file's bytes and passes them in, together
//! with the home and working directories used to expand `~` and relative paths; writing the
//! result of [`ConfigDoc::to_yaml`] back is again the driver's job.

use std::path::{Component, Path, PathBuf};

use serde_yaml::{Mapping, Value};

/// An agent's timeout when none is configured (and what `add` stores for `timeout=0`).
pub const DEFAULT_TIMEOUT: u64 = 300;

/// `init`'s default file, exactly as the Python `agent-dispatch` writes it.
pub const DEFAULT_CONFIG_YAML: &str = "\
agents: {}
settings:
  default_timeout: 300
  default_allowed_tools: []
  default_disallowed_tools: []
  max_dispatch_depth: 3
  max_concurrency: 5
  cache:
    enabled: true
    ttl: 300
    max_size: 1000
";

/// Permission modes `claude` accepts (2.1.330's choices) plus `default`, sorted.
const KNOWN_PERMISSION_MODES: &[&str] = &[
    "acceptEdits",
    "auto",
    "bypassPermissions",
    "default",
    "dontAsk",
    "manual",
    "plan",
];

/// The agent keys this model knows, in the order they are written.
const AGENT_KEYS: &[&str] = &[
    "directory",
    "description",
    "timeout",
    "max_budget_usd",
    "model",
    "permission_mode",
    "allowed_tools",
    "disallowed_tools",
    "instructions",
    "capabilities",
    "risky_capabilities",
];

/// One configured agent.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfig {
    /// The project directory the agent runs in (absolute, lexically normalised).
    pub directory: PathBuf,
    /// What the agent is for; shown to callers.
    pub description: String,
    /// Seconds per dispatch; 0 = use `settings.default_timeout`.
    pub timeout: u64,
    /// Spend cap passed to `claude --max-budget-usd`.
    pub max_budget_usd: Option<f64>,
    /// `--model` for the child.
    pub model: Option<String>,
    /// `--permission-mode` for the child; `None` falls back to the settings default.
    pub permission_mode: Option<String>,
    /// Tri-state: `None` inherits `settings.default_allowed_tools`, `Some([])` means none.
    pub allowed_tools: Option<Vec<String>>,
    /// Tri-state like `allowed_tools`.
    pub disallowed_tools: Option<Vec<String>>,
    /// Standing instructions appended to the dispatch protocol (stripped; "" = none).
    pub instructions: String,
    /// Free-form descriptive tags.
    pub capabilities: Vec<String>,
    /// Free-form descriptive tags for risky abilities.
    pub risky_capabilities: Vec<String>,
}

impl AgentConfig {
    /// An agent in `directory` with every other field at its default.
    pub fn new(directory: PathBuf) -> Self {
        AgentConfig {
            directory,
            description: String::new(),
            timeout: DEFAULT_TIMEOUT,
            max_budget_usd: None,
            model: None,
            permission_mode: None,
            allowed_tools: None,
            disallowed_tools: None,
            instructions: String::new(),
            capabilities: Vec::new(),
            risky_capabilities: Vec::new(),
        }
    }
}

/// `settings.cache`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// Whether dispatch results are cached.
    pub enabled: bool,
    /// Seconds an entry lives; 0 = entries expire at once.
    pub ttl: u64,
    /// Entries kept (FIFO eviction); at least 1.
    pub max_size: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            enabled: true,
            ttl: 300,
            max_size: 1000,
        }
    }
}

/// `settings`.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Timeout for agents with `timeout: 0`; at least 1.
    pub default_timeout: u64,
    /// Budget for agents without their own.
    pub default_max_budget_usd: Option<f64>,
    /// Permission mode for agents without their own.
    pub default_permission_mode: Option<String>,
    /// Tools for agents whose `allowed_tools` is null.
    pub default_allowed_tools: Vec<String>,
    /// Tools for agents whose `disallowed_tools` is null.
    pub default_disallowed_tools: Vec<String>,
    /// Dispatch depth at which a nested dispatch is refused; at least 1.
    pub max_dispatch_depth: u32,
    /// Children running at once; at least 1.
    pub max_concurrency: u32,
    /// The result cache.
    pub cache: CacheSettings,
    /// When > 0, terminal jobs older than this many days are purged at start.
    pub job_retention_days: f64,
    /// Whether dispatches carry the dispatch-protocol system prompt.
    pub dispatch_protocol: bool,
    /// Whether `serve` runs as a proxy to the shared daemon (ours, not Python's).
    pub daemon: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            default_timeout: 300,
            default_max_budget_usd: None,
            default_permission_mode: None,
            default_allowed_tools: Vec::new(),
            default_disallowed_tools: Vec::new(),
            max_dispatch_depth: 3,
            max_concurrency: 5,
            cache: CacheSettings::default(),
            job_retention_days: 0.0,
            dispatch_protocol: false,
            daemon: false,
        }
    }
}

/// The typed view of `agents.yaml`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    /// Agents in file order.
    pub agents: Vec<(String, AgentConfig)>,
    /// Global settings.
    pub settings: Settings,
}

impl Config {
    /// The agent called `name`.
    pub fn agent(&self, name: &str) -> Option<&AgentConfig> {
        self.agents.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }

    /// Agent names in file order.
    pub fn names(&self) -> Vec<&str> {
        self.agents.iter().map(|(n, _)| n.as_str()).collect()
    }
}

/// A loaded config: the typed view plus the raw YAML tree, so edits keep keys we don't know
/// (groups, future settings) instead of dropping them.
///
/// Change agents only through the methods, which keep both views in step; `to_yaml`
/// writes the raw tree.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigDoc {
    raw: Mapping,
    /// The typed view.
    pub config: Config,
}

impl Default for ConfigDoc {
    /// What a missing or empty file loads as: defaults, saved as `init`'s file.
    fn default() -> Self {
        ConfigDoc {
            raw: serde_yaml::from_str(DEFAULT_CONFIG_YAML).unwrap_or_default(),
            config: Config::default(),
        }
    }
}

impl ConfigDoc {
    /// Parses the config file's bytes. `None` (the file is missing), an empty file or a YAML
    /// `null` give the defaults. `home` and `cwd` expand `~` and relative `directory` values.
    ///
    /// Errors name the offending field as a dotted path (`agents.web.timeout: ...`).
    pub fn parse(bytes: Option<&[u8]>, home: &Path, cwd: &Path) -> Result<ConfigDoc, String> {
        let Some(bytes) = bytes else {
            return Ok(ConfigDoc::default());
        };
        let text = std::str::from_utf8(bytes).map_err(|e| {
            format!(
                "not valid UTF-8 (re-save it as UTF-8): invalid byte at offset {}",
                e.valid_up_to()
            )
        })?;
        let value: Value =
            serde_yaml::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
        let raw = match untag(&value) {
            Value::Null => return Ok(ConfigDoc::default()),
            Value::Mapping(m) => m.clone(),
            other => {
                return Err(format!(
                    "the file must be a mapping with 'agents' and 'settings' (got {})",
                    show(other)
                ))
            }
        };
        let agents = match raw.get("agents").map(untag) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Mapping(m)) => parse_agents(m, home, cwd)?,
            Some(other) => {
                return Err(format!(
                    "agents: must be a mapping of agent name to settings (got {})",
                    show(other)
                ))
            }
        };
        let settings = match raw.get("settings").map(untag) {
            None | Some(Value::Null) => Settings::default(),
            Some(Value::Mapping(m)) => parse_settings(m)?,
            Some(other) => {
                return Err(format!("settings: must be a mapping (got {})", show(other)))
            }
        };
        Ok(ConfigDoc {
            raw,
            config: Config { agents, settings },
        })
    }

    /// The raw YAML tree (every key, known or not).
    pub fn raw(&self) -> &Mapping {
        &self.raw
    }

    /// The file's new text: block-style YAML, unknown keys kept.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(&self.raw).expect("a YAML value tree always serialises")
    }

    /// Adds `agent` at the end, or replaces the agent of that name in place (keeping any
    /// keys of its mapping this model does not know).
    pub fn insert_agent(&mut self, name: &str, agent: &AgentConfig) {
        match self.config.agents.iter_mut().find(|(n, _)| n == name) {
            Some((_, slot)) => *slot = agent.clone(),
            None => self.config.agents.push((name.to_owned(), agent.clone())),
        }
        self.write_raw_agent(name, agent);
    }

    /// Removes the agent; false when there is none of that name.
    pub fn remove_agent(&mut self, name: &str) -> bool {
        let Some(index) = self.config.agents.iter().position(|(n, _)| n == name) else {
            return false;
        };
        self.config.agents.remove(index);
        self.raw_agents_mut().shift_remove(name);
        true
    }

    /// Applies `update` to the agent and returns the names of the fields it set or
    /// cleared, in field order. An empty update changes nothing.
    pub fn update_agent(
        &mut self,
        name: &str,
        update: &AgentUpdate,
    ) -> Result<Vec<&'static str>, String> {
        let Some((_, agent)) = self.config.agents.iter_mut().find(|(n, _)| n == name) else {
            return Err(format!(
                "Agent '{name}' not found. Available: {}",
                names_or_none(&self.config.names())
            ));
        };
        let fields = update.apply(agent);
        if !fields.is_empty() {
            let agent = agent.clone();
            self.write_raw_agent(name, &agent);
        }
        Ok(fields)
    }

    /// Rebuilds the agent's raw mapping from `agent`, keeping its unknown keys.
    fn write_raw_agent(&mut self, name: &str, agent: &AgentConfig) {
        let agents = self.raw_agents_mut();
        let key = Value::from(name);
        let old = match agents.get(&key).map(untag) {
            Some(Value::Mapping(m)) => Some(m.clone()),
            _ => None,
        };
        agents.insert(key, Value::Mapping(agent_mapping(agent, old.as_ref())));
    }

    /// The raw `agents` mapping, created (first in the file) when missing or null.
    fn raw_agents_mut(&mut self) -> &mut Mapping {
        if !self.raw.contains_key("agents") {
            let mut raw = Mapping::with_capacity(self.raw.len() + 1);
            raw.insert(Value::from("agents"), Value::Mapping(Mapping::new()));
            raw.extend(std::mem::take(&mut self.raw));
            self.raw = raw;
        }
        let slot = self.raw.entry(Value::from("agents")).or_insert(Value::Null);
        if let Value::Tagged(tagged) = slot {
            let inner = std::mem::replace(&mut tagged.value, Value::Null);
            *slot = inner;
        }
        if !slot.is_mapping() {
            *slot = Value::Mapping(Mapping::new());
        }
        match slot {
            Value::Mapping(m) => m,
            _ => unreachable!("the slot was just made a mapping"),
        }
    }
}

/// The YAML mapping for one agent: known keys in model order (optionals only when set),
/// then the unknown keys `old` had, in their order.
fn agent_mapping(agent: &AgentConfig, old: Option<&Mapping>) -> Mapping {
    fn list(items: &[String]) -> Value {
        Value::Sequence(items.iter().map(|s| Value::from(s.as_str())).collect())
    }
    let mut m = Mapping::new();
    let mut put = |key: &str, value: Value| {
        m.insert(Value::from(key), value);
    };
    put(
        "directory",
        Value::from(agent.directory.to_string_lossy().into_owned()),
    );
    put("description", Value::from(agent.description.as_str()));
    put("timeout", Value::from(agent.timeout));
    if let Some(budget) = agent.max_budget_usd {
        put("max_budget_usd", Value::from(budget));
    }
    if let Some(model) = agent.model.as_deref().filter(|s| !s.is_empty()) {
        put("model", Value::from(model));
    }
    if let Some(mode) = agent.permission_mode.as_deref().filter(|s| !s.is_empty()) {
        put("permission_mode", Value::from(mode));
    }
    if let Some(tools) = &agent.allowed_tools {
        put("allowed_tools", list(tools));
    }
    if let Some(tools) = &agent.disallowed_tools {
        put("disallowed_tools", list(tools));
    }
    if !agent.instructions.is_empty() {
        put("instructions", Value::from(agent.instructions.as_str()));
    }
    if !agent.capabilities.is_empty() {
        put("capabilities", list(&agent.capabilities));
    }
    if !agent.risky_capabilities.is_empty() {
        put("risky_capabilities", list(&agent.risky_capabilities));
    }
    if let Some(old) = old {
        for (key, value) in old {
            let known = key.as_str().is_some_and(|k| AGENT_KEYS.contains(&k));
            if !known {
                m.insert(key.clone(), value.clone());
            }
        }
    }
    m
}

fn names_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "(none)".to_owned()
    } else {
        names.join(", ")
    }
}

// ---------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------

fn parse_agents(
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

fn parse_settings(map: &Mapping) -> Result<Settings, String> {
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
    Ok(Settings {
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

fn untag(mut v: &Value) -> &Value {
    while let Value::Tagged(t) = v {
        v = &t.value;
    }
    v
}

/// A value as shown in messages.
fn show(v: &Value) -> String {
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

// ---------------------------------------------------------------------------------------
// Small shared helpers
// ---------------------------------------------------------------------------------------

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

fn is_none_word(s: &str) -> bool {
    s.trim().eq_ignore_ascii_case("none")
}

/// Refuses values that `claude` would read as a flag.
fn check_not_flag(label: &str, value: &str) -> Result<(), String> {
    if value.starts_with('-') {
        Err(format!(
            "{label} {} starts with '-' and would be interpreted as a command-line flag by the claude CLI.",
            py_repr(value)
        ))
    } else {
        Ok(())
    }
}

fn checked_tools(label: &str, tools: Vec<String>) -> Result<Vec<String>, String> {
    for tool in &tools {
        check_not_flag(label, tool)?;
    }
    Ok(tools)
}

fn timeout_error(timeout: i64) -> String {
    format!(
        "timeout must be a positive number of seconds (got {timeout}); pass 0 to keep the agent's current value."
    )
}

// ---------------------------------------------------------------------------------------
// Edits
// ---------------------------------------------------------------------------------------

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
    use super::*;

    fn home() -> PathBuf {
        PathBuf::from("/home/u")
    }

    fn cwd() -> PathBuf {
        PathBuf::from("/work/here")
    }

    fn parse(text: &str) -> Result<ConfigDoc, String> {
        ConfigDoc::parse(Some(text.as_bytes()), &home(), &cwd())
    }

    fn parse_ok(text: &str) -> ConfigDoc {
        parse(text).unwrap_or_else(|e| panic!("parse failed: {e}\n---\n{text}"))
    }

    fn parse_err(text: &str) -> String {
        match parse(text) {
            Ok(doc) => panic!("expected an error, got {:?}", doc.config),
            Err(e) => e,
        }
    }

    fn agent(dir: &str) -> AgentConfig {
        AgentConfig::new(PathBuf::from(dir))
    }

    // --- defaults -------------------------------------------------------------------

    #[test]
    fn missing_empty_and_null_files_give_defaults() {
        for doc in [
            ConfigDoc::parse(None, &home(), &cwd()),
            parse(""),
            parse("null\n"),
            parse("~"),
            parse("# only a comment\n"),
        ] {
            let doc = doc.expect("defaults");
            assert_eq!(doc.config, Config::default());
            assert_eq!(doc.to_yaml(), DEFAULT_CONFIG_YAML);
        }
    }

    #[test]
    fn default_config_yaml_parses_to_defaults_and_round_trips() {
        let doc = parse_ok(DEFAULT_CONFIG_YAML);
        assert_eq!(doc.config, Config::default());
        assert_eq!(doc.to_yaml(), DEFAULT_CONFIG_YAML);
        let s = Settings::default();
        assert_eq!(s.default_timeout, 300);
        assert_eq!(s.max_dispatch_depth, 3);
        assert_eq!(s.max_concurrency, 5);
        assert_eq!(
            s.cache,
            CacheSettings {
                enabled: true,
                ttl: 300,
                max_size: 1000
            }
        );
        assert_eq!(s.job_retention_days, 0.0);
        assert!(!s.dispatch_protocol && !s.daemon);
    }

    // --- parsing --------------------------------------------------------------------

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
            }
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

    #[test]
    fn invalid_utf8_and_yaml() {
        let err = ConfigDoc::parse(Some(b"agents: {}\n# caf\xe9\n"), &home(), &cwd())
            .expect_err("not UTF-8");
        assert_eq!(
            err,
            "not valid UTF-8 (re-save it as UTF-8): invalid byte at offset 16"
        );
        let err = parse_err("agents:\n  web: {directory: /w\n");
        assert!(err.starts_with("not valid YAML: "), "{err}");
        assert!(err.contains("line"), "{err}");
        let err = parse_err("agents: {}\nagents: {}\n");
        assert!(err.starts_with("not valid YAML: "), "{err}");
    }

    // --- writing --------------------------------------------------------------------

    #[test]
    fn round_trip_keeps_everything() {
        let text = "agents:
  web:
    directory: /srv/web
    description: 'Web: the app'
    timeout: 600
    max_budget_usd: 0.1
    model: sonnet
    permission_mode: plan
    allowed_tools:
    - Read
    - Bash(git diff)
    disallowed_tools: []
    instructions: |-
      Line one.
      Line two.
    capabilities:
    - deploy
    risky_capabilities:
    - prod-db
  api:
    directory: /srv/api
    description: ''
    timeout: 300
groups:
  core:
    members:
    - agent: web
settings:
  default_timeout: 300
  max_concurrency: 5
";
        let doc = parse_ok(text);
        let yaml = doc.to_yaml();
        assert_eq!(yaml, text);
        let again = parse_ok(&yaml);
        assert_eq!(again.config, doc.config);
        assert_eq!(
            again.config.agent("web").expect("web").instructions,
            "Line one.\nLine two."
        );
    }

    #[test]
    fn rebuilt_agents_serialise_in_model_order() {
        let mut doc = ConfigDoc::default();
        let mut a = agent("/srv/web");
        a.max_budget_usd = Some(0.1 + 0.2);
        a.model = Some("sonnet".into());
        a.permission_mode = Some("plan".into());
        a.allowed_tools = Some(vec!["Read".into()]);
        a.disallowed_tools = Some(vec![]);
        a.instructions = "Be brief.".into();
        a.capabilities = vec!["deploy".into()];
        a.risky_capabilities = vec!["rm".into()];
        doc.insert_agent("web", &a);
        doc.insert_agent("api", &agent("/srv/api"));
        let yaml = doc.to_yaml();
        assert_eq!(
            yaml,
            "agents:
  web:
    directory: /srv/web
    description: ''
    timeout: 300
    max_budget_usd: 0.30000000000000004
    model: sonnet
    permission_mode: plan
    allowed_tools:
    - Read
    disallowed_tools: []
    instructions: Be brief.
    capabilities:
    - deploy
    risky_capabilities:
    - rm
  api:
    directory: /srv/api
    description: ''
    timeout: 300
settings:
  default_timeout: 300
  default_allowed_tools: []
  default_disallowed_tools: []
  max_dispatch_depth: 3
  max_concurrency: 5
  cache:
    enabled: true
    ttl: 300
    max_size: 1000
"
        );
        let back = parse_ok(&yaml);
        assert_eq!(back.config, doc.config);
        assert_eq!(
            back.config.agent("web").expect("web").max_budget_usd,
            Some(0.1 + 0.2)
        );
    }

    #[test]
    fn tri_state_tool_lists_survive_a_round_trip() {
        let mut doc = ConfigDoc::default();
        let mut none = agent("/a");
        none.allowed_tools = Some(vec![]);
        let inherit = agent("/b");
        let mut some = agent("/c");
        some.allowed_tools = Some(vec!["Read".into(), "Bash(git log:*)".into()]);
        some.disallowed_tools = Some(vec![]);
        doc.insert_agent("none", &none);
        doc.insert_agent("inherit", &inherit);
        doc.insert_agent("some", &some);
        let back = parse_ok(&doc.to_yaml());
        let get = |n: &str| back.config.agent(n).cloned().expect("agent");
        assert_eq!(get("none").allowed_tools, Some(vec![]));
        assert_eq!(get("none").disallowed_tools, None);
        assert_eq!(get("inherit").allowed_tools, None);
        assert_eq!(
            get("some").allowed_tools,
            Some(vec!["Read".to_owned(), "Bash(git log:*)".to_owned()])
        );
        assert_eq!(get("some").disallowed_tools, Some(vec![]));
    }

    #[test]
    fn unknown_keys_survive_edits() {
        let text = "version: 2
agents:
  web:
    color: blue
    directory: ~/web
    timeout: 60
    extra: {a: 1}
  api:
    directory: ./api
    note: untouched
groups:
  core:
    description: Core team
settings:
  max_concurrency: 2
  usage_log: false
";
        let mut doc = parse_ok(text);
        let (update, warnings) = AgentUpdate::from_args(&UpdateArgs {
            model: "opus",
            ..UpdateArgs::default()
        })
        .expect("update");
        assert!(warnings.is_empty());
        assert_eq!(doc.update_agent("web", &update), Ok(vec!["model"]));
        doc.insert_agent("new", &agent("/srv/new"));
        let yaml = doc.to_yaml();
        assert_eq!(
            yaml,
            "version: 2
agents:
  web:
    directory: /home/u/web
    description: ''
    timeout: 60
    model: opus
    color: blue
    extra:
      a: 1
  api:
    directory: ./api
    note: untouched
  new:
    directory: /srv/new
    description: ''
    timeout: 300
groups:
  core:
    description: Core team
settings:
  max_concurrency: 2
  usage_log: false
"
        );
        let back = parse_ok(&yaml);
        assert_eq!(back.config, doc.config);
        assert_eq!(back.config.settings.max_concurrency, 2);
    }

    #[test]
    fn insert_creates_a_missing_agents_section_first() {
        let mut doc = parse_ok("settings:\n  max_concurrency: 2\n");
        doc.insert_agent("web", &agent("/w"));
        assert_eq!(
            doc.to_yaml(),
            "agents:\n  web:\n    directory: /w\n    description: ''\n    timeout: 300\nsettings:\n  max_concurrency: 2\n"
        );
        let mut doc = parse_ok("agents:\nsettings: {}\n");
        doc.insert_agent("web", &agent("/w"));
        assert!(
            doc.to_yaml().starts_with("agents:\n  web:\n"),
            "{}",
            doc.to_yaml()
        );
    }

    #[test]
    fn insert_replaces_in_place() {
        let mut doc = parse_ok("agents:\n  a: {directory: /a, keep: 1}\n  b: {directory: /b}\n");
        let mut a = agent("/a2");
        a.description = "second".into();
        doc.insert_agent("a", &a);
        assert_eq!(doc.config.names(), ["a", "b"]);
        assert_eq!(doc.config.agent("a"), Some(&a));
        assert_eq!(
            doc.to_yaml(),
            "agents:\n  a:\n    directory: /a2\n    description: second\n    timeout: 300\n    keep: 1\n  b:\n    directory: /b\n"
        );
    }

    #[test]
    fn remove_agent_keeps_order_and_reports_absence() {
        let mut doc = parse_ok(
            "agents:\n  a: {directory: /a}\n  b: {directory: /b}\n  c: {directory: /c}\nsettings: {}\n",
        );
        assert!(doc.remove_agent("a"));
        assert!(!doc.remove_agent("a"));
        assert_eq!(doc.config.names(), ["b", "c"]);
        assert_eq!(
            doc.to_yaml(),
            "agents:\n  b:\n    directory: /b\n  c:\n    directory: /c\nsettings: {}\n"
        );
        assert!(doc.remove_agent("b"));
        assert!(doc.remove_agent("c"));
        assert_eq!(doc.to_yaml(), "agents: {}\nsettings: {}\n");
        assert!(!ConfigDoc::default().remove_agent("x"));
    }

    #[test]
    fn update_unknown_agent_is_an_error() {
        let mut doc = parse_ok("agents:\n  a: {directory: /a}\n  b: {directory: /b}\n");
        let update = AgentUpdate {
            timeout: Edit::Set(5),
            ..AgentUpdate::default()
        };
        assert_eq!(
            doc.update_agent("zz", &update),
            Err("Agent 'zz' not found. Available: a, b".to_owned())
        );
        assert_eq!(
            ConfigDoc::default().update_agent("zz", &update),
            Err("Agent 'zz' not found. Available: (none)".to_owned())
        );
    }

    #[test]
    fn empty_update_changes_nothing() {
        let text = "agents:\n  web: {directory: ~/w}\n";
        let mut doc = parse_ok(text);
        let before = doc.clone();
        assert_eq!(doc.update_agent("web", &AgentUpdate::default()), Ok(vec![]));
        assert_eq!(doc, before);
    }

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
        let back = parse_ok(&doc.to_yaml());
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

    // --- helpers --------------------------------------------------------------------

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
