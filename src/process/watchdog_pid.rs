//! `WATCHDOG_PID`: the PID that is to send `WATCHDOG=1`, in the child's own environment.
//!
//! The value is the child's own PID, which exists only once the child does. systemd writes
//! it into the environment it builds in the child after `fork`. `std::process::Command`
//! fixes the environment before the fork — and on its fast path (`posix_spawn`) there is
//! no "after the fork" to run code in at all. So a service with a watchdog is forked (a
//! `pre_exec` hook, the path `user` takes too), and the hook performs the `execve`
//! itself: the program, its argv and the environment the command was given, plus
//! `WATCHDOG_PID=<getpid()>` written into a buffer prepared before the fork. Nothing is
//! allocated after the fork; `getpid` and `execve` are async-signal-safe. If the `execve`
//! fails, the hook returns its error and std reports it to the parent as a failed spawn.
//!
//! Why set it at all: `sd_watchdog_enabled()` accepts a missing `WATCHDOG_PID`, but then
//! every process that inherits the environment (a helper the daemon runs) believes it
//! owns the watchdog too. With the variable set, only the main process does.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

const KEY: &[u8] = b"WATCHDOG_PID=";
/// `KEY`, the 20 digits of the largest `u64`, and the NUL.
const SLOT_LEN: usize = KEY.len() + 20 + 1;

/// Makes `command` exec `program` with `argv` (argv[0] included) in the environment it
/// has now plus `WATCHDOG_PID=<the child's PID>`. Call it last: environment variables set
/// afterwards would be ignored, and `pre_exec` hooks added afterwards would never run.
pub(crate) fn exec_with_own_pid(
    command: &mut Command,
    program: &Path,
    argv: &[String],
) -> io::Result<()> {
    let mut exec = Exec::prepare(command, program, argv)?;
    // SAFETY: the hook runs in the forked child before exec; `Exec::run` only writes into
    // memory prepared before the fork and calls getpid and execve, both async-signal-safe.
    unsafe {
        command.pre_exec(move || Err(exec.run()));
    }
    Ok(())
}

/// Everything the child's `execve` needs, built before the fork.
struct Exec {
    program: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _env: Vec<CString>,
    /// `WATCHDOG_PID=` and room for the digits; written only through `slot_ptr`.
    _slot: Vec<u8>,
    slot_ptr: *mut u8,
    env_ptrs: Vec<*const libc::c_char>,
}

// SAFETY: the raw pointers point into the buffers `Exec` owns; they are only read (and the
// slot written) in the forked child, where no other thread exists.
unsafe impl Send for Exec {}
unsafe impl Sync for Exec {}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte"))
}

impl Exec {
    fn prepare(command: &Command, program: &Path, argv: &[String]) -> io::Result<Exec> {
        let program = c_string(program.as_os_str().as_bytes())?;
        let argv: Vec<CString> = argv
            .iter()
            .map(|arg| c_string(arg.as_bytes()))
            .collect::<io::Result<_>>()?;
        let env: Vec<CString> = command
            .get_envs()
            .filter(|(key, _)| *key != OsStr::new("WATCHDOG_PID"))
            .filter_map(|(key, value)| Some((key, value?)))
            .map(|(key, value)| {
                let mut pair = key.as_bytes().to_vec();
                pair.push(b'=');
                pair.extend_from_slice(value.as_bytes());
                c_string(&pair)
            })
            .collect::<io::Result<_>>()?;
        let mut slot = vec![0u8; SLOT_LEN];
        slot[..KEY.len()].copy_from_slice(KEY);
        let slot_ptr = slot.as_mut_ptr();
        let argv_ptrs = argv
            .iter()
            .map(|a| a.as_ptr())
            .chain([std::ptr::null()])
            .collect();
        let env_ptrs = env
            .iter()
            .map(|e| e.as_ptr())
            .chain([slot_ptr as *const libc::c_char, std::ptr::null()])
            .collect();
        Ok(Exec {
            program,
            _argv: argv,
            argv_ptrs,
            _env: env,
            _slot: slot,
            slot_ptr,
            env_ptrs,
        })
    }

    /// In the child: writes its PID into the slot and execs. Returns only on failure.
    fn run(&mut self) -> io::Error {
        // SAFETY: getpid cannot fail; the slot has room for every u64 and its NUL, and the
        // pointers stay valid as long as `self` lives, which outlives the call.
        unsafe {
            let pid = libc::getpid() as u64;
            let mut digits = [0u8; 20];
            let mut n = 0;
            let mut rest = pid;
            loop {
                digits[n] = b'0' + (rest % 10) as u8;
                n += 1;
                rest /= 10;
                if rest == 0 {
                    break;
                }
            }
            for i in 0..n {
                *self.slot_ptr.add(KEY.len() + i) = digits[n - 1 - i];
            }
            *self.slot_ptr.add(KEY.len() + n) = 0;
            libc::execve(
                self.program.as_ptr(),
                self.argv_ptrs.as_ptr(),
                self.env_ptrs.as_ptr(),
            );
        }
        io::Error::last_os_error()
    }
}
