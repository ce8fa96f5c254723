//! `notify`: parsing an sd_notify datagram, as a service may send anything.
//!
//! What must hold: every message is one the datagram's lines spell (one per line at most);
//! a `MAINPID=` is a PID corrald may signal (above 1, and a valid `pid_t`: the supervisor
//! hands it to `kill(2)`, where -1 means "every process"); a `STATUS=` text is one line;
//! and the messages, written back as a datagram, parse to themselves.

use corral::process::notify::{NotifyMessage, parse};

pub fn check(data: &[u8]) {
    let messages = parse(data);
    let lines = data.split(|&b| b == b'\n').count();
    assert!(messages.len() <= lines, "{messages:?} from {lines} lines");
    let mut rewritten = String::new();
    for message in &messages {
        match message {
            NotifyMessage::Ready => rewritten.push_str("READY=1"),
            NotifyMessage::Stopping => rewritten.push_str("STOPPING=1"),
            NotifyMessage::Status(text) => {
                assert!(!text.contains('\n'), "{text:?} is more than one line");
                rewritten.push_str(&format!("STATUS={text}"));
            }
            NotifyMessage::MainPid(pid) => {
                assert!(*pid > 1, "MAINPID={pid} names init or no process");
                assert!(
                    libc::pid_t::try_from(*pid).is_ok(),
                    "MAINPID={pid} is no pid_t: kill({}) is not that process",
                    *pid as libc::pid_t
                );
                rewritten.push_str(&format!("MAINPID={pid}"));
            }
            NotifyMessage::Watchdog => rewritten.push_str("WATCHDOG=1"),
            NotifyMessage::WatchdogTrigger => rewritten.push_str("WATCHDOG=trigger"),
            NotifyMessage::WatchdogUsec(usec) => {
                rewritten.push_str(&format!("WATCHDOG_USEC={usec}"))
            }
            NotifyMessage::ExtendTimeoutUsec(usec) => {
                rewritten.push_str(&format!("EXTEND_TIMEOUT_USEC={usec}"))
            }
        }
        rewritten.push('\n');
    }
    assert_eq!(
        parse(rewritten.as_bytes()),
        messages,
        "{rewritten:?} does not parse back to the messages it was written from"
    );
}
