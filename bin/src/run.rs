//! Running another program (`claude`) with a time limit, argv value by value, never a shell.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// How long to wait for the output pipes to close after the program exited.
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// What a finished program said.
#[derive(Debug)]
pub struct Ran {
    /// Its exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Exit code 0.
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// stderr, else stdout, trimmed: what to show when it failed.
    pub fn complaint(&self) -> String {
        let text = if self.stderr.trim().is_empty() {
            self.stdout.trim()
        } else {
            self.stderr.trim()
        };
        if text.is_empty() {
            match self.code {
                Some(code) => format!("exit code {code}, no output"),
                None => "killed by a signal, no output".to_owned(),
            }
        } else {
            text.to_owned()
        }
    }
}

/// Runs `program args...` with a null stdin and captured output. Killed and an error after
/// `limit`.
pub fn run(program: &Path, args: &[&str], limit: Duration) -> Result<Ran, String> {
    let shown = program.display();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    let out = child.stdout.take().map(reader);
    let err = child.stderr.take().map(reader);
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < limit => thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{shown} {} did not finish within {} s",
                    args.join(" "),
                    limit.as_secs()
                ));
            }
            Err(e) => return Err(format!("cannot wait for {shown}: {e}")),
        }
    };
    // A grandchild may still hold the pipes: take what is there without waiting for ever.
    let collect = |rx: Option<mpsc::Receiver<String>>| {
        rx.and_then(|rx| rx.recv_timeout(PIPE_GRACE).ok())
            .unwrap_or_default()
    };
    Ok(Ran {
        code: status.code(),
        stdout: collect(out),
        stderr: collect(err),
    })
}

fn reader<R: Read + Send + 'static>(mut pipe: R) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    rx
}
