//! Facts about an agent's directory, computed from a [`DirProbe`] the driver filled in:
//! MCP servers, stacks, databases, the generated description and file previews.

use crate::io::{DirProbe, EntryKind};

/// Names the driver must check (presence and kind) for the functions below.
pub const MARKERS: &[&str] = &[
    "CLAUDE.md",
    "README.md",
    ".mcp.json",
    "pyproject.toml",
    "package.json",
    "Dockerfile",
    "docker-compose.yaml",
    "docker-compose.yml",
    "Cargo.toml",
    "go.mod",
    "requirements.txt",
    "prisma",
    "schema.prisma",
    "alembic",
    "alembic.ini",
    "migrations",
];

/// Files whose text `list_agents` needs (MCP server names).
pub const SUMMARY_FILES: &[&str] = &[".mcp.json", ".claude/settings.local.json"];

/// Files whose text the describe/inspect paths need (includes [`SUMMARY_FILES`]).
pub const DOC_FILES: &[&str] = &[
    "CLAUDE.md",
    "README.md",
    "pyproject.toml",
    "package.json",
    ".mcp.json",
    ".claude/settings.local.json",
];

/// Names of the MCP servers configured in `.mcp.json`, then `.claude/settings.local.json`
/// (top-level `mcpServers` keys), first occurrence kept. Unparseable or oddly shaped files
/// contribute nothing.
pub fn collect_mcp_servers(p: &DirProbe) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for file in SUMMARY_FILES {
        let Some(text) = p.files.get(*file) else {
            continue;
        };
        let Ok(serde_json::Value::Object(root)) = serde_json::from_str(strip_bom(text)) else {
            continue;
        };
        let Some(serde_json::Value::Object(servers)) = root.get("mcpServers") else {
            continue;
        };
        for name in servers.keys() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    names
}

fn has(p: &DirProbe, name: &str) -> bool {
    p.markers.contains_key(name)
}

fn has_dir(p: &DirProbe, name: &str) -> bool {
    p.markers.get(name) == Some(&EntryKind::Dir)
}

/// Technology stacks recognised from marker files, in a fixed order.
pub fn detect_stacks(p: &DirProbe) -> Vec<&'static str> {
    let rules: [(bool, &'static str); 6] = [
        (has(p, "Dockerfile"), "Docker"),
        (
            has(p, "docker-compose.yaml") || has(p, "docker-compose.yml"),
            "Docker Compose",
        ),
        (has(p, "Cargo.toml"), "Rust"),
        (has(p, "go.mod"), "Go"),
        (
            has(p, "requirements.txt") || has(p, "pyproject.toml"),
            "Python",
        ),
        (has(p, "package.json"), "Node.js"),
    ];
    rules
        .into_iter()
        .filter(|(hit, _)| *hit)
        .map(|(_, s)| s)
        .collect()
}

/// Database tooling recognised from marker files, in a fixed order.
pub fn detect_dbs(p: &DirProbe) -> Vec<&'static str> {
    let rules: [(bool, &'static str); 3] = [
        (has_dir(p, "prisma") || has(p, "schema.prisma"), "Prisma"),
        (has_dir(p, "alembic") || has(p, "alembic.ini"), "Alembic"),
        (has_dir(p, "migrations"), "migrations"),
    ];
    rules
        .into_iter()
        .filter(|(hit, _)| *hit)
        .map(|(_, s)| s)
        .collect()
}

/// A one-line description of the project, parts joined by `" | "`: CLAUDE.md's first two
/// content lines (else README.md's first substantial line), pyproject's and package.json's
/// descriptions, then `MCP: ...`, `Stack: ...`, `DB: ...`. Falls back to
/// `Agent in <basename>`.
pub fn auto_describe(p: &DirProbe) -> String {
    let mut parts: Vec<String> = Vec::new();

    let claude = p
        .files
        .get("CLAUDE.md")
        .map(|text| claude_md_summary(text))
        .unwrap_or_default();
    if !claude.is_empty() {
        parts.push(claude);
    } else if let Some(line) = p.files.get("README.md").and_then(|t| readme_summary(t)) {
        parts.push(line);
    }
    if let Some(desc) = p
        .files
        .get("pyproject.toml")
        .and_then(|t| pyproject_description(t))
    {
        parts.push(desc);
    }
    if let Some(desc) = p
        .files
        .get("package.json")
        .and_then(|t| package_description(t))
    {
        parts.push(desc);
    }
    let servers = collect_mcp_servers(p);
    if !servers.is_empty() {
        parts.push(format!("MCP: {}", servers.join(", ")));
    }
    let stacks = detect_stacks(p);
    if !stacks.is_empty() {
        parts.push(format!("Stack: {}", stacks.join(", ")));
    }
    let dbs = detect_dbs(p);
    if !dbs.is_empty() {
        parts.push(format!("DB: {}", dbs.join(", ")));
    }

    if parts.is_empty() {
        let dir = p.resolved.as_deref().unwrap_or(&p.dir);
        let base = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        return format!("Agent in {base}");
    }
    parts.join(" | ")
}

/// Up to two content lines (not headings, not `--` rules) from the first 40 lines.
fn claude_md_summary(text: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for line in splitlines(py_strip(text)).into_iter().take(40) {
        let line = py_strip(line);
        if !line.is_empty() && !line.starts_with('#') && !line.starts_with("--") {
            kept.push(line);
            if kept.len() == 2 {
                break;
            }
        }
    }
    kept.join(" ")
}

/// The first line of the first 20 that is prose (not a heading, link or badge) and longer
/// than 20 characters.
fn readme_summary(text: &str) -> Option<String> {
    splitlines(py_strip(text))
        .into_iter()
        .take(20)
        .map(py_strip)
        .find(|line| {
            !line.is_empty() && !line.starts_with(['#', '[', '!']) && line.chars().count() > 20
        })
        .map(str::to_owned)
}

/// The value of the first `description = ...` line (lines without `=` are skipped).
fn pyproject_description(text: &str) -> Option<String> {
    let line = splitlines(text)
        .into_iter()
        .find(|line| py_strip(line).starts_with("description") && line.contains('='))?;
    let (_, value) = line.split_once('=')?;
    let value = py_strip(value).trim_matches('"').trim_matches('\'');
    (!value.is_empty()).then(|| value.to_owned())
}

/// package.json's `description`, when it is a non-blank string.
fn package_description(text: &str) -> Option<String> {
    let serde_json::Value::Object(root) = serde_json::from_str(strip_bom(text)).ok()? else {
        return None;
    };
    match root.get("description") {
        Some(serde_json::Value::String(d)) if !py_strip(d).is_empty() => {
            Some(py_strip(d).to_owned())
        }
        _ => None,
    }
}

/// The first `lines` lines of `text` joined by `\n`, cut to `cap` characters (code points).
/// The flag says whether anything was left out.
pub fn preview(text: &str, lines: usize, cap: usize) -> (String, bool) {
    let all = splitlines(text);
    let mut truncated = all.len() > lines;
    let mut out = all[..all.len().min(lines)].join("\n");
    if let Some((cut, _)) = out.char_indices().nth(cap) {
        out.truncate(cut);
        truncated = true;
    }
    (out, truncated)
}

/// Editors sometimes save JSON with a byte-order mark; the parser would refuse it.
fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Python's `str.strip()` (Unicode whitespace plus the information separators).
fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c))
}

/// Python's `str.splitlines()`: every line boundary Python knows, `\r\n` as one, no final
/// empty line for a trailing break.
fn splitlines(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if matches!(
            c,
            '\n' | '\r'
                | '\x0b'
                | '\x0c'
                | '\x1c'
                | '\x1d'
                | '\x1e'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        ) {
            out.push(&s[start..i]);
            let mut end = i + c.len_utf8();
            if c == '\r' && matches!(chars.peek(), Some((_, '\n'))) {
                chars.next();
                end += 1;
            }
            start = end;
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::*;
    use crate::io::DirState;

    fn probe(dir: &str, markers: &[(&str, EntryKind)], files: &[(&str, &str)]) -> DirProbe {
        DirProbe {
            dir: PathBuf::from(dir),
            state: DirState::Dir,
            resolved: None,
            markers: markers.iter().map(|(n, k)| ((*n).to_owned(), *k)).collect(),
            files: files
                .iter()
                .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    const F: EntryKind = EntryKind::File;
    const D: EntryKind = EntryKind::Dir;

    #[test]
    fn spec_example() {
        let p = probe(
            "/p/proj",
            &[
                ("CLAUDE.md", F),
                ("README.md", F),
                (".mcp.json", F),
                ("pyproject.toml", F),
                ("package.json", F),
                ("Dockerfile", F),
                ("alembic", D),
                ("migrations", D),
            ],
            &[
                (
                    "CLAUDE.md",
                    "# Title\n\n-- comment\nThis is a cool project.\n## Section\nSecond line here.\nThird line ignored.\n",
                ),
                ("README.md", "# Readme\nThis readme line is long enough to be used.\n"),
                (
                    "pyproject.toml",
                    "[project]\nname = \"x\"\ndescription = \"A fast API server\"\n",
                ),
                ("package.json", "{\"name\": \"x\", \"description\": \"node desc\"}"),
                (
                    ".mcp.json",
                    "{\"mcpServers\": {\"postgres\": {}, \"portainer\": {}}}",
                ),
                (
                    ".claude/settings.local.json",
                    "{\"mcpServers\": {\"redis\": {}, \"postgres\": {}}}",
                ),
            ],
        );
        assert_eq!(
            auto_describe(&p),
            "This is a cool project. Second line here. | A fast API server | node desc | MCP: postgres, portainer, redis | Stack: Docker, Python, Node.js | DB: Alembic, migrations"
        );
    }

    #[test]
    fn fallback_uses_the_basename() {
        assert_eq!(
            auto_describe(&probe("/p/my-proj", &[], &[])),
            "Agent in my-proj"
        );
        let mut p = probe("/p/link", &[], &[]);
        p.resolved = Some(PathBuf::from("/real/target"));
        assert_eq!(auto_describe(&p), "Agent in target");
        assert_eq!(auto_describe(&probe("/", &[], &[])), "Agent in ");
    }

    #[test]
    fn readme_only_when_claude_md_gives_nothing() {
        let readme = "# T\n[![badge](x)](y)\n![img](z)\nshort line\nThis line is longer than twenty.\nAnother long line that is not used.\n";
        let p = probe(
            "/p/x",
            &[],
            &[
                ("CLAUDE.md", "# only headings\n-- and rules\n\n"),
                ("README.md", readme),
            ],
        );
        assert_eq!(auto_describe(&p), "This line is longer than twenty.");
        let p = probe(
            "/p/x",
            &[],
            &[("CLAUDE.md", "Claude line.\n"), ("README.md", readme)],
        );
        assert_eq!(auto_describe(&p), "Claude line.");
        // exactly 20 characters is not enough
        let p = probe("/p/x", &[], &[("README.md", "12345678901234567890\n")]);
        assert_eq!(auto_describe(&p), "Agent in x");
    }

    #[test]
    fn readme_looks_at_the_first_20_lines_only() {
        let mut readme = "#\n".repeat(20);
        readme.push_str("This line comes too late to count.\n");
        let p = probe("/p/x", &[], &[("README.md", &readme)]);
        assert_eq!(auto_describe(&p), "Agent in x");
        // leading blank lines are stripped before counting
        let readme = format!(
            "{}This line is long enough, after blanks.\n",
            "\n".repeat(30)
        );
        let p = probe("/p/x", &[], &[("README.md", &readme)]);
        assert_eq!(auto_describe(&p), "This line is long enough, after blanks.");
    }

    #[test]
    fn claude_md_looks_at_the_first_40_lines_only() {
        let mut text = "# h\n".repeat(39);
        text.push_str("Line forty.\nLine forty-one.\n");
        let p = probe("/p/x", &[], &[("CLAUDE.md", &text)]);
        assert_eq!(auto_describe(&p), "Line forty.");
    }

    #[test]
    fn pyproject_rules() {
        let d = |text: &str| pyproject_description(text);
        assert_eq!(d("description = 'single'\n"), Some("single".into()));
        assert_eq!(
            d("  description=\"  spaced  \"\n"),
            Some("  spaced  ".into())
        );
        assert_eq!(d("description = \"'both'\"\n"), Some("both".into()));
        // a line without '=' is skipped, the next one counts
        assert_eq!(
            d("description\ndescription = \"second\"\n"),
            Some("second".into())
        );
        // the first line with '=' stops the search even when its value is empty
        assert_eq!(d("description = \"\"\ndescription = \"later\"\n"), None);
        assert_eq!(d("name = \"x\"\n"), None);
        assert_eq!(
            d("descriptions = \"a=b\"\n"),
            Some("a=b".into()),
            "prefix match like Python's startswith"
        );
    }

    #[test]
    fn package_json_rules() {
        let d = |text: &str| package_description(text);
        assert_eq!(
            d("{\"description\": \"  node desc \"}"),
            Some("node desc".into())
        );
        assert_eq!(d("{\"description\": \"   \"}"), None);
        assert_eq!(d("{\"description\": 5}"), None);
        assert_eq!(d("{\"description\": null}"), None);
        assert_eq!(d("[\"description\"]"), None);
        assert_eq!(d("not json"), None);
        assert_eq!(d("\u{feff}{\"description\": \"bom\"}"), Some("bom".into()));
    }

    #[test]
    fn mcp_servers_are_robust_and_ordered() {
        let p = probe(
            "/p/x",
            &[],
            &[
                (
                    ".mcp.json",
                    "{\"mcpServers\": {\"zeta\": {}, \"alpha\": {}, \"zeta\": 1}}",
                ),
                (
                    ".claude/settings.local.json",
                    "{\"mcpServers\": {\"alpha\": {}, \"beta\": {}}}",
                ),
            ],
        );
        assert_eq!(collect_mcp_servers(&p), ["zeta", "alpha", "beta"]);
        for broken in [
            "",
            "{",
            "[1, 2]",
            "\"s\"",
            "{\"mcpServers\": [\"a\"]}",
            "{\"other\": {}}",
        ] {
            let p = probe(
                "/p/x",
                &[],
                &[
                    (".mcp.json", broken),
                    (
                        ".claude/settings.local.json",
                        "{\"mcpServers\": {\"ok\": {}}}",
                    ),
                ],
            );
            assert_eq!(collect_mcp_servers(&p), ["ok"], "{broken:?}");
        }
        assert!(collect_mcp_servers(&probe("/p/x", &[], &[])).is_empty());
    }

    #[test]
    fn stacks_and_dbs() {
        let p = probe(
            "/p/x",
            &[
                ("package.json", F),
                ("requirements.txt", F),
                ("go.mod", F),
                ("Cargo.toml", F),
                ("docker-compose.yml", F),
            ],
            &[],
        );
        assert_eq!(
            detect_stacks(&p),
            ["Docker Compose", "Rust", "Go", "Python", "Node.js"]
        );
        assert!(detect_dbs(&p).is_empty());
        let p = probe(
            "/p/x",
            &[("schema.prisma", F), ("alembic.ini", F), ("migrations", F)],
            &[],
        );
        assert_eq!(
            detect_dbs(&p),
            ["Prisma", "Alembic"],
            "a migrations *file* does not count"
        );
        let p = probe(
            "/p/x",
            &[("prisma", D), ("migrations", D), ("alembic", F)],
            &[],
        );
        assert_eq!(detect_dbs(&p), ["Prisma", "migrations"]);
        assert!(detect_stacks(&probe("/p/x", &[], &[])).is_empty());
    }

    #[test]
    fn markers_and_files_cover_what_the_functions_read() {
        for name in [
            "CLAUDE.md",
            "README.md",
            ".mcp.json",
            "Dockerfile",
            "docker-compose.yaml",
            "docker-compose.yml",
            "Cargo.toml",
            "go.mod",
            "requirements.txt",
            "pyproject.toml",
            "package.json",
            "prisma",
            "schema.prisma",
            "alembic",
            "alembic.ini",
            "migrations",
        ] {
            assert!(MARKERS.contains(&name), "{name}");
        }
        for f in SUMMARY_FILES {
            assert!(DOC_FILES.contains(f), "{f}");
        }
        for f in ["CLAUDE.md", "README.md", "pyproject.toml", "package.json"] {
            assert!(DOC_FILES.contains(&f), "{f}");
        }
    }

    #[test]
    fn previews() {
        assert_eq!(preview("a\nb\nc\n", 2, 200), ("a\nb".into(), true));
        assert_eq!(preview("a\nb\n", 2, 200), ("a\nb".into(), false));
        assert_eq!(preview("a\r\nb\rc", 5, 200), ("a\nb\nc".into(), false));
        assert_eq!(preview("", 3, 200), (String::new(), false));
        assert_eq!(preview("héllo wörld", 1, 4), ("héll".into(), true));
        assert_eq!(preview("abcd", 1, 4), ("abcd".into(), false));
        assert_eq!(preview("a\nb", 0, 200), (String::new(), true));
    }

    #[test]
    fn python_splitlines_and_strip() {
        assert_eq!(
            splitlines("a\nb\r\nc\rd\u{2028}e\x0bf"),
            ["a", "b", "c", "d", "e", "f"]
        );
        assert_eq!(splitlines("a\n"), ["a"]);
        assert_eq!(splitlines("\n"), [""]);
        assert_eq!(splitlines("a\n\nb"), ["a", "", "b"]);
        assert!(splitlines("").is_empty());
        assert_eq!(py_strip("\u{a0} x \x1c\t"), "x");
    }
}
