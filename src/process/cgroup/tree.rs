//! Building corrald's subtree from a [`Base`]: the base itself (outside systemd), corrald's
//! own leaf (under systemd), the `services` node, and the controllers enabled down to it.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use super::detect::{Base, BaseKind, read_optional};
use super::{LEAF, SERVICES, WANTED_CONTROLLERS};

/// corrald's subtree, ready for service cgroups.
#[derive(Debug)]
pub(crate) struct Tree {
    pub base: Base,
    /// The `services` node: every service's cgroup is a child of it.
    pub services_dir: PathBuf,
    /// Its cgroup path.
    pub services_path: String,
    /// The controllers each service's cgroup has (of [`WANTED_CONTROLLERS`]).
    pub controllers: Vec<String>,
    /// Why each other wanted controller is not there.
    pub missing: BTreeMap<String, String>,
}

/// Makes the subtree of `base` and enables the controllers it can; `v1` are the
/// controllers bound to cgroup v1 on this host (they are reported as the reason);
/// `corrald` is the process moved into the leaf of a delegated base (corrald's own PID).
/// Fails, with the reason, when the subtree cannot be made at all.
pub(crate) fn build(base: Base, v1: &BTreeSet<String>, corrald: u32) -> Result<Tree, String> {
    let base_dir = base.dir();
    match base.kind {
        BaseKind::Private => create_private_base(&base_dir)
            .map_err(|e| format!("cannot create {}: {e}", base_dir.display()))?,
        BaseKind::Delegated { move_self: true } => move_into_leaf(&base_dir, corrald)?,
        BaseKind::Delegated { move_self: false } => {}
    }
    let services_dir = base_dir.join(SERVICES);
    make_dir(&services_dir)
        .map_err(|e| format!("cannot create {}: {e}", services_dir.display()))?;
    for file in ["cgroup.events", "cgroup.kill", "cgroup.freeze"] {
        if !services_dir.join(file).exists() {
            return Err(format!(
                "this kernel has no {file} (corral's cgroup mode needs Linux 5.14 or later)"
            ));
        }
    }
    // The nodes whose subtree_control decides what the services get: outside systemd
    // everything from the v2 root down (nobody enabled anything for us), under systemd
    // only our own nodes (systemd enabled what it delegated up to the base).
    let top = match base.kind {
        BaseKind::Private => base.mount.clone(),
        BaseKind::Delegated { .. } => base_dir.clone(),
    };
    let mut nodes: Vec<PathBuf> = services_dir
        .ancestors()
        .take_while(|dir| dir.starts_with(&top))
        .map(Path::to_owned)
        .collect();
    nodes.reverse();
    let mut missing = BTreeMap::new();
    for controller in WANTED_CONTROLLERS {
        if let Err(why) = enable(controller, &nodes, &base, v1) {
            missing.insert(controller.to_owned(), why);
        }
    }
    let enabled = read_optional(&services_dir.join("cgroup.subtree_control"))
        .ok()
        .flatten()
        .unwrap_or_default();
    let controllers: Vec<String> = WANTED_CONTROLLERS
        .iter()
        .filter(|c| enabled.split_whitespace().any(|e| e == **c))
        .map(|c| (*c).to_owned())
        .collect();
    let services_path = format!("{}/{SERVICES}", base.path.trim_end_matches('/'));
    Ok(Tree {
        base,
        services_dir,
        services_path,
        controllers,
        missing,
    })
}

/// The no-internal-process rule: a cgroup that hands controllers to its children holds no
/// process itself. So corrald leaves the base for a leaf of its own.
fn move_into_leaf(base_dir: &Path, corrald: u32) -> Result<(), String> {
    let leaf = base_dir.join(LEAF);
    make_dir(&leaf).map_err(|e| format!("cannot create {}: {e}", leaf.display()))?;
    std::fs::write(leaf.join("cgroup.procs"), corrald.to_string())
        .map_err(|e| format!("cannot move corrald into {}: {e}", leaf.display()))
}

/// Enables `controller` in every node's `cgroup.subtree_control`, top down.
fn enable(
    controller: &str,
    nodes: &[PathBuf],
    base: &Base,
    v1: &BTreeSet<String>,
) -> Result<(), String> {
    for node in nodes {
        let available = read_optional(&node.join("cgroup.controllers"))
            .ok()
            .flatten()
            .unwrap_or_default();
        if !available.split_whitespace().any(|c| c == controller) {
            return Err(if v1.contains(controller) {
                "it is bound to the cgroup v1 hierarchy on this host (a hybrid layout; \
                 booting with systemd.unified_cgroup_hierarchy=1 moves it to v2)"
                    .to_owned()
            } else if matches!(base.kind, BaseKind::Delegated { .. }) {
                format!(
                    "it was not delegated to {} (systemd's Delegate=yes delegates every \
                     controller it manages)",
                    base.path
                )
            } else {
                format!("it is not in {}", node.join("cgroup.controllers").display())
            });
        }
        let enabled = read_optional(&node.join("cgroup.subtree_control"))
            .ok()
            .flatten()
            .unwrap_or_default();
        if enabled.split_whitespace().any(|c| c == controller) {
            continue;
        }
        let file = node.join("cgroup.subtree_control");
        if let Err(err) = std::fs::write(&file, format!("+{controller}")) {
            let hint = if err.raw_os_error() == Some(libc::EBUSY) {
                " (processes are in that cgroup itself: a cgroup that passes controllers \
                 down may hold none)"
            } else {
                ""
            };
            return Err(format!(
                "enabling it in {} failed: {err}{hint}",
                file.display()
            ));
        }
    }
    Ok(())
}

/// Makes a private base and its parent `/corral`. Another corrald's [`release`] may
/// remove `/corral` between the two `mkdir`s (it was empty then); that is retried.
fn create_private_base(dir: &Path) -> io::Result<()> {
    let mut attempts = 0;
    loop {
        match std::fs::create_dir_all(dir) {
            Err(err) if err.kind() == io::ErrorKind::NotFound && attempts < 3 => attempts += 1,
            other => return other,
        }
    }
}

/// `mkdir`, where existing already is fine.
fn make_dir(dir: &Path) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(err) if err.kind() != io::ErrorKind::AlreadyExists => Err(err),
        _ => Ok(()),
    }
}

/// Removes the empty cgroups below `services_dir` and, for a private base, the nodes we
/// made; returns the cgroups that still hold processes (left in place).
pub(crate) fn release(tree: &Tree) -> Vec<PathBuf> {
    let mut busy = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&tree.services_dir) {
        for entry in entries.flatten() {
            let dir = entry.path();
            if dir.is_dir() && std::fs::remove_dir(&dir).is_err() {
                busy.push(dir);
            }
        }
    }
    if tree.base.kind == BaseKind::Private && busy.is_empty() {
        let base_dir = tree.base.dir();
        let _ = std::fs::remove_dir(&tree.services_dir);
        let _ = std::fs::remove_dir(&base_dir);
        // `/corral`, shared by every corrald outside systemd: the last one removes it.
        if let Some(parent) = base_dir.parent()
            && parent != tree.base.mount
        {
            let _ = std::fs::remove_dir(parent);
        }
    }
    busy
}
