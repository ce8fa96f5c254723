//! The fence as the real binary runs it (`corrald --fence`): what its stdin names dies when
//! stdin ends, what was unguarded lives, and the signals that stop a terminal's or a
//! service manager's processes do not stop it first.

use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[test]
fn end_of_input_kills_the_guarded_and_spares_the_rest() {
    let spawn_group = || {
        Command::new("sleep")
            .arg("1000")
            .process_group(0)
            .spawn()
            .unwrap()
    };
    let mut guarded = spawn_group();
    let mut released = spawn_group();
    let mut alone = Command::new("sleep").arg("1001").spawn().unwrap();
    let mut fence = Command::new(env!("CARGO_BIN_EXE_corrald"))
        .arg("--fence")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = fence.stdin.take().unwrap();
    writeln!(input, "guard group {}", guarded.id()).unwrap();
    writeln!(input, "guard group {}", released.id()).unwrap();
    writeln!(input, "unguard group {}", released.id()).unwrap();
    writeln!(input, "guard nonsense").unwrap();
    input.flush().unwrap();
    // What stops a terminal's or systemd's processes does not stop the fence: it is
    // still there afterwards to act on the rest of its input. (Once it ignores them: a
    // process has no event for that, so the test looks.)
    let ignores = |signals: &[Signal]| {
        let status = std::fs::read_to_string(format!("/proc/{}/status", fence.id())).unwrap();
        let mask = status
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
            .unwrap();
        signals.iter().all(|s| mask & (1 << (*s as u64 - 1)) != 0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !ignores(&[Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP]) {
        assert!(
            std::time::Instant::now() < deadline,
            "the fence never set up"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        kill(Pid::from_raw(fence.id() as i32), signal).unwrap();
    }
    writeln!(input, "guard process {}", alone.id()).unwrap();
    drop(input);

    let output = fence.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("corrald is gone"), "{log}");
    assert!(log.contains("ignoring a message"), "{log}");
    assert_eq!(guarded.wait().unwrap().signal(), Some(9));
    assert_eq!(alone.wait().unwrap().signal(), Some(9));
    assert_eq!(
        released.try_wait().unwrap(),
        None,
        "unguarded: left running"
    );
    released.kill().unwrap();
    released.wait().unwrap();
}
