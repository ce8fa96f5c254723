//! Finding where corrald may make cgroups: the cgroup v2 mount, corrald's own cgroup, and
//! whether that cgroup was delegated to it. Only reads; [`super::tree`] acts on the answer.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, statfs};

use super::{LEAF, SERVICES, escape};

/// Where corrald's subtree is and how it came to be there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Base {
    /// The cgroup v2 mount point.
    pub mount: PathBuf,
    /// The base's cgroup path ("/system.slice/corral.service"), as `/proc/PID/cgroup`
    /// spells it.
    pub path: String,
    pub kind: BaseKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BaseKind {
    /// corrald's own cgroup, delegated to it (systemd's `Delegate=yes`): corrald moves
    /// itself into the leaf [`LEAF`] below it, unless it already is there (`move_self`
    /// false: a re-exec, or a restart that found the leaf).
    Delegated { move_self: bool },
    /// A subtree corrald makes for itself below the v2 root, because its own cgroup is not
    /// its to divide (a login session's, a unit's without `Delegate=yes`, the root).
    Private,
}

impl Base {
    /// The base's directory.
    pub fn dir(&self) -> PathBuf {
        dir_of(&self.mount, &self.path)
    }
}

/// Where `instance`'s subtree is, or why there is none.
pub(crate) fn find_base(instance: &str) -> Result<Base, String> {
    let mount = v2_mount().ok_or_else(|| {
        "no cgroup v2 hierarchy is mounted at /sys/fs/cgroup or /sys/fs/cgroup/unified".to_owned()
    })?;
    let own = own_cgroup(
        &std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?,
    )
    .ok_or_else(|| "/proc/self/cgroup has no cgroup v2 line (\"0::/...\")".to_owned())?;
    Ok(choose_base(&mount, &own, instance, &is_delegated))
}

/// The decision of [`find_base`], given the mount, corrald's own cgroup path, and a
/// delegation test (a parameter so that tests can answer it).
pub(crate) fn choose_base(
    mount: &Path,
    own: &str,
    instance: &str,
    delegated: &dyn Fn(&Path) -> bool,
) -> Base {
    let base = |path: &str, kind| Base {
        mount: mount.to_owned(),
        path: path.to_owned(),
        kind,
    };
    // Already in our leaf of a delegated tree: a re-exec keeps its cgroup.
    if let Some(parent) = own.strip_suffix(&format!("/{LEAF}"))
        && !parent.is_empty()
        && dir_of(mount, parent).join(SERVICES).is_dir()
    {
        return base(parent, BaseKind::Delegated { move_self: false });
    }
    // `..` appears when our cgroup is outside our cgroup namespace: not ours to touch.
    if own != "/" && !own.contains("/..") && delegated(&dir_of(mount, own)) {
        return base(own, BaseKind::Delegated { move_self: true });
    }
    base(&format!("/corral/{}", escape(instance)), BaseKind::Private)
}

/// The cgroup v2 mount: `/sys/fs/cgroup` on a unified host, `/sys/fs/cgroup/unified` on a
/// hybrid one.
pub(crate) fn v2_mount() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|dir| statfs(dir).is_ok_and(|fs| fs.filesystem_type() == CGROUP2_SUPER_MAGIC))
}

/// The cgroup v2 path in a `/proc/PID/cgroup` text (its `0::/…` line).
pub(crate) fn own_cgroup(proc_cgroup: &str) -> Option<String> {
    proc_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::to_owned)
}

/// The controllers a cgroup v1 hierarchy holds, from a `/proc/PID/cgroup` text: those
/// cannot be enabled on v2 at the same time.
pub(crate) fn v1_controllers(proc_cgroup: &str) -> BTreeSet<String> {
    proc_cgroup
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_id, names) = (fields.next()?, fields.next()?);
            Some(names)
        })
        .flat_map(|names| names.split(','))
        .filter(|name| !name.is_empty() && !name.starts_with("name="))
        .map(str::to_owned)
        .collect()
}

/// Whether systemd delegated the cgroup at `dir`: it marks such cgroups with the extended
/// attribute `trusted.delegate` (readable by root) or `user.delegate` set to `1`, the test
/// systemd itself uses (`cg_is_delegated`).
pub(crate) fn is_delegated(dir: &Path) -> bool {
    let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    ["trusted.delegate", "user.delegate"]
        .into_iter()
        .any(|name| {
            let name = CString::new(name).expect("no NUL");
            let mut value = [0u8; 8];
            // SAFETY: both strings are NUL-terminated and `value` is writable for its length.
            let len = unsafe {
                libc::getxattr(
                    path.as_ptr(),
                    name.as_ptr(),
                    value.as_mut_ptr().cast(),
                    value.len(),
                )
            };
            len == 1 && value[0] == b'1'
        })
}

/// The directory of cgroup `path` under `mount`.
pub(crate) fn dir_of(mount: &Path, path: &str) -> PathBuf {
    mount.join(path.trim_start_matches('/'))
}

/// Reads a cgroup file whose absence is an answer ("no such controller").
pub(crate) fn read_optional(path: &Path) -> io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "9:name=systemd:/\n4:memory:/process_api/x\n2:cpu,cpuacct:/\n0::/\n";

    #[test]
    fn reads_proc_self_cgroup() {
        assert_eq!(own_cgroup(HYBRID).as_deref(), Some("/"));
        assert_eq!(
            own_cgroup("0::/system.slice/corral.service\n").as_deref(),
            Some("/system.slice/corral.service")
        );
        assert_eq!(own_cgroup("4:memory:/x\n"), None);
        let v1: Vec<String> = v1_controllers(HYBRID).into_iter().collect();
        assert_eq!(v1, ["cpu", "cpuacct", "memory"]);
        assert!(
            v1_controllers("0::/\n").is_empty(),
            "pure v2 binds nothing to v1"
        );
    }

    #[test]
    fn a_delegated_cgroup_is_the_base_and_corrald_moves_into_a_leaf() {
        let mount = Path::new("/sys/fs/cgroup");
        let yes = |_: &Path| true;
        let no = |_: &Path| false;
        let own = "/system.slice/corral.service";
        assert_eq!(
            choose_base(mount, own, "run-corral", &yes),
            Base {
                mount: mount.to_owned(),
                path: own.to_owned(),
                kind: BaseKind::Delegated { move_self: true },
            }
        );
        // Not delegated (a session scope, a unit without Delegate=yes): a private subtree
        // named after the instance, never the shared cgroup.
        let base = choose_base(mount, "/user.slice/session-3.scope", "run-corral", &no);
        assert_eq!(base.path, "/corral/run-corral");
        assert_eq!(base.kind, BaseKind::Private);
        // The root is never divided, whatever its attributes say.
        assert_eq!(choose_base(mount, "/", "x", &yes).kind, BaseKind::Private);
        assert_eq!(
            choose_base(mount, "/../outside", "x", &yes).kind,
            BaseKind::Private
        );
    }

    #[test]
    fn a_reexecuted_corrald_finds_its_base_above_its_leaf() {
        let mount = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(mount.path().join("unit.service/services")).unwrap();
        let base = choose_base(mount.path(), "/unit.service/corrald", "x", &|_| false);
        assert_eq!(base.path, "/unit.service");
        assert_eq!(base.kind, BaseKind::Delegated { move_self: false });
        // A cgroup merely named "corrald" is not taken for our leaf.
        let base = choose_base(mount.path(), "/other/corrald", "x", &|_| false);
        assert_eq!(base.kind, BaseKind::Private);
    }

    #[test]
    fn this_host_has_a_v2_mount_or_says_so() {
        // Not an assertion about the host: only that detection answers without failing.
        if let Some(mount) = v2_mount() {
            assert!(mount.join("cgroup.procs").exists(), "{}", mount.display());
        }
    }
}
