//! The `dispatch_jobs` row of a record, and a fast way to get it from a record's text.
//!
//! The jobs index keeps one [`JobSummary`] per record instead of the record, and builds the
//! row's JSON only for the rows a call returns. [`JobSummary::parse`] reads the few fields a
//! row needs straight from the text (strings borrowed, the result's text and every other
//! field checked but not kept) instead of building a whole `Value` and then a `JobRecord`:
//! start-up recovery runs it over every record in the folder.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::{put_time, time_value, valid_job_id, JobRecord, JobStatus};

/// How many code points of the task a row shows.
const TASK_CHARS: usize = 120;

/// What `dispatch_jobs` shows of one record, and what listing and gc filter and sort on.
/// The public fields are the record's (see [`JobRecord`]).
#[derive(Debug, Clone, PartialEq)]
pub struct JobSummary {
    pub status: JobStatus,
    pub agent: String,
    pub created_at: f64,
    pub started_at: Option<f64>,
    pub completed_at: Option<f64>,
    /// The first 120 code points of the task.
    task: String,
    /// What the row shows of the result (boxed: the biggest part, and pending, running and
    /// most cancelled jobs have none).
    result: Option<Box<ResultFacts>>,
    /// The record has a non-empty `error`.
    has_error: bool,
    /// The last progress message, kept for a running job only (the only one that shows it).
    last_progress: Option<String>,
}

impl JobSummary {
    /// What `JobSummary::of(&JobRecord::parse(expected_id, text)?)` gives, `Ok` and `Err`
    /// alike, without building the record.
    pub fn parse(expected_id: &str, text: &str) -> Result<JobSummary, String> {
        match JobSummary::parse_fast(expected_id, text) {
            Some(summary) => Ok(summary),
            // Refused, or a shape the fast path does not take (a field given twice with a
            // wrong type first): the full parse decides, and says why.
            None => JobRecord::parse(expected_id, text).map(|record| JobSummary::of(&record)),
        }
    }

    /// The summary of a record.
    pub fn of(record: &JobRecord) -> JobSummary {
        let result = record
            .result
            .as_ref()
            .and_then(Value::as_object)
            .map(|r| ResultFacts {
                success: r.get("success").cloned(),
                cost_usd: r.get("cost_usd").cloned(),
                outcome: r.get("outcome").cloned(),
                error_type: r.get("error_type").cloned(),
            });
        Facts {
            status: record.status,
            agent: &record.agent,
            task: &record.task,
            created_at: record.created_at,
            started_at: record.started_at,
            completed_at: record.completed_at,
            result,
            error: record.error.as_deref(),
            last_progress: record
                .progress
                .as_ref()
                .and_then(|p| p.last())
                .map(|s| &**s),
        }
        .summary()
    }

    /// The row `dispatch_jobs` shows for the job `id` (spec §6.4): `id`, `agent`, `status`,
    /// `task` (first 120 code points), `created_at`, `started_at?`, `completed_at?`; with a
    /// result `success` and `cost_usd?` (and the 0.14 `outcome?`); `error_type` when the
    /// job has an error; `last_progress` for a running job with progress.
    ///
    /// `error_type` is `"cancelled"` for a cancelled job, else the result's `error_type`,
    /// else `"cli_error"` (the Python version said `cli_error` for cancelled jobs too,
    /// §10.11).
    pub fn to_value(&self, id: &str) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), Value::from(id));
        m.insert("agent".into(), Value::from(self.agent.as_str()));
        m.insert("status".into(), Value::from(self.status.as_str()));
        m.insert("task".into(), Value::from(self.task.as_str()));
        m.insert("created_at".into(), time_value(self.created_at));
        put_time(&mut m, "started_at", self.started_at);
        put_time(&mut m, "completed_at", self.completed_at);
        let result = self.result.as_deref();
        if let Some(result) = result {
            let success = result.success.clone().unwrap_or(Value::Bool(false));
            m.insert("success".into(), success);
            if let Some(cost) = result.cost_usd.as_ref().filter(|c| !c.is_null()) {
                m.insert("cost_usd".into(), cost.clone());
            }
            if let Some(outcome) = result.outcome.as_ref().filter(|o| !o.is_null()) {
                m.insert("outcome".into(), outcome.clone());
            }
        }
        if self.has_error {
            let error_type = if self.status == JobStatus::Cancelled {
                "cancelled"
            } else {
                result
                    .and_then(|r| r.error_type.as_ref())
                    .and_then(Value::as_str)
                    .filter(|t| !t.is_empty())
                    .unwrap_or("cli_error")
            };
            m.insert("error_type".into(), Value::from(error_type));
        }
        if let Some(last) = &self.last_progress {
            m.insert("last_progress".into(), Value::from(last.as_str()));
        }
        Value::Object(m)
    }

    /// The fast half of [`JobSummary::parse`], reading only what a row needs: `None` when
    /// the full parse must decide (the record is refused, or has a shape left to it). The
    /// property tests and the fuzz target check, through `fuzzing`, that it never accepts a
    /// record `JobRecord::parse` refuses and reads the same summary from the rest.
    pub(crate) fn parse_fast(expected_id: &str, text: &str) -> Option<JobSummary> {
        let f: Fields = serde_json::from_str(text).ok()?;
        let id = f.id?;
        if !valid_job_id(&id) || id != expected_id {
            return None;
        }
        let status = JobStatus::parse(&f.status?)?;
        let created_at = f.created_at?;
        let times = [f.started_at, f.completed_at, f.progress_updated_at];
        if !created_at.is_finite() || times.iter().flatten().any(|t| !t.is_finite()) {
            return None;
        }
        Some(
            Facts {
                status,
                agent: &f.agent?,
                task: &f.task?,
                created_at,
                started_at: f.started_at,
                completed_at: f.completed_at,
                result: f.result,
                error: f.error.as_deref(),
                last_progress: f.last_progress.as_deref(),
            }
            .summary(),
        )
    }
}

/// The fields of a record's `result` a row shows, as they are in the record.
#[derive(Debug, Clone, Default, PartialEq)]
struct ResultFacts {
    success: Option<Value>,
    cost_usd: Option<Value>,
    outcome: Option<Value>,
    error_type: Option<Value>,
}

/// A record's fields as a summary needs them, from a `JobRecord` or straight from the text:
/// both ways end in [`Facts::summary`], so they cannot disagree on what a row shows.
struct Facts<'a> {
    status: JobStatus,
    agent: &'a str,
    task: &'a str,
    created_at: f64,
    started_at: Option<f64>,
    completed_at: Option<f64>,
    result: Option<ResultFacts>,
    error: Option<&'a str>,
    last_progress: Option<&'a str>,
}

impl Facts<'_> {
    fn summary(self) -> JobSummary {
        let task = match self.task.char_indices().nth(TASK_CHARS) {
            Some((end, _)) => &self.task[..end],
            None => self.task,
        };
        JobSummary {
            status: self.status,
            agent: self.agent.to_owned(),
            created_at: self.created_at,
            started_at: self.started_at,
            completed_at: self.completed_at,
            task: task.to_owned(),
            result: self.result.map(Box::new),
            has_error: self.error.is_some_and(|e| !e.is_empty()),
            last_progress: self
                .last_progress
                .filter(|_| self.status == JobStatus::Running)
                .map(str::to_owned),
        }
    }
}

// ---- the fast path ----
//
// `JobSummary::parse_fast` never accepts a text `JobRecord::parse` refuses, and reads the
// same values from the texts it accepts; whatever it is unsure of, it leaves to the full
// parse. So:
// - every value is parsed as serde_json parses it into a `Value` (`deserialize_any`, or a
//   typed call that parses the same way): same number range, escapes and nesting limit.
//   Never `IgnoredAny`: serde_json skips that without checking numbers or escapes;
// - a field given twice counts with its last value, as in a `Value` object;
// - anything unexpected (a wrong type, an invalid id, an unknown status) is `None`.

/// The top-level fields of a record a summary reads (`None`: absent or `null`).
#[derive(Default)]
struct Fields<'a> {
    id: Option<Cow<'a, str>>,
    agent: Option<Cow<'a, str>>,
    task: Option<Cow<'a, str>>,
    status: Option<Cow<'a, str>>,
    created_at: Option<f64>,
    started_at: Option<f64>,
    completed_at: Option<f64>,
    progress_updated_at: Option<f64>,
    result: Option<ResultFacts>,
    error: Option<Cow<'a, str>>,
    /// The last entry of `progress`.
    last_progress: Option<Cow<'a, str>>,
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor(PhantomData))
    }
}

impl<'de> FromObject<'de> for Fields<'de> {
    const EXPECTING: &'static str = "a job record";

    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "id" => self.id = text(map)?,
            "agent" => self.agent = text(map)?,
            "task" => self.task = text(map)?,
            "status" => self.status = text(map)?,
            "error" => self.error = text(map)?,
            "context" | "caller" | "goal" => {
                text(map)?;
            }
            "created_at" => self.created_at = map.next_value()?,
            "started_at" => self.started_at = map.next_value()?,
            "completed_at" => self.completed_at = map.next_value()?,
            "progress_updated_at" => self.progress_updated_at = map.next_value()?,
            "result" => self.result = map.next_value()?,
            "progress" => {
                let progress: Option<Vec<Text>> = map.next_value()?;
                self.last_progress = progress.and_then(|mut p| p.pop()).map(|t| t.0);
            }
            _ => {
                map.next_value::<Skip>()?;
            }
        }
        Ok(())
    }
}

/// A string field that may be `null`.
fn text<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<Cow<'de, str>>, A::Error> {
    Ok(map.next_value::<Option<Text>>()?.map(|t| t.0))
}

impl<'de> Deserialize<'de> for ResultFacts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor(PhantomData))
    }
}

impl<'de> FromObject<'de> for ResultFacts {
    const EXPECTING: &'static str = "a result object";

    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "success" => self.success = Some(map.next_value()?),
            "cost_usd" => self.cost_usd = Some(map.next_value()?),
            "outcome" => self.outcome = Some(map.next_value()?),
            "error_type" => self.error_type = Some(map.next_value()?),
            // The result's text (often the biggest part of a record) among them.
            _ => {
                map.next_value::<Skip>()?;
            }
        }
        Ok(())
    }
}

/// A JSON object read key by key: each key's value is read (or skipped) by `field`, so a
/// key given twice counts with its last value, as in a `Value` object.
trait FromObject<'de>: Default {
    /// What the object is, for error messages.
    const EXPECTING: &'static str;

    /// Reads the value of `key` from `map`.
    fn field<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error>;
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: FromObject<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
        let mut object = T::default();
        while let Some(Text(key)) = map.next_key()? {
            object.field(&key, &mut map)?;
        }
        Ok(object)
    }
}

/// A JSON string, borrowed from the text unless it has escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Owned(s.to_owned())))
    }
}

/// Any JSON value, parsed as parsing it into a `Value` would (`deserialize_any`: numbers in
/// range, escapes valid, nesting within the limit) but not kept.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(Skip)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_str<E>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_unit<E>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::KNOWN_FIELDS;

    const ID: &str = "0123456789abcdef0123456789abcdef";

    /// Checks that `JobSummary::parse` is the full parse plus `JobSummary::of` on `text`,
    /// and that the fast path never accepts what the full parse refuses; returns whether
    /// the fast path took the record.
    fn check(text: &str) -> bool {
        let full = JobRecord::parse(ID, text).map(|r| JobSummary::of(&r));
        let fast = JobSummary::parse_fast(ID, text);
        if let Some(fast) = &fast {
            assert_eq!(Ok(fast), full.as_ref(), "the fast path accepted {text}");
        }
        assert_eq!(JobSummary::parse(ID, text), full, "{text}");
        fast.is_some()
    }

    /// A valid `done` record, then `more` (`, "key": value...`) inside the same object.
    fn record(more: &str) -> String {
        format!(
            r#"{{"id": "{ID}", "agent": "a", "task": "t", "status": "done", "created_at": 1.5{more}}}"#
        )
    }

    #[test]
    fn usual_records_take_the_fast_path() {
        let done = r#", "caller": "bench", "started_at": 2, "completed_at": 3.25,
            "result": {"agent": "a", "success": true, "result": "Found \"3\" errors\n",
                "session_id": "s", "cost_usd": 0.0123, "duration_ms": 4200, "num_turns": 3,
                "parsed_result": {"k": [1, null, -0.5e-3]}}, "response_format": "json""#;
        let failed = r#", "status": "failed", "error": "Agent timed out",
            "result": {"success": false, "result": "", "error_type": "timeout"}"#;
        let running = r#", "status": "running", "progress": ["Using tool: Read", "Checking\u2026"],
            "progress_updated_at": 4"#;
        for more in ["", done, failed, running] {
            assert!(check(&record(more)), "{more}");
        }
        let s = JobSummary::parse(ID, &record(running)).unwrap();
        assert_eq!(s.to_value(ID)["last_progress"], "Checking…");
        let s = JobSummary::parse(ID, &record(failed)).unwrap();
        assert_eq!(s.to_value(ID)["error_type"], "timeout");
        // Every optional field `null` is the same as absent.
        let required = ["id", "agent", "task", "status", "created_at"];
        let nulls: String = KNOWN_FIELDS
            .iter()
            .filter(|k| !required.contains(k))
            .map(|k| format!(r#", "{k}": null"#))
            .collect();
        assert!(check(&record(&nulls)));
        assert_eq!(
            JobSummary::parse(ID, &record(&nulls)),
            JobSummary::parse(ID, &record(""))
        );
    }

    #[test]
    fn refused_records_never_take_the_fast_path() {
        let refused = [
            "{".to_string(),
            "[]".into(),
            "null".into(),
            format!("{} x", record("")),
            record(r#", "id": null"#),
            record(r#", "id": "fedcba9876543210fedcba9876543210""#),
            record(r#", "agent": 1"#),
            record(r#", "task": ["t"]"#),
            record(r#", "status": "Done""#),
            record(r#", "status": null"#),
            record(r#", "created_at": "1.5""#),
            record(r#", "created_at": null"#),
            record(r#", "started_at": true"#),
            record(r#", "completed_at": {}"#),
            record(r#", "progress_updated_at": [1]"#),
            record(r#", "result": "ok""#),
            record(r#", "result": []"#),
            record(r#", "error": 3"#),
            record(r#", "context": false"#),
            record(r#", "caller": 1"#),
            record(r#", "goal": []"#),
            record(r#", "progress": "x""#),
            record(r#", "progress": ["a", 1]"#),
        ];
        for text in &refused {
            assert!(!check(text), "{text}");
            assert!(JobSummary::parse(ID, text).is_err(), "{text}");
        }
        // The file name must be the record's id, and a valid one.
        for expected in ["", "fedcba9876543210fedcba9876543210", &ID.to_uppercase()] {
            assert_eq!(JobSummary::parse_fast(expected, &record("")), None);
            assert!(JobSummary::parse(expected, &record("")).is_err());
        }
    }

    #[test]
    fn skipped_values_are_checked_as_a_value_would_be() {
        // serde_json skips an ignored value without these checks; a `Value` refuses them.
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let bad = [
            "1e999",
            "-1e999",
            &format!("1{}", "0".repeat(400)),
            r#""\ud800""#,
            r#""\x""#,
            &deep(200),
        ];
        for value in bad {
            for more in [
                format!(r#", "other": {value}"#),
                format!(r#", "result": {{"success": true, "result": {value}}}"#),
                format!(r#", "result": {{"nested": {{"deeper": [{value}]}}}}"#),
            ] {
                let text = record(&more);
                assert!(!check(&text), "{text}");
                assert!(JobRecord::parse(ID, &text).is_err(), "{text}");
            }
        }
        // What a `Value` takes, the fast path takes too.
        let fine = [
            "-0",
            "1e-400",
            "18446744073709551616",
            r#""\ud83e\udd80 \u0000 \"""#,
            &deep(120),
        ];
        for value in fine {
            assert!(check(&record(&format!(r#", "other": {value}"#))), "{value}");
        }
    }

    #[test]
    fn a_field_given_twice_counts_with_its_last_value() {
        // As in a `Value` object (and so in the full parse): the fast path agrees.
        for more in [
            r#", "status": "running""#,
            r#", "status": "failed", "error": "x", "error": null"#,
            r#", "result": {"success": false, "error_type": "timeout", "success": true}"#,
            r#", "result": {"error_type": "timeout", "error_type": 5}, "error": "e""#,
            r#", "progress": ["a"], "progress": null, "status": "running""#,
            r#", "\u0073tatus": "cancelled""#,
        ] {
            assert!(check(&record(more)), "{more}");
        }
        let s = JobSummary::parse(ID, &record(r#", "status": "running""#)).unwrap();
        assert_eq!(s.status, JobStatus::Running);
        // A wrong type first and a right one last: the full parse takes it, so the
        // fast path leaves it to it.
        let text = record(r#", "agent": 1, "agent": "b""#);
        assert!(!check(&text));
        assert_eq!(JobSummary::parse(ID, &text).unwrap().agent, "b");
    }

    #[test]
    fn the_row_shows_a_task_prefix_and_a_running_jobs_progress() {
        let task = format!("{}\\n{}", "é".repeat(100), "🦀".repeat(30));
        let text = record(&format!(r#", "task": "{task}", "progress": ["p"]"#));
        assert!(check(&text));
        let row = JobSummary::parse(ID, &text).unwrap().to_value(ID);
        let shown = row["task"].as_str().unwrap();
        assert_eq!(shown.chars().count(), 120);
        assert!(shown.starts_with(&format!("{}\n🦀", "é".repeat(100))));
        // Progress shows for a running job only, and an empty tail shows nothing.
        assert!(row.get("last_progress").is_none());
        for (more, last) in [
            (
                r#", "status": "running", "progress": ["p", "q"]"#,
                Some("q"),
            ),
            (r#", "status": "running", "progress": []"#, None),
        ] {
            let row = JobSummary::parse(ID, &record(more)).unwrap().to_value(ID);
            assert_eq!(row.get("last_progress").and_then(Value::as_str), last);
        }
    }
}
