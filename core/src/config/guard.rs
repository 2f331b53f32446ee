//! Cheap lexical limits checked before the YAML parser sees the text: a hostile
//! `agents.yaml` must not cost the parser minutes (deep flow nesting) or gigabytes (alias
//! amplification). The scan is a single pass over the bytes that skips quoted scalars,
//! comments and block scalars, so `*` or `[` inside strings and prompts are not counted.

/// The largest config file read or parsed (4 MiB).
pub const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;

/// The deepest flow-collection nesting (`[` and `{`) accepted: serde_yaml's own recursion
/// limit, so nothing it would parse is refused, but libyaml never sees 100 000 levels.
pub const MAX_FLOW_DEPTH: usize = 128;

/// The most alias tokens (`*name`) accepted.
pub const MAX_ALIASES: usize = 64;

/// Rejects text over [`MAX_CONFIG_BYTES`], flow nesting deeper than [`MAX_FLOW_DEPTH`] or
/// more than [`MAX_ALIASES`] aliases, with an error naming the problem.
pub(super) fn check(text: &str) -> Result<(), String> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(format!(
            "the file is {} bytes, larger than the 4 MiB limit",
            text.len()
        ));
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut line = 1usize;
    let mut depth = 0usize;
    let mut aliases = 0usize;
    // The byte before the current one on this line (`None` at the start of a line).
    let mut prev: Option<u8> = None;
    let mut line_start = true;
    let mut line_indent = 0usize;
    // Inside a block scalar: lines more indented than this (and blank lines) are its content.
    let mut block_floor: Option<usize> = None;
    while i < bytes.len() {
        if line_start {
            line_start = false;
            prev = None;
            let indent = bytes[i..].iter().take_while(|&&b| b == b' ').count();
            let rest = &bytes[i + indent..];
            let blank = rest
                .iter()
                .take_while(|&&b| b != b'\n')
                .all(|&b| b == b' ' || b == b'\t' || b == b'\r');
            if let Some(floor) = block_floor {
                if blank || indent > floor {
                    i = skip_line(bytes, i);
                    line += 1;
                    line_start = true;
                    continue;
                }
                block_floor = None;
            }
            line_indent = indent;
        }
        let b = bytes[i];
        let boundary = matches!(prev, None | Some(b' ' | b'\t'));
        match b {
            b'\n' => {
                line += 1;
                line_start = true;
                i += 1;
                continue;
            }
            b'#' if boundary => {
                i = skip_to_newline(bytes, i);
                continue;
            }
            b'\'' | b'"' if boundary || matches!(prev, Some(b'[' | b'{' | b',')) => {
                match skip_quoted(bytes, i) {
                    Some((end, newlines)) => {
                        i = end;
                        line += newlines;
                        prev = Some(b);
                        continue;
                    }
                    // Unterminated: the YAML parser reports it.
                    None => return alias_check(aliases),
                }
            }
            b'[' | b'{' if depth > 0 || boundary => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Err(format!(
                        "not valid YAML: recursion limit exceeded: flow nesting deeper than {MAX_FLOW_DEPTH} (line {line})"
                    ));
                }
            }
            b']' | b'}' if depth > 0 => depth -= 1,
            b'*' if boundary || matches!(prev, Some(b'[' | b'{' | b',')) => {
                let next = bytes.get(i + 1).copied();
                if next.is_some_and(|n| {
                    !matches!(
                        n,
                        b' ' | b'\t' | b'\r' | b'\n' | b',' | b'[' | b']' | b'{' | b'}'
                    )
                }) {
                    aliases += 1;
                }
            }
            b'|' | b'>' if depth == 0 && boundary && is_block_header(bytes, i) => {
                block_floor = Some(line_indent);
                i = skip_to_newline(bytes, i);
                continue;
            }
            _ => {}
        }
        prev = Some(b);
        i += 1;
    }
    alias_check(aliases)
}

/// The most YAML nodes (scalars, sequences, mappings) a config may expand to, aliases
/// expanded. A few aliases nested inside anchors still multiply (8 levels of 8 aliases is
/// 8^8 copies), so this bound is what caps the memory; a real config has a few hundred.
pub const MAX_NODES: usize = 100_000;

/// Walks the parsed document without building it, counting nodes with aliases expanded, and
/// stops at [`MAX_NODES`]. Syntax errors are left to the real parse.
pub(super) fn check_nodes(text: &str) -> Result<(), String> {
    use serde::de::DeserializeSeed;
    let count = std::cell::Cell::new(0);
    match NodeBudget(&count).deserialize(serde_yaml::Deserializer::from_str(text)) {
        Err(_) if count.get() > MAX_NODES => Err(format!(
            "not valid YAML: repetition limit exceeded: more than {MAX_NODES} nodes with aliases expanded: agents.yaml does not need YAML aliases at this scale"
        )),
        _ => Ok(()),
    }
}

/// Counts nodes into the cell; fails once there are more than [`MAX_NODES`].
struct NodeBudget<'a>(&'a std::cell::Cell<usize>);

impl NodeBudget<'_> {
    fn tick<E: serde::de::Error>(&self) -> Result<(), E> {
        self.0.set(self.0.get() + 1);
        if self.0.get() > MAX_NODES {
            return Err(E::custom("too many nodes"));
        }
        Ok(())
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for NodeBudget<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for NodeBudget<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML node")
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.tick()
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.tick()
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.tick()
    }
    fn visit_i128<E: serde::de::Error>(self, _: i128) -> Result<(), E> {
        self.tick()
    }
    fn visit_u128<E: serde::de::Error>(self, _: u128) -> Result<(), E> {
        self.tick()
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.tick()
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.tick()
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.tick()
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.tick()
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.tick()?;
        while seq.next_element_seed(NodeBudget(self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.tick()?;
        while map.next_key_seed(NodeBudget(self.0))?.is_some() {
            map.next_value_seed(NodeBudget(self.0))?;
        }
        Ok(())
    }
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        use serde::de::VariantAccess;
        self.tick()?;
        let (serde::de::IgnoredAny, variant) = data.variant()?;
        variant.newtype_variant_seed(NodeBudget(self.0))
    }
}

fn alias_check(aliases: usize) -> Result<(), String> {
    if aliases > MAX_ALIASES {
        return Err(format!(
            "not valid YAML: repetition limit exceeded: too many aliases ({aliases} > {MAX_ALIASES}): agents.yaml does not need YAML aliases at this scale"
        ));
    }
    Ok(())
}

/// The index of the `\n` ending the line holding `i` (or the end of the text).
fn skip_to_newline(bytes: &[u8], i: usize) -> usize {
    bytes[i..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |n| i + n)
}

/// The index after the `\n` ending the line holding `i` (or the end of the text).
fn skip_line(bytes: &[u8], i: usize) -> usize {
    (skip_to_newline(bytes, i) + 1).min(bytes.len())
}

/// For a quoted scalar opening at `start`: the index after its closing quote and the
/// newlines inside it; `None` when it is not closed.
fn skip_quoted(bytes: &[u8], start: usize) -> Option<(usize, usize)> {
    let quote = bytes[start];
    let mut i = start + 1;
    let mut newlines = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'"' => i += 1,
            b'\'' if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 1,
            b'\n' => newlines += 1,
            b if b == quote => return Some((i + 1, newlines)),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Whether the `|` or `>` at `i` starts a block scalar header: only indentation and
/// chomping indicators, then optional whitespace and comment, up to the end of the line.
fn is_block_header(bytes: &[u8], i: usize) -> bool {
    let end = skip_to_newline(bytes, i);
    let rest = &bytes[i + 1..end];
    let indicators = rest
        .iter()
        .take_while(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-'))
        .count();
    let tail = &rest[indicators..];
    let spaces = tail
        .iter()
        .take_while(|&&b| matches!(b, b' ' | b'\t' | b'\r'))
        .count();
    spaces == tail.len() || (spaces > 0 && tail[spaces] == b'#')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_passes() {
        for text in [
            "",
            "agents: {}\n",
            "base: &base {timeout: 30}\nagents:\n  a: *base\n  b: {<<: *base, model: x}\n",
            "agents:\n  a:\n    prompt: \"*not [an {alias\"\n    x: '[[[[ *b '' *c'\n",
            "agents: # [[[ *a *b\n  a: {directory: /x}\n",
            "agents:\n  a:\n    system_prompt: |\n      *bold* *and* [[[[[[\n\n      - *item\n    model: x\n",
            "k: don't *",
        ] {
            check(text).unwrap_or_else(|e| panic!("{e}\n---\n{text}"));
        }
    }

    #[test]
    fn block_scalar_content_is_not_counted() {
        let body: String = (0..200).map(|i| format!("    *w{i} [[[[[[[[\n")).collect();
        check(&format!("x: >-\n{body}y: 1\n")).expect("block scalar");
        // Once the block ends, aliases count again.
        let after: String = (0..65).map(|i| format!("y{i}: *a\n")).collect();
        let err = check(&format!("a: &a 1\nx: |\n  text\n{after}")).unwrap_err();
        assert!(err.contains("too many aliases (65 > 64)"), "{err}");
    }

    #[test]
    fn deep_flow_nesting_is_rejected() {
        let ok = format!("x: {}{}\n", "[".repeat(128), "]".repeat(128));
        check(&ok).expect("128 deep");
        let deep = format!("agents: {{}}\nx: {}{}\n", "[".repeat(129), "]".repeat(129));
        let err = check(&deep).unwrap_err();
        assert_eq!(
            err,
            "not valid YAML: recursion limit exceeded: flow nesting deeper than 128 (line 2)"
        );
        let mixed = format!("x: {}\n", "[{a: ".repeat(70));
        assert!(check(&mixed).is_err());
    }

    #[test]
    fn many_aliases_are_rejected() {
        let items: Vec<String> = (0..1_000).map(|i| format!("s{i}")).collect();
        let yaml = format!(
            "x: &a [{}]\ny: [{}]\nagents: {{}}\n",
            items.join(","),
            vec!["*a"; 1_000].join(",")
        );
        let err = check(&yaml).unwrap_err();
        assert_eq!(
            err,
            "not valid YAML: repetition limit exceeded: too many aliases (1000 > 64): agents.yaml does not need YAML aliases at this scale"
        );
        let few = format!("x: &a [1]\ny: [{}]\n", vec!["*a"; 64].join(", "));
        check(&few).expect("64 aliases");
    }

    #[test]
    fn nested_alias_expansion_is_bounded() {
        let items: Vec<String> = (0..1_000).map(|i| format!("s{i}")).collect();
        let mut yaml = format!("a0: &a0 [{}]\n", items.join(","));
        for level in 1..=8 {
            let refs = vec![format!("*a{}", level - 1); 8].join(",");
            yaml.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
        }
        check(&yaml).expect("64 aliases pass the lexical check");
        let err = check_nodes(&yaml).unwrap_err();
        assert!(
            err.contains("repetition limit exceeded: more than 100000 nodes"),
            "{err}"
        );
        check_nodes("a: &a {b: [1, 2]}\nc: *a\nd: !tag [x]\ne: [*a, *a]\n").expect("small");
        // Syntax errors are left to the real parse.
        check_nodes("a: [1\n").expect("syntax error passes");
    }

    #[test]
    fn oversized_text_is_rejected() {
        let text = "#".repeat(MAX_CONFIG_BYTES + 1);
        let err = check(&text).unwrap_err();
        assert!(err.contains("larger than the 4 MiB limit"), "{err}");
    }
}
