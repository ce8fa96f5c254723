//! `pidfile`: the contents of a pidfile, which the daemon (or anyone who can write there)
//! chose.
//!
//! What must hold: a PID read is one corrald may watch and signal (above 1, and a valid
//! `pid_t`, since it is handed to `pidfd_open(2)` and `kill(2)`); it is the number the file
//! spells; and the PID as a daemon writes it (`"1234\n"`) reads back as itself.

use corral::process::pidfile::parse;

pub fn check(data: &[u8]) {
    // `read` refuses a file that is not UTF-8 before parsing it.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(pid) = parse(text) else {
        return;
    };
    assert!(pid > 1, "{text:?} read as PID {pid}");
    assert!(
        libc::pid_t::try_from(pid).is_ok(),
        "{text:?} read as {pid}, which is no pid_t"
    );
    let digits = text.trim().trim_start_matches('+').trim_start_matches('0');
    assert_eq!(digits, pid.to_string(), "{text:?} read as {pid}");
    assert_eq!(parse(&format!("{pid}\n")), Some(pid));
}
