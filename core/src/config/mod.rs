//! The `agents.yaml` model: parsing with precise, field-naming errors, the typed view the
//! tools work with, and edits that keep whatever else the file holds.
//!
//! Everything here is pure: the driver reads the file's bytes and passes them in, together
//! with the home and working directories used to expand `~` and relative paths; writing the
//! result of [`ConfigDoc::to_yaml`] back is again the driver's job.

mod edit;
mod guard;
mod parse;
mod values;

pub use edit::{build_agent, AddArgs, AgentUpdate, Edit, UpdateArgs};
pub use guard::{MAX_ALIASES, MAX_CONFIG_BYTES, MAX_FLOW_DEPTH, MAX_NODES};
pub use values::{
    expand_path, parse_tool_list, permission_mode_warning, py_float, py_repr, validate_agent_name,
};

use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use parse::{parse_agents, parse_settings, show, untag};

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
    /// Whether dispatches carry the dispatch-protocol system prompt (default true, as in
    /// 0.14) and read the agent's final `STATUS:` line into `outcome`.
    pub dispatch_protocol: bool,
    /// Whether `serve` runs as a proxy to the shared daemon (ours, not Python's).
    pub daemon: bool,
    /// Bounds on what one client or child may make us hold (ours, not Python's).
    pub limits: Limits,
}

/// `settings.limits`: how much of anything one client or child can make the server hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// The longest line accepted from a client or a child's stdout, in bytes (default
    /// 64 MiB, at least 1 KiB). A longer client line is answered as a parse error; a longer
    /// child line is cut there. Client lines use the value read when the server starts.
    pub max_line_bytes: u64,
    /// How much of a child's stderr is kept for error messages, in bytes (default 64 KiB,
    /// at least 1 KiB); the rest is read and dropped, so a chatty child never blocks.
    pub stderr_tail_bytes: u64,
    /// How many progress messages a background job's record keeps (default 20, 1–1000).
    pub progress_tail: u64,
    /// The most items one `dispatch_parallel` call may have (default 0: the larger of 100
    /// and 20 × `max_concurrency`).
    pub max_parallel_items: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line_bytes: 64 << 20,
            stderr_tail_bytes: 64 << 10,
            progress_tail: 20,
            max_parallel_items: 0,
        }
    }
}

impl Limits {
    /// The `dispatch_parallel` cap in force.
    pub fn parallel_cap(&self, max_concurrency: u32) -> usize {
        match self.max_parallel_items {
            0 => (max_concurrency as usize).saturating_mul(20).max(100),
            n => usize::try_from(n).unwrap_or(usize::MAX),
        }
    }
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
            dispatch_protocol: true,
            daemon: false,
            limits: Limits::default(),
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

/// The last config file parsed, kept so that a call reading an unchanged file (the usual
/// case: every tool call reads it) skips the YAML parse, which is most of a `list_agents`.
#[derive(Debug, Default)]
pub(crate) struct ParseCache {
    last: Option<(Vec<u8>, ConfigDoc)>,
}

impl ParseCache {
    /// [`ConfigDoc::parse`], answered from the cache when `bytes` are the last ones parsed.
    /// `home` and `cwd` are fixed for a core's life, so the bytes alone are the key.
    pub(crate) fn parse(
        &mut self,
        bytes: Option<&[u8]>,
        home: &Path,
        cwd: &Path,
    ) -> Result<ConfigDoc, String> {
        let Some(bytes) = bytes else {
            return ConfigDoc::parse(None, home, cwd);
        };
        if let Some((cached, doc)) = &self.last {
            if cached.as_slice() == bytes {
                return Ok(doc.clone());
            }
        }
        let doc = ConfigDoc::parse(Some(bytes), home, cwd)?;
        self.last = Some((bytes.to_vec(), doc.clone()));
        Ok(doc)
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
        // Before serde_yaml: deep flow nesting and alias amplification cost it minutes or
        // gigabytes.
        guard::check(text)?;
        guard::check_nodes(text)?;
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
    ///
    /// `Err` when the tree cannot be written, or when what would be written does not load
    /// back to the same config (serde_yaml cannot write every tree it reads: tagged or
    /// mapping keys, escaped tags). Saving such a text would break the file for every tool,
    /// so the caller reports the error and leaves the file as it is.
    pub fn to_yaml(&self) -> Result<String, String> {
        let text = serde_yaml::to_string(&self.raw)
            .map_err(|e| format!("cannot write this config as YAML: {e}"))?;
        let back = serde_yaml::from_str::<serde_yaml::Value>(&text)
            .map_err(|e| format!("the written config would not load ({e}); nothing was changed"))?;
        if back != serde_yaml::Value::Mapping(self.raw.clone()) {
            return Err(
                "the written config would not load back the same; nothing was changed".into(),
            );
        }
        Ok(text)
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

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn home() -> PathBuf {
        PathBuf::from("/home/u")
    }

    pub(super) fn cwd() -> PathBuf {
        PathBuf::from("/work/here")
    }

    pub(super) fn parse(text: &str) -> Result<ConfigDoc, String> {
        ConfigDoc::parse(Some(text.as_bytes()), &home(), &cwd())
    }

    pub(super) fn parse_ok(text: &str) -> ConfigDoc {
        parse(text).unwrap_or_else(|e| panic!("parse failed: {e}\n---\n{text}"))
    }

    pub(super) fn parse_err(text: &str) -> String {
        match parse(text) {
            Ok(doc) => panic!("expected an error, got {:?}", doc.config),
            Err(e) => e,
        }
    }

    pub(super) fn agent(dir: &str) -> AgentConfig {
        AgentConfig::new(PathBuf::from(dir))
    }

    #[test]
    fn hostile_yaml_is_refused_before_the_parser() {
        let ok = parse_ok(
            "x: &d {timeout: 30}\ny: [*d, *d, '*a [[', \"{*b\"]\nagents:\n  a: {directory: /x, description: 'a [b] *c'}\n",
        );
        assert_eq!(ok.config.agents.len(), 1);
        let deep = format!("agents: {{}}\nx: {}{}\n", "[".repeat(200), "]".repeat(200));
        assert!(parse_err(&deep)
            .starts_with("not valid YAML: recursion limit exceeded: flow nesting deeper than 128"));
        let many = format!("x: &a [1]\ny: [{}]\n", vec!["*a"; 65].join(","));
        assert!(parse_err(&many).contains("too many aliases (65 > 64)"));
    }

    #[test]
    fn the_parse_cache_answers_like_a_fresh_parse() {
        let mut cache = ParseCache::default();
        let a = "agents:\n  a: {directory: /x, description: one}\n";
        let b = "agents:\n  a: {directory: /x, description: two}\n";
        let bad = "agents: [\n";
        let mut parse = |text: Option<&str>| cache.parse(text.map(str::as_bytes), &home(), &cwd());
        for text in [
            Some(a),
            Some(a),
            Some(b),
            Some(bad),
            Some(b),
            None,
            Some(a),
            Some(bad),
        ] {
            let fresh = ConfigDoc::parse(text.map(str::as_bytes), &home(), &cwd());
            assert_eq!(parse(text), fresh, "{text:?}");
        }
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
            assert_eq!(doc.to_yaml().unwrap(), DEFAULT_CONFIG_YAML);
        }
    }

    #[test]
    fn default_config_yaml_parses_to_defaults_and_round_trips() {
        let doc = parse_ok(DEFAULT_CONFIG_YAML);
        assert_eq!(doc.config, Config::default());
        assert_eq!(doc.to_yaml().unwrap(), DEFAULT_CONFIG_YAML);
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
        // 0.14: the dispatch protocol is on unless the file turns it off; `init`'s file
        // does not mention it.
        assert!(s.dispatch_protocol && !s.daemon);
        assert!(!DEFAULT_CONFIG_YAML.contains("dispatch_protocol"));
    }

    // --- reading the file -----------------------------------------------------------

    #[test]
    fn dispatch_protocol_is_on_unless_turned_off() {
        let on = parse_ok("agents: {}\nsettings:\n  max_concurrency: 2\n");
        assert!(on.config.settings.dispatch_protocol);
        for off in ["false", "no", "'off'"] {
            let doc = parse_ok(&format!("settings:\n  dispatch_protocol: {off}\n"));
            assert!(!doc.config.settings.dispatch_protocol, "{off}");
        }
        let doc = parse_ok("settings:\n  dispatch_protocol: null\n");
        assert!(doc.config.settings.dispatch_protocol);
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
        let yaml = doc.to_yaml().unwrap();
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
        let yaml = doc.to_yaml().unwrap();
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
        let back = parse_ok(&doc.to_yaml().unwrap());
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
        let yaml = doc.to_yaml().unwrap();
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
            doc.to_yaml().unwrap(),
            "agents:\n  web:\n    directory: /w\n    description: ''\n    timeout: 300\nsettings:\n  max_concurrency: 2\n"
        );
        let mut doc = parse_ok("agents:\nsettings: {}\n");
        doc.insert_agent("web", &agent("/w"));
        assert!(
            doc.to_yaml().unwrap().starts_with("agents:\n  web:\n"),
            "{}",
            doc.to_yaml().unwrap()
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
            doc.to_yaml().unwrap(),
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
            doc.to_yaml().unwrap(),
            "agents:\n  b:\n    directory: /b\n  c:\n    directory: /c\nsettings: {}\n"
        );
        assert!(doc.remove_agent("b"));
        assert!(doc.remove_agent("c"));
        assert_eq!(doc.to_yaml().unwrap(), "agents: {}\nsettings: {}\n");
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
}
