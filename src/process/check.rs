//! One health check by command (`[services.X.health] exec = [...]`): run like an `exec`
//! manager method (the service's environment, user and working directory), but in a
//! process group of its own, so a check that hangs past its timeout is killed with
//! everything it started. Its stdout and stderr share one pipe, so "the last line of its
//! output" is the last line it wrote, whichever stream it used.

use std::os::fd::OwnedFd;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use super::command::command;
use super::signal::signal_group;
use crate::config::Service;
use crate::config::duration::format_duration;

/// How much of a check's output is kept: the end, where its verdict usually is.
const TAIL: usize = 4096;

/// Runs `argv` as a health check of `spec`: `Ok` when it exits 0 within `timeout`, else a
/// sentence saying how it failed, ending with the last line of its output.
pub async fn run(spec: &Service, argv: &[String], timeout: Duration) -> Result<(), String> {
    let (writer, reader) = pipe::pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
    let writer: OwnedFd = writer
        .into_blocking_fd()
        .map_err(|e| format!("cannot make a pipe: {e}"))?;
    let mut command = command(spec, argv, &[])?;
    let stderr = writer
        .try_clone()
        .map_err(|e| format!("cannot make a pipe: {e}"))?;
    command
        .process_group(0)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(stderr));
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    // The command holds our copies of the pipe's write end: without dropping it, the
    // reader would never see the end of the output.
    drop(command);
    let group = KillOnDrop(child.id().unwrap_or(0));
    let finished = async {
        let waited = async {
            let status = child.wait().await;
            // Whatever the check left behind in its group goes with it, so nothing keeps
            // the pipe open.
            let _ = signal_group(group.0, Signal::SIGKILL);
            status
        };
        tokio::join!(waited, read_tail(reader))
    };
    let (status, output) = match tokio::time::timeout(timeout, finished).await {
        Ok(done) => done,
        // Dropping `group` kills the whole group; tokio reaps the child.
        Err(_) => {
            return Err(format!(
                "did not finish within {} (timeout)",
                format_duration(timeout)
            ));
        }
    };
    group.disarm();
    let status = status.map_err(|e| format!("cannot wait for {}: {e}", argv[0]))?;
    if status.success() {
        return Ok(());
    }
    let how = match (
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    ) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => match Signal::try_from(signal) {
            Ok(signal) => format!("was killed by {signal}"),
            Err(_) => format!("was killed by signal {signal}"),
        },
        _ => "failed".to_owned(),
    };
    Err(match last_line(&output) {
        Some(line) => format!("{how}: {line}"),
        None => how,
    })
}

/// Reads the pipe to its end, keeping the last [`TAIL`] bytes.
async fn read_tail(mut reader: pipe::Receiver) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * TAIL {
                    kept.drain(..kept.len() - TAIL);
                }
            }
        }
    }
}

/// The last non-blank line of `output`, trimmed and at most 200 characters.
pub fn last_line(output: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(output);
    let line = text.lines().map(str::trim).rfind(|l| !l.is_empty())?;
    Some(line.chars().take(200).collect())
}

/// The check's process group, killed if the check is dropped unfinished (its timeout, or
/// the service stopped meanwhile).
struct KillOnDrop(u32);

impl KillOnDrop {
    fn disarm(mut self) {
        self.0 = 0;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0 > 1 {
            let _ = signal_group(self.0, Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Service {
        Service {
            exec: vec!["x".into()],
            ..Service::default()
        }
    }

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[tokio::test]
    async fn a_check_passes_on_exit_zero_and_fails_with_its_last_line() {
        let timeout = Duration::from_secs(30);
        assert_eq!(run(&spec(), &sh("echo fine"), timeout).await, Ok(()));
        assert_eq!(
            run(
                &spec(),
                &sh("echo one; echo two >&2; echo; exit 3"),
                timeout
            )
            .await,
            Err("exited with status 3: two".to_owned())
        );
        assert_eq!(
            run(&spec(), &sh("kill -9 $$"), timeout).await,
            Err("was killed by SIGKILL".to_owned())
        );
        let missing = run(&spec(), &["no-such-check-xyz".into()], timeout).await;
        assert!(
            missing.as_ref().unwrap_err().contains("no-such-check-xyz"),
            "{missing:?}"
        );
    }

    #[tokio::test]
    async fn a_check_that_hangs_is_killed_with_its_group_at_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let script = format!("sleep 1000 & echo $! > {}; wait", pids.display());
        let outcome = run(&spec(), &sh(&script), Duration::from_millis(500)).await;
        assert_eq!(
            outcome,
            Err("did not finish within 500ms (timeout)".to_owned())
        );
        let helper: i32 = std::fs::read_to_string(&pids)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The helper was SIGKILLed with the group: gone, or a zombie nobody reaped yet.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let stat = std::fs::read_to_string(format!("/proc/{helper}/stat"));
            let state = stat
                .as_deref()
                .ok()
                .and_then(|s| s.rsplit_once(") "))
                .map(|(_, r)| &r[..1]);
            if matches!(state, None | Some("Z" | "X")) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "helper survived: {state:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_background_leftover_does_not_hold_the_check_open() {
        // The check exits at once but leaves a child holding its output pipe.
        let outcome = run(
            &spec(),
            &sh("sleep 1000 & echo leaving; exit 1"),
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(outcome, Err("exited with status 1: leaving".to_owned()));
    }

    #[test]
    fn the_last_line_is_trimmed_and_bounded() {
        assert_eq!(last_line(b"a\n  b  \n\n"), Some("b".into()));
        assert_eq!(last_line(b"\n \n"), None);
        assert_eq!(last_line(&[b'x'; 500]).unwrap().len(), 200);
    }
}
