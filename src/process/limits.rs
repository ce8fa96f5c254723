//! Resource limits: corrald's own descriptor limit, and the rlimits, umask and
//! no_new_privileges its children get.
//!
//! corrald holds several descriptors per service (pidfd, output pipes, notify and control
//! sockets, a cgroup watch), so it does what systemd does for itself: it raises its soft
//! `RLIMIT_NOFILE` to the hard limit at start ([`raise_nofile`]). Its children must not
//! inherit that: a daemon using `select()` breaks on a descriptor above 1023, so every
//! child gets the conventional soft limit 1024 back (hard limit unchanged, so it may
//! raise it itself), unless its service sets `limit_nofile`. That is systemd's default
//! for services too (`DefaultLimitNOFILE=1024:524288`).

use std::io;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::sys::stat::Mode;

use crate::config::{ProcessLimits, RLIM_INFINITY, Rlimit};

/// The soft descriptor limit a child gets unless its service sets `limit_nofile`.
pub const CHILD_NOFILE_SOFT: u64 = 1024;

/// Raises corrald's soft `RLIMIT_NOFILE` to its hard limit; returns the limits before and
/// after.
pub fn raise_nofile() -> io::Result<(Rlimit, Rlimit)> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let before = Rlimit { soft, hard };
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok((before, Rlimit { soft: hard, hard }))
}

/// When `err` is "too many open files" (`EMFILE`: corrald's own `RLIMIT_NOFILE`;
/// `ENFILE`: the system's `fs.file-max`), a message naming that limit, its value and the
/// setting that raises it; `None` for any other error. A service that cannot start for
/// this reason fails with this message, so its `LastError` says what to change.
pub fn too_many_open_files(err: &io::Error) -> Option<String> {
    match err.raw_os_error()? {
        libc::EMFILE => {
            let soft = getrlimit(Resource::RLIMIT_NOFILE)
                .map(|(soft, _)| soft.to_string())
                .unwrap_or_else(|_| "?".into());
            Some(format!(
                "too many open files: corrald's RLIMIT_NOFILE soft limit {soft} is reached; \
                 raise LimitNOFILE= in corral.service (`systemctl edit corral`), or corrald's \
                 hard limit where it runs outside systemd (each running service holds one to \
                 three descriptors: README \"Descriptor limits\")"
            ))
        }
        libc::ENFILE => {
            let max = std::fs::read_to_string("/proc/sys/fs/file-max")
                .map(|text| text.trim().to_owned())
                .unwrap_or_else(|_| "?".into());
            Some(format!(
                "too many open files in the system: the kernel's limit fs.file-max = {max} is \
                 reached; raise it (`sysctl fs.file-max=…`) or stop something"
            ))
        }
        _ => None,
    }
}

/// What a child sets between fork and exec, worked out in the parent beforehand (after the
/// fork only async-signal-safe calls are allowed: no allocation, no file reading).
#[derive(Debug, Default)]
pub(crate) struct ChildLimits {
    rlimits: Vec<(Resource, Rlimit)>,
    umask: Option<Mode>,
    no_new_privileges: bool,
}

impl ChildLimits {
    /// The settings for a child of a service with `limits`. Only what differs from what
    /// the child would inherit is kept, so a child that needs nothing keeps the fast spawn.
    pub fn for_service(limits: &ProcessLimits) -> Result<ChildLimits, String> {
        let mut rlimits = Vec::new();
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)
            .map_err(|e| format!("cannot read corrald's RLIMIT_NOFILE: {e}"))?;
        let nofile = match limits.limit_nofile {
            Some(wanted) => nofile_within_kernel_max(wanted)?,
            None => Rlimit {
                soft: CHILD_NOFILE_SOFT.min(hard),
                hard,
            },
        };
        if nofile != (Rlimit { soft, hard }) {
            rlimits.push((Resource::RLIMIT_NOFILE, nofile));
        }
        for (resource, limit) in [
            (Resource::RLIMIT_CORE, limits.limit_core),
            (Resource::RLIMIT_NPROC, limits.limit_nproc),
            (Resource::RLIMIT_MEMLOCK, limits.limit_memlock),
        ] {
            if let Some(limit) = limit {
                rlimits.push((resource, limit));
            }
        }
        Ok(ChildLimits {
            rlimits,
            umask: limits.umask.map(Mode::from_bits_truncate),
            no_new_privileges: limits.no_new_privileges,
        })
    }

    /// Whether the child needs none of this (and may be spawned without a hook).
    pub fn is_empty(&self) -> bool {
        self.rlimits.is_empty() && self.umask.is_none() && !self.no_new_privileges
    }

    /// Sets the rlimits and umask in the child. Must run before privileges are dropped
    /// (raising a hard limit needs root). Async-signal-safe: syscalls only.
    pub fn apply_before_user(&self) -> io::Result<()> {
        for (resource, limit) in &self.rlimits {
            setrlimit(*resource, limit.soft, limit.hard)?;
        }
        if let Some(mask) = self.umask {
            nix::sys::stat::umask(mask);
        }
        Ok(())
    }

    /// Sets no_new_privileges in the child: after privileges are dropped, so that it
    /// holds for whatever the child execs. Async-signal-safe.
    pub fn apply_after_user(&self) -> io::Result<()> {
        if self.no_new_privileges {
            // SAFETY: prctl with integer arguments only.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// `limit_nofile` as the kernel can take it: "infinity" means the kernel's maximum
/// (`fs.nr_open`), as systemd does; a number above that maximum is an error here, where it
/// can say so, rather than a bare EPERM from the child.
fn nofile_within_kernel_max(wanted: Rlimit) -> Result<Rlimit, String> {
    if wanted.soft < 1 << 20 && wanted.hard < 1 << 20 {
        // Below the smallest nr_open default; no need to read it.
        return Ok(wanted);
    }
    let text = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .map_err(|e| format!("cannot read /proc/sys/fs/nr_open: {e}"))?;
    let max: u64 = text
        .trim()
        .parse()
        .map_err(|_| format!("/proc/sys/fs/nr_open holds {text:?}, not a number"))?;
    let fit = |n: u64, which: &str| {
        if n == RLIM_INFINITY {
            Ok(max)
        } else if n > max {
            Err(format!(
                "limit_nofile: the {which} limit {n} is above the kernel's maximum \
                 fs.nr_open = {max}; lower it or use \"infinity\""
            ))
        } else {
            Ok(n)
        }
    };
    Ok(Rlimit {
        soft: fit(wanted.soft, "soft")?,
        hard: fit(wanted.hard, "hard")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_out_of_descriptors_names_the_limit_and_how_to_raise_it() {
        let emfile = too_many_open_files(&io::Error::from_raw_os_error(libc::EMFILE)).unwrap();
        let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert!(
            emfile.contains(&format!("RLIMIT_NOFILE soft limit {soft} is reached")),
            "{emfile}"
        );
        assert!(emfile.contains("LimitNOFILE="), "{emfile}");
        let enfile = too_many_open_files(&io::Error::from_raw_os_error(libc::ENFILE)).unwrap();
        assert!(enfile.contains("fs.file-max = "), "{enfile}");
        assert!(too_many_open_files(&io::Error::from_raw_os_error(libc::ENOENT)).is_none());
    }

    #[test]
    fn children_get_1024_back_unless_the_service_says_otherwise() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let child = ChildLimits::for_service(&ProcessLimits::default()).unwrap();
        let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let wanted = Rlimit {
            soft: CHILD_NOFILE_SOFT.min(hard),
            hard,
        };
        if soft == wanted.soft {
            assert!(child.is_empty(), "nothing to change: {child:?}");
        } else {
            assert_eq!(child.rlimits, [(Resource::RLIMIT_NOFILE, wanted)]);
        }
        let own = Rlimit { soft, hard };
        let same = ChildLimits::for_service(&ProcessLimits {
            limit_nofile: Some(own),
            ..ProcessLimits::default()
        })
        .unwrap();
        assert!(same.is_empty(), "the service asks for what it inherits");
    }

    #[test]
    fn infinity_is_the_kernels_maximum_and_more_is_an_error() {
        let max: u64 = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let fitted = nofile_within_kernel_max(Rlimit {
            soft: 4096,
            hard: RLIM_INFINITY,
        })
        .unwrap();
        assert_eq!(
            fitted,
            Rlimit {
                soft: 4096,
                hard: max
            }
        );
        let err = nofile_within_kernel_max(Rlimit {
            soft: max + 1,
            hard: max + 1,
        })
        .unwrap_err();
        assert!(
            err.contains(&format!("above the kernel's maximum fs.nr_open = {max}")),
            "{err}"
        );
    }
}
