//! corrald's side of the fence: one task that owns the pipe's write end and the fence
//! process, turns each service's targets into `guard`/`unguard` lines, and starts a new
//! fence (sending it everything again) if the one it has dies.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until, timeout};

use super::wire::{Message, Target};
use super::{FenceDescriptor, FenceHandle};
use crate::process::pidfd::ProcessWatch;

type Answer = oneshot::Sender<io::Result<FenceDescriptor>>;

pub(super) enum Request {
    Set {
        service: String,
        targets: Vec<Target>,
    },
    Flush(Answer),
    Inherit(Answer),
    Resync(Answer),
    Shutdown(oneshot::Sender<()>),
}

/// A live fence: the write end of its pipe and the way to learn that it exited.
pub(super) struct Running {
    pipe: pipe::Sender,
    pid: u32,
    exit: Exit,
}

enum Exit {
    /// Spawned by this corrald image: tokio reaps it.
    Spawned(tokio::process::Child),
    /// Inherited across an exec: a task awaits its pidfd and reaps it.
    Adopted(oneshot::Receiver<()>),
}

impl Running {
    /// Starts `program --fence` on a new pipe.
    pub fn spawn(program: &Path) -> io::Result<Running> {
        // Both ends close on exec: the read end becomes the fence's stdin (dup2 clears the
        // flag there), the write end stays corrald's alone.
        let (read, write) = io::pipe()?;
        let child = tokio::process::Command::new(program)
            // `ps` shows "corrald --fence", whatever path the program was started by.
            .arg0("corrald")
            .arg("--fence")
            .env_clear()
            .stdin(Stdio::from(read))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let pid = child.id().unwrap_or(0);
        let pipe = pipe::Sender::from_owned_fd(OwnedFd::from(write))?;
        tracing::info!(pid, "started the fence");
        Ok(Running {
            pipe,
            pid,
            exit: Exit::Spawned(child),
        })
    }

    /// The fence a previous image of this process left.
    ///
    /// # Safety
    ///
    /// `descriptor.fd` is that fence's write end, owned by nobody else in this process.
    pub unsafe fn adopt(descriptor: FenceDescriptor) -> io::Result<Running> {
        // SAFETY: guaranteed by the caller.
        let fd = unsafe { OwnedFd::from_raw_fd(descriptor.fd) };
        fcntl(&fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
        let pipe = pipe::Sender::from_owned_fd(fd)?;
        let watch = ProcessWatch::open(descriptor.pid)?;
        let (exited, exit) = oneshot::channel();
        let pid = descriptor.pid;
        tokio::spawn(async move {
            let _ = watch.exited().await;
            // Our child still (same PID across the exec): reap it.
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None);
            let _ = exited.send(());
        });
        Ok(Running {
            pipe,
            pid,
            exit: Exit::Adopted(exit),
        })
    }

    fn descriptor(&self) -> FenceDescriptor {
        FenceDescriptor {
            fd: self.pipe.as_raw_fd(),
            pid: self.pid,
        }
    }
}

impl Exit {
    /// Resolves when the fence process has exited (cancel-safe).
    async fn wait(&mut self) {
        match self {
            Exit::Spawned(child) => {
                let _ = child.wait().await;
            }
            Exit::Adopted(exit) => {
                let _ = exit.await;
            }
        }
    }
}

pub(super) struct Keeper {
    program: PathBuf,
    /// Each service's targets as the fence knows them.
    guarded: HashMap<String, Vec<Target>>,
    /// `None` while a new fence could not be started yet.
    fence: Option<Running>,
    /// When to try starting a fence again.
    retry_at: Option<Instant>,
}

async fn fence_exited(fence: &mut Option<Running>) {
    match fence {
        Some(fence) => fence.exit.wait().await,
        None => std::future::pending().await,
    }
}

impl Keeper {
    pub fn start(program: &Path, fence: Running) -> FenceHandle {
        let (requests, inbox) = mpsc::unbounded_channel();
        let keeper = Keeper {
            program: program.to_owned(),
            guarded: HashMap::new(),
            fence: Some(fence),
            retry_at: None,
        };
        tokio::spawn(keeper.run(inbox));
        FenceHandle { requests }
    }

    async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<Request>) {
        loop {
            let retry_at = self.retry_at;
            tokio::select! {
                request = inbox.recv() => match request {
                    Some(Request::Set { service, targets }) => self.set(service, targets).await,
                    Some(Request::Flush(reply)) => drop(reply.send(self.descriptor())),
                    Some(Request::Inherit(reply)) => drop(reply.send(self.inherit())),
                    Some(Request::Resync(reply)) => {
                        self.resync().await;
                        let _ = reply.send(self.descriptor());
                    }
                    Some(Request::Shutdown(reply)) => {
                        self.close().await;
                        let _ = reply.send(());
                        return;
                    }
                    None => return self.close().await,
                },
                () = fence_exited(&mut self.fence) => {
                    tracing::error!(
                        "the fence exited while corrald runs: starting a new one (until then, \
                         a crash of corrald would leave grouped services running)"
                    );
                    self.fence = None;
                    self.respawn().await;
                }
                () = sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                    self.retry_at = None;
                    self.respawn().await;
                }
            }
        }
    }

    async fn set(&mut self, service: String, targets: Vec<Target>) {
        let targets: Vec<Target> = targets.into_iter().filter(Target::is_valid).collect();
        let before = self.guarded.get(&service).map(Vec::as_slice).unwrap_or(&[]);
        if before == targets.as_slice() {
            return;
        }
        let mut text = String::new();
        for gone in before.iter().filter(|t| !targets.contains(t)) {
            text.push_str(&Message::Unguard(gone.clone()).to_string());
        }
        for new in targets.iter().filter(|t| !before.contains(t)) {
            text.push_str(&Message::Guard(new.clone()).to_string());
        }
        if targets.is_empty() {
            self.guarded.remove(&service);
        } else {
            self.guarded.insert(service, targets);
        }
        self.write(text).await;
    }

    /// Everything guarded, after a `clear`, in one write.
    async fn resync(&mut self) {
        let mut text = Message::Clear.to_string();
        for target in self.guarded.values().flatten() {
            text.push_str(&Message::Guard(target.clone()).to_string());
        }
        self.write(text).await;
    }

    async fn write(&mut self, text: String) {
        let Some(fence) = self.fence.as_mut() else {
            return; // Sent in full to the next fence.
        };
        if let Err(error) = fence.pipe.write_all(text.as_bytes()).await {
            // The fence is gone or going: make sure, so its exit is seen and a new one
            // gets everything.
            tracing::warn!(%error, "cannot write to the fence");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(fence.pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    async fn respawn(&mut self) {
        match Running::spawn(&self.program) {
            Ok(fence) => {
                self.fence = Some(fence);
                self.resync().await;
            }
            Err(error) => {
                tracing::error!(
                    %error,
                    program = %self.program.display(),
                    "cannot start the fence; retrying in a second"
                );
                self.retry_at = Some(Instant::now() + Duration::from_secs(1));
            }
        }
    }

    fn descriptor(&self) -> io::Result<FenceDescriptor> {
        self.fence
            .as_ref()
            .map(Running::descriptor)
            .ok_or_else(|| io::Error::other("no fence is running right now"))
    }

    fn inherit(&self) -> io::Result<FenceDescriptor> {
        let descriptor = self.descriptor()?;
        let fence = self.fence.as_ref().expect("checked by descriptor()");
        fcntl(&fence.pipe, FcntlArg::F_SETFD(FdFlag::empty()))?;
        Ok(descriptor)
    }

    /// Closes the pipe (the fence kills what is still guarded) and waits for it to exit.
    async fn close(&mut self) {
        if !self.guarded.is_empty() {
            tracing::warn!(
                services = self.guarded.len(),
                "closing the fence while services are guarded: it kills them"
            );
        }
        if let Some(Running {
            pipe,
            pid,
            mut exit,
        }) = self.fence.take()
        {
            drop(pipe);
            if timeout(Duration::from_secs(5), exit.wait()).await.is_err() {
                tracing::warn!(pid, "the fence did not exit after its pipe closed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in fence that appends what it reads to `log` (one file per start).
    fn recording_fence(dir: &Path) -> PathBuf {
        let program = dir.join("fence");
        let script = format!("#!/bin/sh\nexec cat >> {}/log.$$\n", dir.display());
        std::fs::write(&program, script).unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        program
    }

    fn logs(dir: &Path) -> Vec<String> {
        let mut logs: Vec<(std::time::SystemTime, String)> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("log."))
            .map(|e| {
                let modified = e.metadata().unwrap().modified().unwrap();
                (modified, std::fs::read_to_string(e.path()).unwrap())
            })
            .collect();
        logs.sort();
        logs.into_iter().map(|(_, text)| text).collect()
    }

    #[tokio::test]
    async fn sends_only_changes_and_everything_again_to_a_new_fence() {
        let dir = tempfile::tempdir().unwrap();
        let program = recording_fence(dir.path());
        let fence = super::super::start(&program).unwrap();
        fence.set("web", vec![Target::Group(100)]);
        fence.set("web", vec![Target::Group(100)]);
        fence.set("db", vec![Target::Process(200), Target::Group(1)]);
        fence.set("web", vec![Target::Group(101)]);
        let first = fence.flush().await.unwrap();
        let expected = "guard group 100\nguard process 200\nunguard group 100\nguard group 101\n";
        let deadline = Instant::now() + Duration::from_secs(20);
        while logs(dir.path()).concat() != expected {
            assert!(Instant::now() < deadline, "{:?}", logs(dir.path()));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // Killed behind corrald's back: a new fence gets the whole list.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(first.pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let second = loop {
            let now = fence.flush().await;
            if let Ok(now) = now
                && now.pid != first.pid
            {
                break now;
            }
            assert!(Instant::now() < deadline, "no new fence");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        fence.set("db", Vec::new());
        fence.flush().await.unwrap();
        fence.shutdown().await;
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(second.pid as i32), None);
        assert!(
            gone.is_err(),
            "shutdown waits for the fence to exit (and reaps it)"
        );

        let logs = logs(dir.path());
        assert_eq!(logs.len(), 2, "{logs:?}");
        assert_eq!(
            logs[0], expected,
            "a repeated set sends nothing, PID 1 is never named"
        );
        let mut resent: Vec<&str> = logs[1].lines().collect();
        assert_eq!(resent.remove(0), "clear");
        assert_eq!(resent.pop(), Some("unguard process 200"));
        resent.sort();
        assert_eq!(resent, ["guard group 101", "guard process 200"]);
    }

    #[tokio::test]
    async fn inherit_clears_close_on_exec_and_adopt_sets_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let program = recording_fence(dir.path());
        let fence = super::super::start(&program).unwrap();
        fence.set("web", vec![Target::Group(100)]);
        let carried = fence.inherit_across_exec().await.unwrap();
        let flags = |fd| {
            // SAFETY: `fd` is open for the duration of the call.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD).unwrap())
        };
        assert!(!flags(carried.fd).contains(FdFlag::FD_CLOEXEC));
        // What the new image does, here in the same process: a second owner of the same fd.
        let copy =
            nix::unistd::dup(unsafe { std::os::fd::BorrowedFd::borrow_raw(carried.fd) }).unwrap();
        let descriptor = FenceDescriptor {
            fd: std::os::fd::IntoRawFd::into_raw_fd(copy),
            pid: carried.pid,
        };
        // SAFETY: `descriptor.fd` is a fresh duplicate nobody else owns.
        let adopted = unsafe { super::super::adopt(&program, descriptor) }.unwrap();
        assert!(flags(descriptor.fd).contains(FdFlag::FD_CLOEXEC));
        adopted.set("db", vec![Target::Group(300)]);
        adopted.resync().await.unwrap();
        // Both handles closed: the fence sees end-of-file and exits.
        tokio::join!(adopted.shutdown(), fence.shutdown());
        let logs = logs(dir.path());
        assert_eq!(
            logs,
            ["guard group 100\nguard group 300\nclear\nguard group 300\n"]
        );
    }
}
