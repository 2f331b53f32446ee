//! Tool parameters: one declaration drives both the `inputSchema` and argument validation.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

/// The JSON type of a parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Kind {
    Str,
    Int,
    Num,
    Bool,
}

/// The value a parameter takes when the caller leaves it out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Default {
    /// Required: leaving it out is an error.
    Required,
    Str(&'static str),
    Int(i64),
    Num(f64),
    Bool(bool),
}

/// One declared parameter.
#[derive(Debug)]
pub(crate) struct Param {
    pub name: &'static str,
    pub kind: Kind,
    pub default: Default,
    pub doc: &'static str,
}

/// Shorthand constructors keep the tool table readable.
pub(crate) const fn req(name: &'static str, doc: &'static str) -> Param {
    Param {
        name,
        kind: Kind::Str,
        default: Default::Required,
        doc,
    }
}
pub(crate) const fn opt_str(name: &'static str, doc: &'static str) -> Param {
    Param {
        name,
        kind: Kind::Str,
        default: Default::Str(""),
        doc,
    }
}
pub(crate) const fn opt_int(name: &'static str, default: i64, doc: &'static str) -> Param {
    Param {
        name,
        kind: Kind::Int,
        default: Default::Int(default),
        doc,
    }
}
pub(crate) const fn opt_num(name: &'static str, default: f64, doc: &'static str) -> Param {
    Param {
        name,
        kind: Kind::Num,
        default: Default::Num(default),
        doc,
    }
}
pub(crate) const fn opt_bool(name: &'static str, doc: &'static str) -> Param {
    Param {
        name,
        kind: Kind::Bool,
        default: Default::Bool(false),
        doc,
    }
}

/// A validated argument value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Arg {
    Str(String),
    Int(i64),
    Num(f64),
    Bool(bool),
}

/// Validated arguments of one call; every declared parameter has a value.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Args(BTreeMap<&'static str, Arg>);

impl Args {
    /// Returns a string argument ("" if it is not a string parameter).
    pub fn str(&self, name: &str) -> &str {
        match self.0.get(name) {
            Some(Arg::Str(s)) => s,
            _ => "",
        }
    }

    /// Returns an integer argument (0 if absent).
    pub fn int(&self, name: &str) -> i64 {
        match self.0.get(name) {
            Some(Arg::Int(i)) => *i,
            _ => 0,
        }
    }

    /// Returns a boolean argument (false if absent).
    pub fn bool(&self, name: &str) -> bool {
        matches!(self.0.get(name), Some(Arg::Bool(true)))
    }

    /// Returns a number argument (0.0 if absent).
    pub fn num(&self, name: &str) -> f64 {
        match self.0.get(name) {
            Some(Arg::Num(n)) => *n,
            Some(Arg::Int(i)) => *i as f64,
            _ => 0.0,
        }
    }
}

/// Checks `arguments` against `params`, coercing leniently the way the Python server's
/// validator did (`"3"` is fine for an integer). Unknown arguments are ignored. The error
/// names the offending argument.
pub(crate) fn validate(params: &[Param], arguments: &Map<String, Value>) -> Result<Args, String> {
    let mut args = BTreeMap::new();
    for p in params {
        let given = arguments.get(p.name).filter(|v| !v.is_null());
        let value = match (given, p.default) {
            (None, Default::Required) => {
                return Err(format!("missing required argument '{}'", p.name))
            }
            (None, Default::Str(s)) => Arg::Str(s.to_string()),
            (None, Default::Int(i)) => Arg::Int(i),
            (None, Default::Num(n)) => Arg::Num(n),
            (None, Default::Bool(b)) => Arg::Bool(b),
            (Some(v), _) => coerce(p, v)?,
        };
        args.insert(p.name, value);
    }
    Ok(Args(args))
}

/// Renders the JSON Schema of a parameter list, as compact as the model needs.
pub(crate) fn schema(params: &[Param]) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for p in params {
        let mut prop = Map::new();
        prop.insert("type".into(), json!(kind_name(p.kind)));
        if !p.doc.is_empty() {
            prop.insert("description".into(), json!(p.doc));
        }
        match p.default {
            Default::Required => required.push(json!(p.name)),
            Default::Int(i) if i != 0 => drop(prop.insert("default".into(), json!(i))),
            Default::Num(n) if n != 0.0 => drop(prop.insert("default".into(), json!(n))),
            _ => {}
        }
        props.insert(p.name.into(), Value::Object(prop));
    }
    let mut s = json!({"type": "object", "properties": props});
    if !required.is_empty() {
        s["required"] = Value::Array(required);
    }
    s
}

fn coerce(p: &Param, v: &Value) -> Result<Arg, String> {
    let bad = || {
        format!(
            "argument '{}' must be {}, got {}",
            p.name,
            article(p.kind),
            short(v)
        )
    };
    match p.kind {
        Kind::Str => v.as_str().map(|s| Arg::Str(s.to_string())).ok_or_else(bad),
        Kind::Int => match v {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                        .map(|f| f as i64)
                })
                .map(Arg::Int)
                .ok_or_else(bad),
            Value::String(s) => s.trim().parse::<i64>().map(Arg::Int).map_err(|_| bad()),
            _ => Err(bad()),
        },
        Kind::Num => match v {
            Value::Number(n) => n.as_f64().map(Arg::Num).ok_or_else(bad),
            Value::String(s) => s.trim().parse::<f64>().map(Arg::Num).map_err(|_| bad()),
            _ => Err(bad()),
        },
        Kind::Bool => match v {
            Value::Bool(b) => Ok(Arg::Bool(*b)),
            Value::String(s) if s == "true" => Ok(Arg::Bool(true)),
            Value::String(s) if s == "false" => Ok(Arg::Bool(false)),
            _ => Err(bad()),
        },
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Str => "string",
        Kind::Int => "integer",
        Kind::Num => "number",
        Kind::Bool => "boolean",
    }
}

fn article(k: Kind) -> &'static str {
    match k {
        Kind::Str => "a string",
        Kind::Int => "an integer",
        Kind::Num => "a number",
        Kind::Bool => "a boolean",
    }
}

/// A short rendering of a bad value for an error message (never the whole of a huge one).
fn short(v: &Value) -> String {
    let text = v.to_string();
    match text.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMS: &[Param] = &[
        req("name", "Agent name"),
        opt_int("timeout", 0, ""),
        opt_num("budget", 0.0, ""),
        opt_int("lines", 40, ""),
    ];

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn fills_defaults_and_coerces_leniently() {
        let a = validate(
            PARAMS,
            &obj(json!({"name": "web", "timeout": "30", "budget": 2, "x": 1})),
        )
        .unwrap();
        assert_eq!(
            (
                a.str("name"),
                a.int("timeout"),
                a.num("budget"),
                a.int("lines")
            ),
            ("web", 30, 2.0, 40)
        );
        let a = validate(
            PARAMS,
            &obj(json!({"name": "w", "timeout": 5.0, "lines": null})),
        )
        .unwrap();
        assert_eq!((a.int("timeout"), a.int("lines")), (5, 40));
    }

    #[test]
    fn names_the_argument_that_is_wrong() {
        assert_eq!(
            validate(PARAMS, &Map::new()).unwrap_err(),
            "missing required argument 'name'"
        );
        assert_eq!(
            validate(PARAMS, &obj(json!({"name": 3}))).unwrap_err(),
            "argument 'name' must be a string, got 3"
        );
        assert_eq!(
            validate(PARAMS, &obj(json!({"name": "w", "timeout": "soon"}))).unwrap_err(),
            "argument 'timeout' must be an integer, got \"soon\""
        );
        assert!(validate(PARAMS, &obj(json!({"name": "w", "timeout": 1.5})))
            .unwrap_err()
            .contains("'timeout'"));
    }

    #[test]
    fn schema_lists_required_and_non_trivial_defaults() {
        let s = schema(PARAMS);
        assert_eq!(s["required"], json!(["name"]));
        assert_eq!(
            s["properties"]["lines"],
            json!({"type": "integer", "default": 40})
        );
        assert_eq!(s["properties"]["timeout"], json!({"type": "integer"}));
    }
}
