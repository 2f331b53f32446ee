//! The effect executor against real processes and files: what only the OS can show.
//!
//! No core here: each test applies effects by hand and reads the inputs the executor feeds
//! back, with deadlines instead of sleeps.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agent_dispatch_core::{
    ClientId, DirState, Effect, EntryKind, ExitStatus, Input, IoRequest, IoResult, OpId, ProcId,
    Signal, SpawnErrorKind, SpawnSpec,
};
use agent_dispatch_transports::{files, Executor};
use async_channel::Receiver;

use support::{mode, Sink, TempDir};

const WAIT: Duration = Duration::from_secs(15);

fn fixtures_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/bin")
        .canonicalize()
        .expect("fixtures/bin")
}

fn fake_claude() -> String {
    fixtures_bin()
        .join("fake-claude")
        .to_string_lossy()
        .into_owned()
}

/// An executor plus the inputs it reports.
struct Harness {
    exec: Executor,
    inputs: Receiver<Input>,
    next_op: u64,
}

impl Harness {
    fn new() -> Self {
        let (tx, inputs) = async_channel::unbounded();
        Harness {
            exec: Executor::new(tx),
            inputs,
            next_op: 0,
        }
    }

    /// The next input, or `None` if none arrives within `within`.
    /// The next input, delivered as the drive loop would (releasing stdout backpressure).
    fn next_within(&self, within: Duration) -> Option<Input> {
        let input = smol::block_on(futures_lite::future::or(
            async { self.inputs.recv().await.ok() },
            async {
                smol::Timer::after(within).await;
                None
            },
        ))?;
        self.exec.delivered(&input);
        Some(input)
    }

    fn next(&self) -> Input {
        self.next_within(WAIT)
            .expect("no input before the deadline")
    }

    fn spawn(&mut self, proc: u64, spec: SpawnSpec) {
        self.exec.apply(Effect::Spawn {
            proc: ProcId(proc),
            spec,
        });
    }

    /// Collects one child's inputs until it has exited and closed stdout and stderr.
    fn finish(&self, proc: u64) -> Outcome {
        let proc = ProcId(proc);
        let mut out = Outcome::default();
        while out.status.is_none() || !out.stdout_closed || !out.stderr_closed {
            match self.next() {
                Input::Spawned { proc: p, pid } if p == proc => out.pid = pid,
                Input::StdoutLine { proc: p, line } if p == proc => out.lines.push(line),
                Input::StderrChunk { proc: p, text } if p == proc => out.stderr.push_str(&text),
                Input::StdoutClosed { proc: p } if p == proc => out.stdout_closed = true,
                Input::StderrClosed { proc: p } if p == proc => {
                    assert!(!out.stderr_closed, "stderr closed twice");
                    out.stderr_closed = true;
                }
                Input::Exited { proc: p, status } if p == proc => out.status = Some(status),
                other => panic!("unexpected input {other:?}"),
            }
        }
        out
    }

    /// Runs one I/O request to completion.
    fn io(&mut self, request: IoRequest) -> IoResult {
        self.next_op += 1;
        let op = OpId(self.next_op);
        self.exec.apply(Effect::Io { op, request });
        match self.next() {
            Input::IoDone { op: done, result } if done == op => result,
            other => panic!("unexpected input {other:?}"),
        }
    }
}

#[derive(Debug, Default)]
struct Outcome {
    pid: Option<u32>,
    lines: Vec<String>,
    stderr: String,
    stdout_closed: bool,
    stderr_closed: bool,
    status: Option<ExitStatus>,
}

fn spec(program: &str, args: &[&str]) -> SpawnSpec {
    SpawnSpec {
        program: program.to_owned(),
        args: args.iter().map(|a| a.to_string()).collect(),
        cwd: std::env::temp_dir(),
        env: BTreeMap::new(),
        stdin: None,
        max_line_bytes: 64 << 20,
    }
}

/// Pids of live (non-zombie) processes in process group `pgid`, from /proc.
fn live_group_members(pgid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after the last ')'.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[2] == pgid.to_string() && !matches!(fields[0], "Z" | "X") {
            found.push(pid);
        }
    }
    found
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn spawn_streams_lines_then_reports_exit_code() {
    let mut h = Harness::new();
    h.spawn(1, spec(&fake_claude(), &["lines", "3", "7"]));
    // `Spawned` comes first: it is sent before any reader starts.
    assert!(matches!(
        h.next(),
        Input::Spawned {
            proc: ProcId(1),
            pid: Some(_)
        }
    ));
    let out = h.finish(1);
    assert_eq!(out.lines, ["line 1", "line 2", "line 3"]);
    assert_eq!(out.status, Some(ExitStatus::Code(7)));
    assert_eq!(out.stderr, "");
}

#[test]
fn a_fast_child_waits_for_its_lines_to_be_delivered() {
    let mut h = Harness::new();
    h.spawn(1, spec(&fake_claude(), &["lines", "500", "0"]));
    assert!(matches!(h.next(), Input::Spawned { .. }));
    // Nothing is taken from the channel: the reader must stop well before 500 lines.
    std::thread::sleep(Duration::from_millis(300));
    let queued = h.inputs.len();
    assert!(
        queued <= 70,
        "{queued} inputs queued: stdout is not held back"
    );
    let out = h.finish(1);
    assert_eq!(out.lines.len(), 500);
    assert_eq!(out.lines[499], "line 500");
}

#[test]
fn a_line_longer_than_the_spec_allows_is_cut_not_buffered() {
    let mut h = Harness::new();
    let script = "head -c 5000 /dev/zero | tr '\\0' x; echo; echo after";
    h.spawn(
        1,
        SpawnSpec {
            max_line_bytes: 2048,
            ..spec("sh", &["-c", script])
        },
    );
    let out = h.finish(1);
    assert_eq!(
        out.lines.len(),
        2,
        "{:?}",
        out.lines.iter().map(String::len).collect::<Vec<_>>()
    );
    assert_eq!(out.lines[0], "x".repeat(2048));
    assert_eq!(out.lines[1], "after");
    assert_eq!(out.status, Some(ExitStatus::Code(0)));
}

#[test]
fn program_is_found_on_the_spec_path_with_cwd_env_and_stdin() {
    let dir = TempDir::new("exec");
    let mut h = Harness::new();
    let mut with_env = spec("fake-claude", &["env", "AGENT_DISPATCH_DEPTH"]);
    with_env.cwd = dir.0.clone();
    with_env.env.insert(
        "PATH".into(),
        format!("/nonexistent:{}", fixtures_bin().display()),
    );
    with_env
        .env
        .insert("AGENT_DISPATCH_DEPTH".into(), "2".into());
    h.spawn(1, with_env);
    let out = h.finish(1);
    assert_eq!(
        out.lines,
        [dir.0.to_string_lossy().into_owned(), "2".to_owned()]
    );
    assert_eq!(out.status, Some(ExitStatus::Code(0)));

    let mut with_stdin = spec(&fake_claude(), &["stdin"]);
    with_stdin.stdin = Some("first\nsecond".into());
    h.spawn(2, with_stdin);
    assert_eq!(h.finish(2).lines, ["first", "second<eof>"]);

    // No stdin in the spec: the child sees an immediate EOF, never our own stdin.
    h.spawn(3, spec(&fake_claude(), &["stdin"]));
    assert_eq!(h.finish(3).lines, ["<eof>"]);
}

#[test]
fn undecodable_bytes_become_replacement_characters() {
    let mut h = Harness::new();
    h.spawn(1, spec(&fake_claude(), &["bytes"]));
    let out = h.finish(1);
    assert_eq!(out.lines, ["ok \u{FFFD}\u{FFFD} end", "crlf", "tail"]);
    assert_eq!(out.status, Some(ExitStatus::Code(3)));
}

#[test]
fn a_stderr_flood_does_not_block_stdout() {
    const FLOOD: usize = 16 * 1024 * 1024;
    let mut h = Harness::new();
    h.spawn(1, spec(&fake_claude(), &["flood", &FLOOD.to_string()]));
    let mut out = h.finish(1);
    assert_eq!(out.lines, ["done"]);
    assert_eq!(out.status, Some(ExitStatus::Code(0)));
    // stderr EOF has no input of its own; the rest of the chunks may trail the exit.
    while out.stderr.len() < FLOOD {
        match h.next() {
            Input::StderrChunk { text, .. } => out.stderr.push_str(&text),
            other => panic!("unexpected input {other:?}"),
        }
    }
    assert_eq!(out.stderr.len(), FLOOD);
    assert!(out.stderr.bytes().all(|b| b == b'e'));
}

#[test]
fn kill_reaches_a_grandchild_that_holds_stdout() {
    let mut h = Harness::new();
    h.spawn(1, spec(&fake_claude(), &["grandchild"]));
    let Input::Spawned { pid: Some(pid), .. } = h.next() else {
        panic!("not spawned")
    };
    let Input::StdoutLine { line, .. } = h.next() else {
        panic!("no grandchild line")
    };
    let grandchild: u32 = line
        .strip_prefix("grandchild ")
        .and_then(|p| p.parse().ok())
        .expect("grandchild pid");
    // The leader exits at once and is reported even though the grandchild keeps the pipes.
    assert_eq!(
        h.next(),
        Input::Exited {
            proc: ProcId(1),
            status: ExitStatus::Code(0)
        }
    );
    assert_eq!(live_group_members(pid), [grandchild]);

    h.exec.apply(Effect::Kill {
        proc: ProcId(1),
        signal: Signal::Term,
    });
    // Killing the group closes both pipes the grandchild held, in either order.
    let mut closed = [h.next(), h.next()];
    closed.sort_by_key(|i| format!("{i:?}"));
    assert_eq!(
        closed,
        [
            Input::StderrClosed { proc: ProcId(1) },
            Input::StdoutClosed { proc: ProcId(1) }
        ]
    );
    wait_until("the group to be gone", || {
        live_group_members(pid).is_empty()
    });
}

#[test]
fn term_is_reported_as_a_signal() {
    let mut h = Harness::new();
    h.spawn(1, spec(&fake_claude(), &["sleep"]));
    let Input::Spawned { pid: Some(pid), .. } = h.next() else {
        panic!("not spawned")
    };
    h.exec.apply(Effect::Kill {
        proc: ProcId(1),
        signal: Signal::Term,
    });
    let out = h.finish(1);
    assert_eq!(out.status, Some(ExitStatus::Signal(15)));
    assert!(live_group_members(pid).is_empty());
    // Finished or unknown children are ignored, not an error.
    h.exec.apply(Effect::Kill {
        proc: ProcId(1),
        signal: Signal::Kill,
    });
    h.exec.apply(Effect::Kill {
        proc: ProcId(99),
        signal: Signal::Kill,
    });
    assert_eq!(h.next_within(Duration::from_millis(50)), None);
}

#[test]
fn spawn_failures_are_classified() {
    let dir = TempDir::new("exec");
    let mut h = Harness::new();
    let failure = |h: &Harness, proc: u64| match h.next() {
        Input::SpawnFailed { proc: p, error } if p == ProcId(proc) => error,
        other => panic!("unexpected input {other:?}"),
    };

    h.spawn(1, spec("agent-dispatch-no-such-program", &[]));
    let error = failure(&h, 1);
    assert_eq!(error.kind, SpawnErrorKind::NotFound);
    assert!(
        error.message.contains("agent-dispatch-no-such-program"),
        "{}",
        error.message
    );

    let mut missing_cwd = spec(&fake_claude(), &["lines", "1"]);
    missing_cwd.cwd = dir.0.join("gone");
    h.spawn(2, missing_cwd);
    let error = failure(&h, 2);
    assert_eq!(error.kind, SpawnErrorKind::NotFound);
    assert!(
        error
            .message
            .contains(&*dir.0.join("gone").to_string_lossy()),
        "{}",
        error.message
    );

    let not_executable = dir.0.join("claude");
    std::fs::write(&not_executable, "#!/bin/sh\n").expect("write");
    std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644))
        .expect("chmod");
    h.spawn(3, spec(&not_executable.to_string_lossy(), &[]));
    assert_eq!(failure(&h, 3).kind, SpawnErrorKind::PermissionDenied);
}

#[test]
fn send_writes_lines_in_order_and_exit_records_the_code() {
    let mut h = Harness::new();
    let sink = Sink::default();
    h.exec.add_client(ClientId(0), sink.clone());
    for line in ["{\"id\":1}", "{\"id\":2}", "{\"id\":3}"] {
        h.exec.apply(Effect::Send {
            client: ClientId(0),
            line: line.into(),
        });
    }
    h.exec.apply(Effect::Send {
        client: ClientId(9),
        line: "nobody".into(),
    });
    h.exec.apply(Effect::Exit { code: 4 });
    smol::block_on(h.exec.close_clients());
    assert_eq!(
        String::from_utf8(sink.0.lock().expect("sink").clone()).expect("utf8"),
        "{\"id\":1}\n{\"id\":2}\n{\"id\":3}\n"
    );
    assert_eq!(h.exec.exit_code(), Some(4));
}

#[test]
fn config_write_keeps_the_symlink_and_locks_down_modes() {
    let dir = TempDir::new("exec");
    let real_dir = dir.0.join("dotfiles/agent-dispatch");
    let real = real_dir.join("agents.yaml");
    let link_dir = dir.0.join("config");
    let link = link_dir.join("agents.yaml");
    std::fs::create_dir_all(&link_dir).expect("mkdir");
    symlink("../dotfiles/agent-dispatch/agents.yaml", &link).expect("symlink");
    let mut h = Harness::new();

    // Dangling link, no folder yet: reading says "no file".
    assert_eq!(
        h.io(IoRequest::ReadConfig {
            path: link.clone(),
            lock: true
        }),
        IoResult::Config { result: Ok(None) }
    );
    let written = h.io(IoRequest::WriteConfig {
        path: link.clone(),
        contents: "agents: {}\n".into(),
    });
    assert_eq!(written, IoResult::Written { result: Ok(()) });

    assert!(std::fs::symlink_metadata(&link)
        .expect("link")
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_to_string(&real).expect("real file"),
        "agents: {}\n"
    );
    assert_eq!(mode(&real), 0o600);
    assert_eq!(mode(&real_dir), 0o700);
    assert_eq!(
        h.io(IoRequest::ReadConfig {
            path: link.clone(),
            lock: false
        }),
        IoResult::Config {
            result: Ok(Some(b"agents: {}\n".to_vec()))
        }
    );
    let names: Vec<_> = std::fs::read_dir(&real_dir)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["agents.yaml"], "no temp file left behind");
}

#[test]
fn a_failed_write_names_the_path_and_leaves_no_trace() {
    let dir = TempDir::new("exec");
    // The target is a folder: the rename fails after the temp file was written.
    let target = dir.0.join("agents.yaml");
    std::fs::create_dir(&target).expect("mkdir");
    let mut h = Harness::new();
    let IoResult::Written {
        result: Err(message),
    } = h.io(IoRequest::WriteConfig {
        path: target.clone(),
        contents: "x".into(),
    })
    else {
        panic!("the write should fail")
    };
    assert!(message.contains(&*target.to_string_lossy()), "{message}");
    assert!(target.is_dir());
    let names: Vec<_> = std::fs::read_dir(&dir.0)
        .expect("ls")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["agents.yaml"], "no temp file left behind");
}

#[test]
fn locked_edits_from_two_writers_are_not_lost() {
    const EDITS: usize = 15;
    let dir = TempDir::new("exec");
    let path = dir.0.join("agents.yaml");
    // Two executors on two threads stand for two processes (the server and a CLI edit).
    let writers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|who| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut h = Harness::new();
                for i in 0..EDITS {
                    let IoResult::Config { result: Ok(old) } = h.io(IoRequest::ReadConfig {
                        path: path.clone(),
                        lock: true,
                    }) else {
                        panic!("read failed")
                    };
                    let mut text = String::from_utf8(old.unwrap_or_default()).expect("utf8");
                    // Widen the race window an unlocked read-modify-write would lose in.
                    std::thread::sleep(Duration::from_millis(2));
                    text.push_str(&format!("{who}{i}\n"));
                    let written = h.io(IoRequest::WriteConfig {
                        path: path.clone(),
                        contents: text,
                    });
                    assert_eq!(written, IoResult::Written { result: Ok(()) });
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer thread");
    }
    let text = std::fs::read_to_string(&path).expect("read");
    assert_eq!(text.lines().count(), 2 * EDITS, "{text}");
    assert_eq!(mode(&files::lock_path(&path)), 0o600);
}

#[test]
fn unlock_releases_the_config_lock() {
    let dir = TempDir::new("exec");
    let path = dir.0.join("agents.yaml");
    let mut h = Harness::new();
    let _ = h.io(IoRequest::ReadConfig {
        path: path.clone(),
        lock: true,
    });
    assert!(
        files::lock_config(&path, Duration::ZERO)
            .expect("lock")
            .is_none(),
        "held by the executor"
    );
    assert_eq!(
        h.io(IoRequest::UnlockConfig { path: path.clone() }),
        IoResult::Written { result: Ok(()) }
    );
    assert!(
        files::lock_config(&path, Duration::ZERO)
            .expect("lock")
            .is_some(),
        "released"
    );
}

/// Markers found from the directory listing (or, in a huge directory, by `stat`) agree with
/// `stat` itself: links are followed, a broken link is absent, nested names work.
#[test]
fn probe_markers_agree_with_stat_for_links_nesting_and_huge_dirs() {
    let dir = TempDir::new("exec");
    let small = dir.0.join("small");
    let huge = dir.0.join("huge");
    for project in [&small, &huge] {
        std::fs::create_dir_all(project.join("sub/deeper")).expect("mkdir");
        std::fs::write(project.join("file"), "f").expect("write");
        std::fs::write(project.join("sub/x"), "x").expect("write");
        symlink(project.join("sub"), project.join("link-dir")).expect("symlink");
        symlink(project.join("file"), project.join("link-file")).expect("symlink");
        symlink(project.join("nowhere"), project.join("broken")).expect("symlink");
        std::fs::write(project.join(".mcp.json"), "{}").expect("write");
    }
    for i in 0..5000 {
        std::fs::write(huge.join(format!("n{i}")), "").expect("write");
    }
    let markers: Vec<String> = [
        "file",
        "sub",
        "sub/x",
        "sub/deeper",
        "link-dir",
        "link-file",
        "broken",
        "absent",
        "sub/absent",
        ".mcp.json",
        "n4999",
        ".",
        "",
    ]
    .map(String::from)
    .to_vec();
    let mut h = Harness::new();
    let IoResult::Probes { probes } = h.io(IoRequest::ProbeDirs {
        dirs: vec![small.clone(), huge.clone()],
        markers: markers.clone(),
        read: vec![".mcp.json".into(), "absent".into(), "sub/x".into()],
        max_bytes: 100,
    }) else {
        panic!("not probes")
    };
    for (probe, project) in probes.iter().zip([&small, &huge]) {
        let expected: BTreeMap<String, EntryKind> = markers
            .iter()
            .filter_map(|m| {
                let meta = std::fs::metadata(project.join(m)).ok()?;
                let kind = if meta.is_dir() {
                    EntryKind::Dir
                } else {
                    EntryKind::File
                };
                Some((m.clone(), kind))
            })
            .collect();
        assert_eq!(probe.markers, expected, "{}", project.display());
        assert_eq!(
            probe.files,
            BTreeMap::from([
                (".mcp.json".to_owned(), "{}".to_owned()),
                ("sub/x".to_owned(), "x".to_owned())
            ])
        );
    }
    assert!(
        probes[0].markers.contains_key("link-dir") && !probes[0].markers.contains_key("broken")
    );
    assert!(probes[1].markers.contains_key("n4999"));
}

#[test]
fn probe_reports_missing_file_and_dir_in_order() {
    let dir = TempDir::new("exec");
    let project = dir.0.join("web");
    std::fs::create_dir_all(project.join(".git")).expect("mkdir");
    // "hello ☃": the 8-byte cap falls inside the snowman, which is dropped, not mangled.
    std::fs::write(project.join("CLAUDE.md"), "hello ☃ world").expect("write");
    std::fs::write(project.join("package.json"), "{}").expect("write");
    let file = dir.0.join("notes.txt");
    std::fs::write(&file, "x").expect("write");
    let missing = dir.0.join("gone");
    let link = dir.0.join("web-link");
    symlink(&project, &link).expect("symlink");

    let mut h = Harness::new();
    let IoResult::Probes { probes } = h.io(IoRequest::ProbeDirs {
        dirs: vec![missing.clone(), file.clone(), link.clone()],
        markers: vec![".git".into(), "package.json".into(), "Cargo.toml".into()],
        read: vec!["CLAUDE.md".into(), "README.md".into(), ".git".into()],
        max_bytes: 8,
    }) else {
        panic!("not probes")
    };
    assert_eq!(probes.len(), 3);
    assert_eq!(
        (&probes[0].dir, &probes[0].state, &probes[0].resolved),
        (&missing, &DirState::Missing, &None)
    );
    assert_eq!(
        (&probes[1].dir, &probes[1].state),
        (&file, &DirState::NotADir)
    );
    assert!(probes[1].markers.is_empty() && probes[1].files.is_empty());
    assert_eq!(probes[2].dir, link);
    assert_eq!(probes[2].state, DirState::Dir);
    assert_eq!(probes[2].resolved.as_deref(), Some(project.as_path()));
    assert_eq!(
        probes[2].markers,
        BTreeMap::from([
            (".git".to_owned(), EntryKind::Dir),
            ("package.json".to_owned(), EntryKind::File)
        ])
    );
    assert_eq!(
        probes[2].files,
        BTreeMap::from([("CLAUDE.md".to_owned(), "hello ".to_owned())])
    );
}

/// Whether `pid` is a live (non-zombie) process.
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, None | Some("Z" | "X"))
}

const HELPER_ENV: &str = "AGENT_DISPATCH_TEST_HELPER";

/// Not a test: the "server" that `children_die_with_a_killed_server` kills with SIGKILL.
#[test]
#[ignore = "helper process, run by children_die_with_a_killed_server"]
fn helper_spawns_a_child_and_hangs() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return;
    }
    let mut h = Harness::new();
    h.spawn(1, spec(&fake_claude(), &["sleep"]));
    let Input::Spawned { pid: Some(pid), .. } = h.next() else {
        panic!("not spawned")
    };
    // On a line of its own: libtest has already printed "test ... " without a newline.
    println!("\nhelper-child {pid}");
    std::thread::sleep(WAIT);
}

#[cfg(target_os = "linux")]
#[test]
fn children_die_with_a_killed_server() {
    use std::io::BufRead;
    let mut helper = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "helper_spawns_a_child_and_hangs",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start helper");
    let stdout = std::io::BufReader::new(helper.stdout.take().expect("stdout"));
    let child: u32 = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            line.strip_prefix("helper-child ")
                .and_then(|pid| pid.trim().parse().ok())
        })
        .expect("the helper reports its child");
    assert!(alive(child));
    helper.kill().expect("kill -9 the helper");
    helper.wait().expect("reap the helper");
    wait_until("the orphaned child to die", || !alive(child));
}
