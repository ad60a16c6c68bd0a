//! The real executor: each unit runs in a child `specsweep worker` process with a timeout, so a
//! crash, a hang or an out-of-memory kill costs one failure record and never the sweep.
//!
//! Protocol: the job goes to the child's stdin as JSON; the child prints one
//! [`WorkerMessage`] per stdout line; stderr is kept (last lines) for
//! failure messages and written to a per-unit log. Classification of an unsuccessful end:
//! deadline passed → `Timeout` (the child is killed); stderr mentions an allocation failure, or
//! the child died of SIGKILL not sent by us (the kernel OOM killer's signal) → `OutOfMemory`;
//! any other signal or a panic (exit code 101) → `Crash`; any other non-zero exit → `Error`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use specsweep_reports::schema::FailureCause;

use crate::executor::{Executor, UnitOutcome};
use crate::job::{UnitJob, WorkerMessage};

/// Lines of stderr kept for failure messages.
const STDERR_TAIL: usize = 20;

/// Runs units in child processes.
pub struct ProcessExecutor {
    /// The program and arguments of the worker (normally this binary and `worker`).
    pub program: PathBuf,
    pub args: Vec<String>,
    pub timeout: Duration,
    /// Set by Ctrl-C: the child is killed and the unit reported as interrupted.
    pub stop: Arc<AtomicBool>,
    /// Directory for per-unit stderr logs (`<cell>-r<rep>.log`), if any.
    pub log_dir: Option<PathBuf>,
}

impl ProcessExecutor {
    /// A worker executor running this very binary as `specsweep worker`.
    pub fn this_binary(
        timeout: Duration,
        stop: Arc<AtomicBool>,
        log_dir: Option<PathBuf>,
    ) -> std::io::Result<ProcessExecutor> {
        Ok(ProcessExecutor {
            program: std::env::current_exe()?,
            args: vec!["worker".into()],
            timeout,
            stop,
            log_dir,
        })
    }
}

enum Line {
    Stdout(String),
    Eof,
}

impl Executor for ProcessExecutor {
    fn run(&mut self, job: &UnitJob, on_tokens: &mut dyn FnMut(u64)) -> UnitOutcome {
        let fail = |cause, message: String| UnitOutcome::Failed { cause, message };
        let mut child = match Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a terminal's Ctrl-C reaches only the harness, which then
            // stops the worker itself (and never mistakes the worker's death for a crash).
            .process_group(0)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                return fail(
                    FailureCause::Error,
                    format!("cannot start worker {}: {e}", self.program.display()),
                );
            }
        };
        let deadline = Instant::now() + self.timeout;
        // Send the job on a thread: a worker that dies early must not block us on a full pipe.
        let job_json = serde_json::to_vec(job).unwrap_or_default();
        let stdin = child.stdin.take();
        std::thread::spawn(move || {
            if let Some(mut stdin) = stdin {
                let _ = stdin.write_all(&job_json);
            }
        });
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let stderr_thread = child.stderr.take().map(|stderr| {
            let tail = Arc::clone(&stderr_tail);
            let log = self
                .log_dir
                .as_ref()
                .map(|d| d.join(format!("{}-r{}.log", job.cell_id, job.repetition)));
            std::thread::spawn(move || {
                let mut log = log.and_then(|p| std::fs::File::create(p).ok());
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(f) = log.as_mut() {
                        let _ = writeln!(f, "{line}");
                    }
                    let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                    if tail.len() == STDERR_TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            })
        });
        let (tx, rx) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if tx.send(Line::Stdout(line)).is_err() {
                        return;
                    }
                }
                let _ = tx.send(Line::Eof);
            });
        }
        let mut records = Vec::new();
        let mut load_ms = None;
        let mut protocol_error: Option<String> = None;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                kill(&mut child);
                return UnitOutcome::Interrupted;
            }
            let now = Instant::now();
            if now >= deadline {
                kill(&mut child);
                return fail(
                    FailureCause::Timeout,
                    format!(
                        "no result within the cell timeout of {:.0} s (worker killed)",
                        self.timeout.as_secs_f64()
                    ),
                );
            }
            match rx.recv_timeout((deadline - now).min(Duration::from_millis(100))) {
                Ok(Line::Stdout(line)) => match serde_json::from_str::<WorkerMessage>(&line) {
                    Ok(WorkerMessage::Tokens { n }) => on_tokens(n),
                    Ok(WorkerMessage::Loaded { load_ms: ms }) => load_ms = Some(ms),
                    Ok(WorkerMessage::Record(r)) => records.push(*r),
                    Err(e) => {
                        protocol_error.get_or_insert(format!("unreadable worker output line: {e}"));
                    }
                },
                Ok(Line::Eof) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        // stdout closed: the child is exiting; wait for it, still honouring the deadline.
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() >= deadline => {
                    kill(&mut child);
                    return fail(
                        FailureCause::Timeout,
                        "worker did not exit within the cell timeout".into(),
                    );
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => {
                    return fail(
                        FailureCause::Error,
                        format!("cannot wait for the worker: {e}"),
                    );
                }
            }
        };
        if let Some(t) = stderr_thread {
            let _ = t.join();
        }
        let tail: Vec<String> = stderr_tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        if status.success() {
            return match protocol_error {
                Some(e) => fail(FailureCause::Error, e),
                None => UnitOutcome::Done { records, load_ms },
            };
        }
        if self.stop.load(Ordering::SeqCst) || status.signal() == Some(2) {
            // Interrupted (SIGINT sent to the worker directly): not a failure of the cell.
            return UnitOutcome::Interrupted;
        }
        let (cause, message) = classify(status, &tail);
        fail(cause, message)
    }
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Failure cause and one-line message for an unsuccessful exit with stderr `tail`.
pub fn classify(status: ExitStatus, tail: &[String]) -> (FailureCause, String) {
    let last = tail
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string());
    let oom_text = tail.iter().any(|l| {
        let l = l.to_lowercase();
        l.contains("memory allocation of")
            || l.contains("out of memory")
            || l.contains("cannot allocate memory")
    });
    let with_last = |head: String| match &last {
        Some(l) => format!("{head}: {l}"),
        None => head,
    };
    if oom_text {
        return (FailureCause::OutOfMemory, with_last("out of memory".into()));
    }
    if let Some(signal) = status.signal() {
        let name = match signal {
            9 => "SIGKILL",
            6 => "SIGABRT",
            11 => "SIGSEGV",
            7 => "SIGBUS",
            4 => "SIGILL",
            8 => "SIGFPE",
            15 => "SIGTERM",
            2 => "SIGINT",
            _ => "signal",
        };
        if signal == 9 {
            return (
                FailureCause::OutOfMemory,
                format!("killed by signal 9 ({name}), the kernel OOM killer's signal"),
            );
        }
        return (
            FailureCause::Crash,
            with_last(format!("killed by signal {signal} ({name})")),
        );
    }
    match status.code() {
        Some(101) => (
            FailureCause::Crash,
            with_last("worker panicked (exit 101)".into()),
        ),
        Some(code) => (
            FailureCause::Error,
            with_last(format!("worker exited with status {code}")),
        ),
        None => (FailureCause::Crash, "worker ended without a status".into()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::executor::mock_records;
    use crate::job::JobPrompt;
    use crate::suite::{Message, Prompt, Role};

    fn job() -> UnitJob {
        UnitJob {
            sweep: "t".into(),
            cell_id: "c".into(),
            cell: BTreeMap::new(),
            baseline_cell_id: None,
            repetition: 0,
            seed: 1,
            warmup: 0,
            model_paths: BTreeMap::new(),
            prompts: vec![JobPrompt {
                suite: "s".into(),
                suite_sha256: "x".into(),
                prompt: Prompt {
                    id: "p".into(),
                    category: "c".into(),
                    messages: vec![Message {
                        role: Role::User,
                        content: "hi".into(),
                    }],
                    max_new_tokens: None,
                },
            }],
        }
    }

    fn shell(script: &str, timeout_ms: u64) -> ProcessExecutor {
        ProcessExecutor {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            timeout: Duration::from_millis(timeout_ms),
            stop: Arc::new(AtomicBool::new(false)),
            log_dir: None,
        }
    }

    fn cause(outcome: UnitOutcome) -> FailureCause {
        match outcome {
            UnitOutcome::Failed { cause, .. } => cause,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn reads_the_protocol() {
        let record = serde_json::to_string(&WorkerMessage::Record(Box::new(
            mock_records(&job(), None).remove(0),
        )))
        .unwrap();
        let script = format!(
            "cat >/dev/null; echo '{{\"event\":\"loaded\",\"load_ms\":5.0}}'; echo '{{\"event\":\"tokens\",\"n\":8}}'; echo '{record}'"
        );
        let mut tokens = 0;
        match shell(&script, 10_000).run(&job(), &mut |n| tokens += n) {
            UnitOutcome::Done { records, load_ms } => {
                assert_eq!(records.len(), 1);
                assert_eq!(load_ms, Some(5.0));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(tokens, 8);
    }

    #[test]
    fn failures_are_classified() {
        assert_eq!(
            cause(shell("sleep 5", 200).run(&job(), &mut |_| {})),
            FailureCause::Timeout
        );
        assert_eq!(
            cause(shell("kill -9 $$", 10_000).run(&job(), &mut |_| {})),
            FailureCause::OutOfMemory
        );
        assert_eq!(
            cause(shell("kill -SEGV $$", 10_000).run(&job(), &mut |_| {})),
            FailureCause::Crash
        );
        assert_eq!(
            cause(
                shell(
                    "echo 'memory allocation of 99 bytes failed' >&2; kill -ABRT $$",
                    10_000
                )
                .run(&job(), &mut |_| {})
            ),
            FailureCause::OutOfMemory
        );
        assert_eq!(
            cause(shell("echo boom >&2; exit 101", 10_000).run(&job(), &mut |_| {})),
            FailureCause::Crash
        );
        match shell("echo 'error: bad model' >&2; exit 2", 10_000).run(&job(), &mut |_| {}) {
            UnitOutcome::Failed { cause, message } => {
                assert_eq!(cause, FailureCause::Error);
                assert_eq!(message, "worker exited with status 2: error: bad model");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            cause(shell("echo not-json", 10_000).run(&job(), &mut |_| {})),
            FailureCause::Error
        );
    }

    #[test]
    fn stop_flag_kills_the_child() {
        let exec = shell("sleep 30", 60_000);
        exec.stop.store(true, Ordering::SeqCst);
        let mut exec = exec;
        let started = Instant::now();
        assert_eq!(exec.run(&job(), &mut |_| {}), UnitOutcome::Interrupted);
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}
