//! What corrald's steps between fork and exec cost per spawn (README "Resources and
//! cgroups"; `process::vfork` explains the choice this measurement made).
//!
//! std's `Command` spawns with `posix_spawn` (a vfork-like clone that shares the parent's
//! memory) unless a `pre_exec` hook is set; then it forks, which copies the parent's page
//! tables. corrald needs such steps for every service (join a cgroup, give the descriptor
//! limit back), so this compares, on this machine and for a parent as big as corrald gets:
//!
//! ```sh
//! cargo run --release --example spawn_cost -- [N] [RSS_MB]
//! ```
//! spawns `/bin/sleep 1000` N times (default 1000) one after another — each spawn returns
//! once the child has exec'd — in four ways, alternated over 3 rounds, then kills them:
//! `posix_spawn` (no hook), `fork` with an empty hook, `fork` with corrald's steps
//! (setrlimit NOFILE to 1024, umask, and — as root with a writable cgroup v2 — joining a
//! cgroup through an fd of its `cgroup.procs`), and the same steps in a
//! `clone(CLONE_VM | CLONE_VFORK)` child, which is what corrald does. RSS_MB (default 20,
//! corrald's size with 1000 services) is allocated and touched first so that a fork has as
//! much to copy. Prints the median ms per 1000 spawns of each way as JSON.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

#[derive(Clone, Copy, Debug)]
enum Way {
    PosixSpawn,
    EmptyHook,
    CorralHook,
    CloneVm,
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(1000, |a| a.parse().expect("N"));
    let rss_mb: usize = args.next().map_or(20, |a| a.parse().expect("RSS_MB"));
    // Touch every page so it is mapped and the fork has page tables to copy.
    let ballast: Vec<u8> = (0..rss_mb << 20).map(|i| i as u8).collect();
    let cgroup = scratch_cgroup();
    let procs: Option<OwnedFd> = cgroup.as_ref().map(|dir| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))
            .expect("open cgroup.procs")
            .into()
    });
    let procs_fd = procs.as_ref().map(AsRawFd::as_raw_fd);

    let ways = [
        Way::PosixSpawn,
        Way::EmptyHook,
        Way::CorralHook,
        Way::CloneVm,
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); ways.len()];
    for _round in 0..3 {
        for (i, &way) in ways.iter().enumerate() {
            let started = Instant::now();
            if let Way::CloneVm = way {
                let pids: Vec<i32> = (0..n).map(|_| clone_vm_spawn(procs_fd)).collect();
                let ms = started.elapsed().as_secs_f64() * 1000.0 * 1000.0 / n as f64;
                samples[i].push(ms);
                for pid in pids {
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                        libc::waitpid(pid, std::ptr::null_mut(), 0);
                    }
                }
                continue;
            }
            let children: Vec<Child> = (0..n).map(|_| spawn(way, procs_fd)).collect();
            let ms = started.elapsed().as_secs_f64() * 1000.0 * 1000.0 / n as f64;
            samples[i].push(ms);
            for mut child in children {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    drop(procs);
    if let Some(dir) = &cgroup {
        let _ = std::fs::remove_dir(dir);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{{\"n\": {n}, \"rss_mb\": {rss_mb}, \"ballast\": {}, \"cgroup\": {}, \
         \"posix_spawn_ms_per_1000\": {:.0}, \"fork_empty_hook_ms_per_1000\": {:.0}, \
         \"fork_corral_hook_ms_per_1000\": {:.0}, \"clone_vm_hook_ms_per_1000\": {:.0}}}",
        ballast.len() >> 20,
        cgroup.is_some(),
        median(&mut samples[0]),
        median(&mut samples[1]),
        median(&mut samples[2]),
        median(&mut samples[3]),
    );
}

fn spawn(way: Way, procs: Option<i32>) -> Child {
    let mut command = Command::new("/bin/sleep");
    command
        .arg("1000")
        .env_clear()
        .process_group(0)
        .stdin(Stdio::null());
    match way {
        Way::PosixSpawn | Way::CloneVm => {}
        // SAFETY: the hooks only make async-signal-safe syscalls.
        Way::EmptyHook => unsafe {
            command.pre_exec(|| Ok(()));
        },
        Way::CorralHook => unsafe {
            command.pre_exec(move || {
                if let Some(fd) = procs
                    && libc::write(fd, b"0".as_ptr().cast(), 1) != 1
                {
                    return Err(std::io::Error::last_os_error());
                }
                let mut limit = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
                limit.rlim_cur = limit.rlim_cur.min(1024);
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::umask(0o022);
                Ok(())
            });
        },
    }
    command.spawn().expect("spawn /bin/sleep")
}

/// A fresh cgroup to join, when there is a writable cgroup v2 hierarchy.
fn scratch_cgroup() -> Option<PathBuf> {
    let root = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|dir| {
            dir.join("cgroup.procs").exists() && dir.join("cgroup.subtree_control").exists()
        })?;
    let dir = root.join(format!("corral-spawn-cost-{}", std::process::id()));
    std::fs::create_dir(&dir).ok()?;
    Some(dir)
}

struct VmArgs {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    procs: i32,
    err: i32,
}

extern "C" fn vm_child(arg: *mut libc::c_void) -> libc::c_int {
    unsafe {
        let a = &mut *(arg as *mut VmArgs);
        libc::setpgid(0, 0);
        if a.procs >= 0 && libc::write(a.procs, b"0".as_ptr().cast(), 1) != 1 {
            a.err = *libc::__errno_location();
            libc::_exit(127);
        }
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_cur.min(1024);
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::umask(0o022);
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::execve(a.path, a.argv, a.envp);
        a.err = *libc::__errno_location();
        libc::_exit(127);
    }
}

fn clone_vm_spawn(procs: Option<i32>) -> i32 {
    let path = c"/bin/sleep";
    let arg1 = c"1000";
    let argv = [path.as_ptr(), arg1.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    let mut args = VmArgs {
        path: path.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        procs: procs.unwrap_or(-1),
        err: 0,
    };
    const STACK: usize = 64 << 10;
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let stack = libc::mmap(
            std::ptr::null_mut(),
            STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
            -1,
            0,
        );
        let pid = libc::clone(
            vm_child,
            (stack as *mut u8).add(STACK).cast(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&mut args as *mut VmArgs).cast(),
        );
        libc::munmap(stack, STACK);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        assert!(pid > 0 && args.err == 0, "clone: {pid} {}", args.err);
        pid
    }
}
