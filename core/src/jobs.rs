//! The async job record: one JSON file per job, `<jobs dir>/<id>.json`.
//!
//! Pure data: parsing, validation and rendering. The driver reads and writes the files
//! (`IoRequest::{WriteJob, ListJobs, ReadJobs, DeleteJobs}`); it re-validates every id with
//! [`valid_job_id`] before it builds a path.
//!
//! The format is the Python agent-dispatch's (spec §5, 0.6 progress fields, 0.16 checks), so
//! either implementation reads the other's records: pretty JSON (2-space indent), fields in
//! spec order, nulls omitted, times as Unix seconds (floats).

use serde_json::{Map, Number, Value};

use crate::config::py_repr;

mod summary;

pub use summary::JobSummary;

/// Every status a record may have, in lifecycle order.
pub const STATUSES: [&str; 5] = ["pending", "running", "done", "failed", "cancelled"];

/// The lifecycle of a job: pending → running → done | failed | cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JobStatus {
    /// Created, waiting for a concurrency slot.
    Pending,
    /// Its `claude` run has started.
    Running,
    /// Finished with a successful result.
    Done,
    /// Finished with a failed result, or abandoned.
    Failed,
    /// Cancelled before or while running.
    Cancelled,
}

impl JobStatus {
    /// The wire name (`"pending"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// The status with exactly this wire name (lower case, no surrounding space).
    pub fn parse(s: &str) -> Option<JobStatus> {
        match s {
            "pending" => Some(JobStatus::Pending),
            "running" => Some(JobStatus::Running),
            "done" => Some(JobStatus::Done),
            "failed" => Some(JobStatus::Failed),
            "cancelled" => Some(JobStatus::Cancelled),
            _ => None,
        }
    }

    /// Whether the job is finished (done, failed, cancelled): such a record is never
    /// overwritten.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Done | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `id` is a job id: exactly 32 lowercase hex digits (`uuid4().hex`).
///
/// A full match: a trailing newline, upper case, 31 or 33 characters or anything with a
/// path separator is invalid. Checked before any path is built from an id.
pub fn valid_job_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The status a record's text claims, if it names a known one. Deliberately looser than
/// [`JobRecord::parse`]: a driver protects any JSON object whose `status` is terminal from
/// being overwritten, even a record it could not fully parse.
pub fn record_status(text: &str) -> Option<JobStatus> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    JobStatus::parse(value.get("status")?.as_str()?)
}

/// Whether `name` is the temp file of a record write that may be left by a crash:
/// `<id>.tmp` (Python 0.5) or `<id>.<hex>.tmp` (Python 0.11+ and us).
pub fn is_temp_name(name: &str) -> bool {
    let Some(rest) = name.strip_suffix(".tmp") else {
        return false;
    };
    // `get`, not slicing: a name with multi-byte characters must not panic.
    let (Some(id), Some(tag)) = (rest.get(..32), rest.get(32..)) else {
        return false;
    };
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    valid_job_id(id) && (tag.is_empty() || tag.strip_prefix('.').is_some_and(hex))
}

/// The error for a malformed job id or ref (spec §6.3).
pub fn job_id_error(id: &str) -> String {
    format!(
        "Invalid ref/job_id format: {} (expected a 32-char hex id)",
        py_repr(id)
    )
}

/// One job record, as stored in `<id>.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// 32 lowercase hex digits; also the file stem and the `ref` of `return_ref`.
    pub id: String,
    /// The agent dispatched to.
    pub agent: String,
    /// The task text.
    pub task: String,
    /// Extra context given with the task.
    pub context: Option<String>,
    /// Who dispatched (free text).
    pub caller: Option<String>,
    /// The caller's goal (free text).
    pub goal: Option<String>,
    /// Where the job is in its lifecycle.
    pub status: JobStatus,
    /// Creation time, Unix seconds.
    pub created_at: f64,
    /// When the run started, Unix seconds.
    pub started_at: Option<f64>,
    /// When the job reached a terminal status, Unix seconds.
    pub completed_at: Option<f64>,
    /// The `DispatchResult` JSON object, once finished.
    pub result: Option<Value>,
    /// Why the job failed or was cancelled.
    pub error: Option<String>,
    /// The rolling tail of progress messages (0.6).
    pub progress: Option<Vec<String>>,
    /// When `progress` last changed, Unix seconds (0.6).
    pub progress_updated_at: Option<f64>,
    /// Fields this version does not know, kept (in file order) so a record round-trips.
    pub extra: Map<String, Value>,
}

/// The fields [`JobRecord`] models, in spec order (anything else goes to `extra`).
pub const KNOWN_FIELDS: [&str; 14] = [
    "id",
    "agent",
    "task",
    "context",
    "caller",
    "goal",
    "status",
    "created_at",
    "started_at",
    "completed_at",
    "result",
    "error",
    "progress",
    "progress_updated_at",
];

impl JobRecord {
    /// A new `pending` record created at `created_at` (Unix seconds), nothing else set.
    pub fn new(id: String, agent: String, task: String, created_at: f64) -> JobRecord {
        JobRecord {
            id,
            agent,
            task,
            context: None,
            caller: None,
            goal: None,
            status: JobStatus::Pending,
            created_at,
            started_at: None,
            completed_at: None,
            result: None,
            error: None,
            progress: None,
            progress_updated_at: None,
            extra: serde_json::Map::new(),
        }
    }

    /// Parses a record read from `<expected_id>.json`.
    ///
    /// `Err` (with the reason) when the text is not a JSON object; `id` is missing, invalid or
    /// not `expected_id` (0.16: a record must live in its own file); `status` is unknown;
    /// `agent` or `task` is missing or not a string; a time is missing (`created_at`), not a
    /// number or not finite; `result` is present but not an object; or an optional text field
    /// has the wrong type. `null` counts as absent for every optional field.
    pub fn parse(expected_id: &str, text: &str) -> Result<JobRecord, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|err| format!("not valid JSON: {err}"))?;
        let Value::Object(mut map) = value else {
            return Err(format!("not a JSON object but {}", kind(&value)));
        };
        let id = match map.shift_remove("id") {
            None | Some(Value::Null) => return Err("no `id`".into()),
            Some(Value::String(id)) => id,
            Some(other) => return Err(format!("`id` is {}, not a string", kind(&other))),
        };
        if !valid_job_id(&id) {
            return Err(format!("`id` {} is not a 32-char hex id", py_repr(&id)));
        }
        if id != expected_id {
            return Err(format!(
                "`id` {} does not match the file name {}.json",
                py_repr(&id),
                py_repr(expected_id)
            ));
        }
        let agent = required_string(&mut map, "agent")?;
        let task = required_string(&mut map, "task")?;
        let context = optional_string(&mut map, "context")?;
        let caller = optional_string(&mut map, "caller")?;
        let goal = optional_string(&mut map, "goal")?;
        let status = match map.shift_remove("status") {
            Some(Value::String(s)) => JobStatus::parse(&s).ok_or_else(|| {
                format!(
                    "unknown `status` {} (expected one of {})",
                    py_repr(&s),
                    STATUSES.join(", ")
                )
            })?,
            None | Some(Value::Null) => return Err("no `status`".into()),
            Some(other) => return Err(format!("`status` is {}, not a string", kind(&other))),
        };
        let created_at =
            optional_time(&mut map, "created_at")?.ok_or_else(|| "no `created_at`".to_owned())?;
        let started_at = optional_time(&mut map, "started_at")?;
        let completed_at = optional_time(&mut map, "completed_at")?;
        let result = match map.shift_remove("result") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v),
            Some(other) => return Err(format!("`result` is {}, not an object", kind(&other))),
        };
        let error = optional_string(&mut map, "error")?;
        let progress = match map.shift_remove("progress") {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(
                items
                    .into_iter()
                    .map(|item| match item {
                        Value::String(s) => Ok(s),
                        other => Err(format!(
                            "`progress` holds {}, not only strings",
                            kind(&other)
                        )),
                    })
                    .collect::<Result<Vec<String>, String>>()?,
            ),
            Some(other) => return Err(format!("`progress` is {}, not a list", kind(&other))),
        };
        let progress_updated_at = optional_time(&mut map, "progress_updated_at")?;
        Ok(JobRecord {
            id,
            agent,
            task,
            context,
            caller,
            goal,
            status,
            created_at,
            started_at,
            completed_at,
            result,
            error,
            progress,
            progress_updated_at,
            extra: map,
        })
    }

    /// The record file's text: pretty JSON (2-space indent), fields in spec order, nulls
    /// omitted, then the unknown fields kept from parsing. No trailing newline.
    ///
    /// Times must be finite; a non-finite time is written as `null` (and the record then
    /// fails to parse), never as a bare `NaN`.
    pub fn to_json_pretty(&self) -> String {
        // Serializing a `Value` cannot fail (its keys are strings).
        serde_json::to_string_pretty(&self.to_value()).unwrap_or_default()
    }

    /// The record as a JSON object, in the same order as [`JobRecord::to_json_pretty`].
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), Value::from(self.id.as_str()));
        m.insert("agent".into(), Value::from(self.agent.as_str()));
        m.insert("task".into(), Value::from(self.task.as_str()));
        put_str(&mut m, "context", self.context.as_deref());
        put_str(&mut m, "caller", self.caller.as_deref());
        put_str(&mut m, "goal", self.goal.as_deref());
        m.insert("status".into(), Value::from(self.status.as_str()));
        m.insert("created_at".into(), time_value(self.created_at));
        put_time(&mut m, "started_at", self.started_at);
        put_time(&mut m, "completed_at", self.completed_at);
        if let Some(result) = &self.result {
            m.insert("result".into(), result.clone());
        }
        put_str(&mut m, "error", self.error.as_deref());
        if let Some(progress) = &self.progress {
            m.insert(
                "progress".into(),
                Value::Array(progress.iter().map(|p| Value::from(p.as_str())).collect()),
            );
        }
        put_time(&mut m, "progress_updated_at", self.progress_updated_at);
        for (key, value) in &self.extra {
            // `extra` never holds known fields when it comes from `parse`; a hand-built one
            // must not override them either.
            if !KNOWN_FIELDS.contains(&key.as_str()) && !value.is_null() {
                m.insert(key.clone(), value.clone());
            }
        }
        Value::Object(m)
    }

    /// The row `dispatch_jobs` shows for this job: see [`JobSummary::to_value`].
    pub fn summary(&self) -> Value {
        JobSummary::of(self).to_value(&self.id)
    }
}

/// A short name for a JSON value's type, for error messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn required_string(map: &mut Map<String, Value>, key: &str) -> Result<String, String> {
    match map.shift_remove(key) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => Err(format!("no `{key}`")),
        Some(other) => Err(format!("`{key}` is {}, not a string", kind(&other))),
    }
}

fn optional_string(map: &mut Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match map.shift_remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(format!("`{key}` is {}, not a string", kind(&other))),
    }
}

/// A time field: a finite JSON number (integers are accepted and become floats).
fn optional_time(map: &mut Map<String, Value>, key: &str) -> Result<Option<f64>, String> {
    match map.shift_remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(t) if t.is_finite() => Ok(Some(t)),
            _ => Err(format!("`{key}` is not a finite number")),
        },
        Some(other) => Err(format!("`{key}` is {}, not a number", kind(&other))),
    }
}

fn put_str(m: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(v) = value {
        m.insert(key.into(), Value::from(v));
    }
}

fn put_time(m: &mut Map<String, Value>, key: &str, value: Option<f64>) {
    if let Some(t) = value {
        m.insert(key.into(), time_value(t));
    }
}

/// A time as a JSON float (`1700000000.0`, never `1700000000`); `null` if not finite.
fn time_value(t: f64) -> Value {
    Number::from_f64(t).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    fn minimal() -> Value {
        json!({"id": ID, "agent": "a", "task": "t", "status": "pending", "created_at": 1.5})
    }

    fn parse_value(v: &Value) -> Result<JobRecord, String> {
        JobRecord::parse(ID, &v.to_string())
    }

    fn with(key: &str, value: Value) -> Value {
        let mut v = minimal();
        v[key] = value;
        v
    }

    fn without(key: &str) -> Value {
        let mut v = minimal();
        v.as_object_mut().unwrap().remove(key);
        v
    }

    fn full() -> JobRecord {
        JobRecord {
            id: ID.into(),
            agent: "backend".into(),
            task: "Fix the bug — naïve 🦀".into(),
            context: Some("ctx".into()),
            caller: Some("frontend".into()),
            goal: Some("ship".into()),
            status: JobStatus::Failed,
            created_at: 1_700_000_000.0,
            started_at: Some(1_700_000_001.25),
            completed_at: Some(1_700_000_123.456_789),
            result: Some(json!({
                "agent": "backend", "success": false, "result": "", "error": "boom",
                "error_type": "timeout", "cost_usd": 0.0123
            })),
            error: Some("boom".into()),
            progress: Some(vec!["Using tool: Read".into(), "Checking...".into()]),
            progress_updated_at: Some(1_700_000_100.5),
            extra: Map::new(),
        }
    }

    #[test]
    fn job_ids() {
        assert!(valid_job_id(ID));
        assert!(valid_job_id(&"f".repeat(32)));
        for bad in [
            "",
            "../x",
            &"a".repeat(31),
            &"a".repeat(33),
            &ID.to_uppercase(),
            &format!("{ID}\n"),
            &format!("{}/../x", "a".repeat(28)),
            "0123456789abcdef0123456789abcdeg",
            "0123456789abcdef0123456789abcdé",
            "0123456789abcdef-123456789abcdef",
        ] {
            assert!(!valid_job_id(bad), "{bad:?} accepted");
        }
        assert_eq!(
            job_id_error("../secret"),
            "Invalid ref/job_id format: '../secret' (expected a 32-char hex id)"
        );
        assert_eq!(
            job_id_error("it's\n"),
            "Invalid ref/job_id format: \"it's\\n\" (expected a 32-char hex id)"
        );
    }

    #[test]
    fn statuses() {
        for (i, name) in STATUSES.iter().enumerate() {
            let status = JobStatus::parse(name).unwrap();
            assert_eq!(status.as_str(), *name);
            assert_eq!(status.to_string(), *name);
            assert_eq!(status.is_terminal(), i >= 2);
        }
        for bad in ["Done", " done", "done\n", "", "finished", "DONE"] {
            assert_eq!(JobStatus::parse(bad), None, "{bad:?}");
        }
        assert!(JobStatus::Pending < JobStatus::Running);
    }

    #[test]
    fn minimal_record_parses() {
        let r = parse_value(&minimal()).unwrap();
        assert_eq!(r.id, ID);
        assert_eq!(r.status, JobStatus::Pending);
        assert_eq!(r.created_at, 1.5);
        assert_eq!(r.context, None);
        assert!(r.extra.is_empty());
        // Integer times and explicit nulls are fine.
        let r = parse_value(&with("created_at", json!(1_700_000_000_u64))).unwrap();
        assert_eq!(r.created_at, 1.7e9);
        for key in [
            "context",
            "caller",
            "goal",
            "started_at",
            "completed_at",
            "result",
            "error",
            "progress",
            "progress_updated_at",
        ] {
            let r = parse_value(&with(key, Value::Null)).unwrap();
            assert_eq!(r, parse_value(&minimal()).unwrap(), "{key}: null");
        }
    }

    #[test]
    fn malformed_records_are_refused() {
        let other = "fedcba9876543210fedcba9876543210";
        let cases: Vec<(&str, String)> = vec![
            ("not json", "{".into()),
            ("not json", "NaN".into()),
            ("not an object", "[]".into()),
            ("not an object", "\"x\"".into()),
            ("not an object", "null".into()),
            ("no id", without("id").to_string()),
            ("id null", with("id", Value::Null).to_string()),
            ("id number", with("id", json!(5)).to_string()),
            ("id mismatch", with("id", json!(other)).to_string()),
            ("id invalid", with("id", json!(format!("{ID}\n"))).to_string()),
            ("id upper", with("id", json!(ID.to_uppercase())).to_string()),
            ("no agent", without("agent").to_string()),
            ("agent number", with("agent", json!(1)).to_string()),
            ("no task", without("task").to_string()),
            ("task list", with("task", json!(["t"])).to_string()),
            ("no status", without("status").to_string()),
            ("unknown status", with("status", json!("finished")).to_string()),
            ("status case", with("status", json!("Done")).to_string()),
            ("status number", with("status", json!(1)).to_string()),
            ("no created_at", without("created_at").to_string()),
            ("created_at string", with("created_at", json!("1.5")).to_string()),
            ("created_at bool", with("created_at", json!(true)).to_string()),
            ("started_at string", with("started_at", json!("x")).to_string()),
            ("completed_at object", with("completed_at", json!({})).to_string()),
            ("progress_updated_at list", with("progress_updated_at", json!([1])).to_string()),
            ("infinite created_at", r#"{"id": "ID", "agent": "a", "task": "t", "status": "pending", "created_at": Infinity}"#.replace("ID", ID)),
            ("overflowing created_at", r#"{"id": "ID", "agent": "a", "task": "t", "status": "pending", "created_at": 1e999}"#.replace("ID", ID)),
            ("result string", with("result", json!("ok")).to_string()),
            ("result list", with("result", json!([])).to_string()),
            ("error number", with("error", json!(3)).to_string()),
            ("context bool", with("context", json!(false)).to_string()),
            ("progress string", with("progress", json!("x")).to_string()),
            ("progress numbers", with("progress", json!(["a", 1])).to_string()),
        ];
        for (what, text) in cases {
            let err = JobRecord::parse(ID, &text).expect_err(what);
            assert!(!err.is_empty(), "{what}");
        }
        // The expected id must itself be the record's id.
        assert!(JobRecord::parse(other, &minimal().to_string()).is_err());
        assert!(JobRecord::parse("", &minimal().to_string()).is_err());
    }

    #[test]
    fn error_messages_name_the_problem() {
        let err = parse_value(&with("id", json!("fedcba9876543210fedcba9876543210"))).unwrap_err();
        assert!(err.contains("does not match the file name"), "{err}");
        let err = parse_value(&with("status", json!("finished"))).unwrap_err();
        assert!(err.contains("'finished'"), "{err}");
        let err = parse_value(&without("task")).unwrap_err();
        assert_eq!(err, "no `task`");
        let err = parse_value(&with("created_at", json!("1"))).unwrap_err();
        assert_eq!(err, "`created_at` is a string, not a number");
    }

    #[test]
    fn pretty_json_layout() {
        let r = JobRecord {
            status: JobStatus::Pending,
            created_at: 1_700_000_000.0,
            context: None,
            caller: None,
            goal: None,
            started_at: None,
            completed_at: None,
            result: None,
            error: None,
            progress: None,
            progress_updated_at: None,
            ..full()
        };
        assert_eq!(
            r.to_json_pretty(),
            format!(
                "{{\n  \"id\": \"{ID}\",\n  \"agent\": \"backend\",\n  \"task\": \"Fix the bug — naïve 🦀\",\n  \"status\": \"pending\",\n  \"created_at\": 1700000000.0\n}}"
            )
        );
        let keys: Vec<String> = full()
            .to_value()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, KNOWN_FIELDS);
        assert!(full()
            .to_json_pretty()
            .contains("\n  \"progress\": [\n    \"Using tool: Read\",\n"));
    }

    #[test]
    fn round_trip() {
        let r = full();
        let text = r.to_json_pretty();
        let back = JobRecord::parse(ID, &text).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.to_json_pretty(), text);
        // Awkward floats survive exactly.
        let r = JobRecord {
            created_at: 0.1 + 0.2,
            started_at: Some(1e-7),
            completed_at: Some(1.7976931348623157e308),
            ..full()
        };
        assert_eq!(JobRecord::parse(ID, &r.to_json_pretty()).unwrap(), r);
        // Times Python wrote keep their exact digits (needs serde_json's `float_roundtrip`:
        // the default parser can be one ulp off, and 1795500974.2863007 came back as ...301).
        for t in [
            "1795500974.2863007",
            "1795500969.6084313",
            "1700000000.0000002",
        ] {
            let text = format!(
                r#"{{"id": "{ID}", "agent": "a", "task": "t", "status": "pending", "created_at": {t}}}"#
            );
            let r = JobRecord::parse(ID, &text).unwrap();
            assert_eq!(r.to_value()["created_at"].to_string(), t);
        }
    }

    #[test]
    fn unknown_fields_are_kept_in_order() {
        let mut v = minimal();
        v["response_format"] = json!("json");
        v["zeta"] = json!({"nested": [1, 2]});
        v["alpha"] = json!(null);
        let text = serde_json::to_string_pretty(&v).unwrap();
        let r = JobRecord::parse(ID, &text).unwrap();
        assert_eq!(r.extra.len(), 3);
        let keys: Vec<&String> = r.extra.keys().collect();
        assert_eq!(keys, ["response_format", "zeta", "alpha"]);
        let out = r.to_value();
        assert_eq!(out["response_format"], "json");
        assert_eq!(out["zeta"], json!({"nested": [1, 2]}));
        // Nulls are omitted, like every other field.
        assert!(out.get("alpha").is_none());
        let again = JobRecord::parse(ID, &r.to_json_pretty()).unwrap();
        assert_eq!(again.extra["zeta"], json!({"nested": [1, 2]}));
        // A hand-built `extra` cannot override a known field.
        let mut r = parse_value(&minimal()).unwrap();
        r.extra.insert("status".into(), json!("done"));
        assert_eq!(r.to_value()["status"], "pending");
    }

    #[test]
    fn non_finite_times_are_never_written_as_bare_nan() {
        let r = JobRecord {
            created_at: f64::NAN,
            ..full()
        };
        let text = r.to_json_pretty();
        assert!(!text.contains("NaN"));
        assert!(JobRecord::parse(ID, &text).is_err());
    }

    #[test]
    fn summaries() {
        let long: String = "é".repeat(130);
        let r = JobRecord {
            task: long,
            ..full()
        };
        let s = r.summary();
        assert_eq!(
            s,
            json!({
                "id": ID, "agent": "backend", "status": "failed", "task": "é".repeat(120),
                "created_at": 1_700_000_000.0, "started_at": 1_700_000_001.25,
                "completed_at": 1_700_000_123.456_789, "success": false, "cost_usd": 0.0123,
                "error_type": "timeout"
            })
        );
        let keys: Vec<&String> = s.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "id",
                "agent",
                "status",
                "task",
                "created_at",
                "started_at",
                "completed_at",
                "success",
                "cost_usd",
                "error_type"
            ]
        );

        // Pending: no optional fields at all.
        let pending = parse_value(&minimal()).unwrap().summary();
        assert_eq!(
            pending,
            json!({"id": ID, "agent": "a", "status": "pending", "task": "t", "created_at": 1.5})
        );

        // Running with progress: the last entry.
        let running = JobRecord {
            status: JobStatus::Running,
            completed_at: None,
            result: None,
            error: None,
            ..full()
        };
        let s = running.summary();
        assert_eq!(s["last_progress"], "Checking...");
        assert!(s.get("success").is_none() && s.get("error_type").is_none());
        // Progress of a finished job is not shown; nor is an empty tail.
        assert!(full().summary().get("last_progress").is_none());
        let empty = JobRecord {
            progress: Some(vec![]),
            ..running.clone()
        };
        assert!(empty.summary().get("last_progress").is_none());

        // Cancelled: its own error type, not the Python "cli_error".
        let cancelled = JobRecord {
            status: JobStatus::Cancelled,
            result: None,
            error: Some("Cancelled before execution".into()),
            ..full()
        };
        assert_eq!(cancelled.summary()["error_type"], "cancelled");

        // Failed without a result (a crashed worker, an abandoned job): cli_error.
        let crashed = JobRecord {
            result: None,
            error: Some("Worker crashed: kaboom".into()),
            ..full()
        };
        assert_eq!(crashed.summary()["error_type"], "cli_error");
        let blank_type = JobRecord {
            result: Some(json!({"agent": "a", "success": false, "result": "", "error_type": ""})),
            ..full()
        };
        assert_eq!(blank_type.summary()["error_type"], "cli_error");
        assert!(blank_type.summary().get("cost_usd").is_none());

        // Done: success and cost, plus the 0.14 outcome; no error_type without an error.
        let done = JobRecord {
            status: JobStatus::Done,
            result: Some(
                json!({"agent": "a", "success": true, "result": "ok", "cost_usd": null, "outcome": "partial"}),
            ),
            error: None,
            ..full()
        };
        let s = done.summary();
        assert_eq!(s["success"], true);
        assert_eq!(s["outcome"], "partial");
        assert!(s.get("cost_usd").is_none() && s.get("error_type").is_none());
        // An empty error is no error.
        let blank = JobRecord {
            error: Some(String::new()),
            ..done
        };
        assert!(blank.summary().get("error_type").is_none());
    }

    #[test]
    fn a_record_written_by_the_python_package_parses() {
        // Written by agent-dispatch 0.5.0's `JobStore` (create, mark_running, finish); the
        // full two-way check against 0.5.0 and 0.16.0 is transports/tests/python_jobs.rs.
        let text = PYTHON_RECORD;
        let id = "13c2248bcdaf485798a373c676330504";
        let r = JobRecord::parse(id, text).unwrap();
        assert_eq!(r.status, JobStatus::Done);
        assert_eq!(r.task, "Fix the bug — naïve 🦀");
        assert_eq!(r.started_at, Some(1795500678.0820987));
        assert_eq!(r.result.as_ref().unwrap()["success"], true);
        assert!(r.extra.is_empty());
        // Same layout byte for byte: Python's pydantic `indent=2`, raw UTF-8, no final newline.
        assert_eq!(r.to_json_pretty(), text);
    }

    #[test]
    fn a_running_record_with_progress_from_python_0_16_parses() {
        let id = "27f5552b39f245eaa6f3f5ccec57205c";
        let r = JobRecord::parse(id, PYTHON_016_RUNNING).unwrap();
        assert_eq!(r.status, JobStatus::Running);
        assert_eq!(
            r.progress.as_deref().unwrap(),
            ["Using tool: Read", "Checking…"]
        );
        assert_eq!(r.summary()["last_progress"], "Checking…");
        assert_eq!(r.to_json_pretty(), PYTHON_016_RUNNING);
    }

    const PYTHON_016_RUNNING: &str = r#"{
  "id": "27f5552b39f245eaa6f3f5ccec57205c",
  "agent": "backend",
  "task": "running",
  "context": "c",
  "status": "running",
  "created_at": 1795500749.5222557,
  "started_at": 1795500749.5226252,
  "progress": [
    "Using tool: Read",
    "Checking…"
  ],
  "progress_updated_at": 1795500749.5228488
}"#;

    const PYTHON_RECORD: &str = r#"{
  "id": "13c2248bcdaf485798a373c676330504",
  "agent": "backend",
  "task": "Fix the bug — naïve 🦀",
  "context": "ctx",
  "caller": "me",
  "goal": "ship",
  "status": "done",
  "created_at": 1795500678.0816953,
  "started_at": 1795500678.0820987,
  "completed_at": 1795500678.0823658,
  "result": {
    "agent": "backend",
    "success": true,
    "result": "done ✓",
    "session_id": "sess-1",
    "cost_usd": 0.02,
    "duration_ms": 5000,
    "num_turns": 2,
    "parsed_result": {
      "k": [
        1,
        null
      ]
    }
  }
}"#;
}
