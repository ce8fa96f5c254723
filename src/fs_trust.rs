//! Who could have changed what a path names. corrald runs as root and acts on paths it is
//! given — a pidfile whose PID it adopts and signals, a control socket it dials, its own
//! runtime directory — so before it trusts one it asks whether a non-root user could have
//! written the file, replaced it, or pointed it elsewhere:
//!
//! - [`writable_by_others`]: the file, the directories above it, or a symlink on the way
//!   is owned or writable by someone other than root (pidfiles);
//! - [`open_to_everyone`]: a directory on the way lets everyone create *and remove* entries
//!   (world-writable without the sticky bit), so any user can take or swap the path
//!   (control sockets, checked when the configuration is loaded);
//! - [`private_dir`]: a directory is corrald's alone (its runtime directory), and
//!   [`make_private_dir`], which makes one and checks it.
//!
//! These are snapshots of permissions, not locks: they decide whether a path's *owner* can
//! be trusted, and the callers combine them with checks on the process found there.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Group- or other-writable.
const WRITABLE_BY_OTHERS: u32 = 0o022;
const OTHER_WRITABLE: u32 = 0o002;
const STICKY: u32 = 0o1000;

/// A uid as a person reads it: `"ganesha (uid 107)"`, or just the number.
pub fn describe_uid(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => format!("{} (uid {uid})", user.name),
        _ => format!("uid {uid}"),
    }
}

/// Why users other than root could change what `path` names, or `None` when only root
/// can: the file must be owned by root and not writable by group or others, every
/// directory above it owned by root and not writable by group or others unless sticky,
/// and any symlink on the way owned by root. Fails when `path` does not exist.
pub fn writable_by_others(path: &Path) -> io::Result<Option<String>> {
    // A symlink a user planted can point at any file root owns (another daemon's pidfile).
    let mut prefix = PathBuf::new();
    for part in path.components() {
        prefix.push(part);
        if let Ok(meta) = prefix.symlink_metadata()
            && meta.file_type().is_symlink()
            && meta.uid() != 0
        {
            return Ok(Some(format!(
                "{} is a symlink owned by {}",
                prefix.display(),
                describe_uid(meta.uid())
            )));
        }
    }
    let real = path.canonicalize()?;
    let meta = real.metadata()?;
    if meta.uid() != 0 {
        return Ok(Some(format!(
            "{} is owned by {}",
            real.display(),
            describe_uid(meta.uid())
        )));
    }
    if meta.mode() & WRITABLE_BY_OTHERS != 0 {
        return Ok(Some(format!(
            "{} is writable by its group or by everyone (mode {:04o})",
            real.display(),
            meta.permissions().mode() & 0o7777
        )));
    }
    for dir in real.ancestors().skip(1) {
        let meta = dir.metadata()?;
        if meta.uid() != 0 {
            return Ok(Some(format!(
                "its directory {} is owned by {}",
                dir.display(),
                describe_uid(meta.uid())
            )));
        }
        if meta.mode() & WRITABLE_BY_OTHERS != 0 && meta.mode() & STICKY == 0 {
            return Ok(Some(format!(
                "its directory {} is writable by its group or by everyone without the sticky \
                 bit (mode {:04o})",
                dir.display(),
                meta.mode() & 0o7777
            )));
        }
    }
    Ok(None)
}

/// The first existing directory above `path` that everyone may write without the sticky
/// bit: there any user can remove or rename what others put. Directories that do not
/// exist yet are skipped (a service may create its own when it starts).
pub fn open_to_everyone(path: &Path) -> Option<PathBuf> {
    path.ancestors().skip(1).find_map(|dir| {
        let meta = dir.metadata().ok()?;
        (meta.is_dir() && meta.mode() & OTHER_WRITABLE != 0 && meta.mode() & STICKY == 0)
            .then(|| dir.to_path_buf())
    })
}

/// Why a directory meant to be corrald's alone cannot be used.
#[derive(Debug)]
pub enum PrivateDirError {
    /// It could not be made.
    Create(io::Error),
    /// It exists but someone else could have made or can change it ([`private_dir`]).
    Untrusted(String),
}

/// Makes `dir` (mode 0755, with its parents) where it is missing, then checks it is
/// [`private_dir`]: corrald's runtime directory at start-up, and again when it was removed
/// underneath a running corrald.
pub fn make_private_dir(dir: &Path) -> Result<(), PrivateDirError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(PrivateDirError::Create)?;
    private_dir(dir).map_err(PrivateDirError::Untrusted)
}

/// Checks that `dir` is a directory owned by this process's user and writable by nobody
/// else; the message says what is wrong and how to fix it.
pub fn private_dir(dir: &Path) -> Result<(), String> {
    let meta = dir
        .metadata()
        .map_err(|err| format!("cannot inspect {}: {err}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(format!(
            "{} is owned by {}, not by {} that corrald runs as: someone else may have \
             created it to plant sockets; remove it (corrald creates it) or `chown {me} {}`",
            dir.display(),
            describe_uid(meta.uid()),
            describe_uid(me),
            dir.display()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & WRITABLE_BY_OTHERS != 0 {
        return Err(format!(
            "{} is writable by its group or by everyone (mode {mode:04o}): other users could \
             replace the sockets in it; `chmod go-w {}`",
            dir.display(),
            dir.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn nobody() -> nix::unistd::User {
        nix::unistd::User::from_name("nobody").unwrap().unwrap()
    }

    /// A directory only root can write, below /tmp (sticky), as a test's root of trust.
    fn root_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o755);
        dir
    }

    #[test]
    fn a_root_file_in_root_directories_is_trusted() {
        // These tests run as root (the project's tests do): the files they make are root's.
        assert_eq!(nix::unistd::geteuid().as_raw(), 0, "run the tests as root");
        let dir = root_dir();
        let file = dir.path().join("x.pid");
        std::fs::write(&file, "1\n").unwrap();
        chmod(&file, 0o644);
        assert_eq!(writable_by_others(&file).unwrap(), None);
        // A sticky world-writable directory keeps others from replacing a root file.
        let sticky = dir.path().join("sticky");
        std::fs::create_dir(&sticky).unwrap();
        chmod(&sticky, 0o1777);
        let inside = sticky.join("x.pid");
        std::fs::write(&inside, "1\n").unwrap();
        chmod(&inside, 0o644);
        assert_eq!(writable_by_others(&inside).unwrap(), None);
        assert!(writable_by_others(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn what_others_could_change_is_named() {
        let dir = root_dir();
        let file = dir.path().join("x.pid");
        std::fs::write(&file, "1\n").unwrap();
        chmod(&file, 0o664);
        let why = writable_by_others(&file).unwrap().unwrap();
        assert!(
            why.ends_with("is writable by its group or by everyone (mode 0664)"),
            "{why}"
        );

        chmod(&file, 0o644);
        let nobody = nobody();
        nix::unistd::chown(&file, Some(nobody.uid), None).unwrap();
        let why = writable_by_others(&file).unwrap().unwrap();
        assert!(why.ends_with("is owned by nobody (uid 65534)"), "{why}");

        nix::unistd::chown(&file, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
        chmod(dir.path(), 0o777);
        let why = writable_by_others(&file).unwrap().unwrap();
        assert!(
            why.contains("without the sticky bit (mode 0777)"),
            "a swappable directory: {why}"
        );
        chmod(dir.path(), 0o755);
        nix::unistd::chown(dir.path(), Some(nobody.uid), None).unwrap();
        let why = writable_by_others(&file).unwrap().unwrap();
        assert!(why.contains("is owned by nobody"), "{why}");
    }

    #[test]
    fn a_symlink_a_user_planted_is_not_followed_into_trust() {
        let dir = root_dir();
        let target = dir.path().join("other-daemon.pid");
        std::fs::write(&target, "1\n").unwrap();
        chmod(&target, 0o644);
        let link = dir.path().join("svc.pid");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(writable_by_others(&link).unwrap(), None, "root's own link");
        let nobody = nobody();
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &link,
            Some(nobody.uid),
            None,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
        let why = writable_by_others(&link).unwrap().unwrap();
        assert!(why.contains("is a symlink owned by nobody"), "{why}");
    }

    #[test]
    fn only_world_writable_directories_without_sticky_are_open_to_everyone() {
        let dir = root_dir();
        let socket = dir.path().join("missing/deeper/svc.sock");
        assert_eq!(open_to_everyone(&socket), None);
        chmod(dir.path(), 0o1777);
        assert_eq!(open_to_everyone(&socket), None, "sticky, like /tmp");
        chmod(dir.path(), 0o777);
        assert_eq!(open_to_everyone(&socket), Some(dir.path().to_path_buf()));
        chmod(dir.path(), 0o775);
        assert_eq!(
            open_to_everyone(&socket),
            None,
            "group-writable is the admin's choice"
        );
    }

    #[test]
    fn a_private_dir_is_ours_and_closed() {
        let dir = root_dir();
        assert_eq!(private_dir(dir.path()), Ok(()));
        chmod(dir.path(), 0o775);
        let why = private_dir(dir.path()).unwrap_err();
        assert!(
            why.contains("mode 0775") && why.contains("chmod go-w"),
            "{why}"
        );
        chmod(dir.path(), 0o755);
        nix::unistd::chown(dir.path(), Some(nobody().uid), None).unwrap();
        let why = private_dir(dir.path()).unwrap_err();
        assert!(why.contains("is owned by nobody (uid 65534)"), "{why}");
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        assert!(
            private_dir(&file)
                .unwrap_err()
                .contains("is not a directory")
        );
    }
}
