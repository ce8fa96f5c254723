//! corrald's subtree: where it is made (delegated or private), what each limit does
//! where its controller is missing, listing and releasing service cgroups, name escaping,
//! and OOM kills.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use super::*;

#[test]
fn limits_without_their_controller_are_reported_with_the_reason() {
    let Some(scratch) = Scratch::new("limits") else {
        return;
    };
    let limits = CgroupLimits {
        memory_max: Some(Max::Value(512 << 20)),
        tasks_max: Some(Max::Value(64)),
        cpu_weight: Some(200),
    };
    let prepared = scratch.cgroups.prepare("limited", &limits).unwrap();
    let cgroup = prepared.cgroup.unwrap();
    let Mode::Cgroups { controllers, .. } = scratch.cgroups.mode() else {
        panic!("cgroup mode expected");
    };
    let missing = scratch.cgroups.missing();
    // Every limit is either written or reported, never dropped.
    for (key, controller, file, written) in [
        ("memory_max", "memory", "memory.max", "536870912"),
        ("tasks_max", "pids", "pids.max", "64"),
        ("cpu_weight", "cpu", "cpu.weight", "200"),
    ] {
        let report = prepared.unapplied.iter().find(|u| u.key == key);
        if controllers.iter().any(|c| c == controller) {
            assert!(report.is_none(), "{report:?}");
            let value = std::fs::read_to_string(cgroup.dir().join(file)).unwrap();
            assert_eq!(value.trim(), written, "{file}");
        } else {
            let report = report.unwrap_or_else(|| panic!("{key} is neither written nor reported"));
            let shown = report.to_string();
            assert!(shown.starts_with(&format!("{key} = ")), "{shown}");
            assert!(
                shown.contains(&format!(
                    "the {controller} controller is not available to corrald's cgroups: {}",
                    missing[controller]
                )),
                "{shown}"
            );
        }
    }
    // This host (hybrid, the controllers bound to v1) says so in the reason.
    let v1 = detect::v1_controllers(&std::fs::read_to_string("/proc/self/cgroup").unwrap());
    if v1.contains("memory") && !controllers.iter().any(|c| c == "memory") {
        let memory = prepared
            .unapplied
            .iter()
            .find(|u| u.key == "memory_max")
            .unwrap();
        assert_eq!(memory.value, "512M");
        assert!(
            memory.reason.contains("bound to the cgroup v1 hierarchy"),
            "{memory}"
        );
    }
}

#[test]
fn process_group_mode_reports_every_configured_limit() {
    let cgroups = Cgroups::disabled("no cgroup v2 hierarchy here");
    assert_eq!(
        cgroups.mode().to_string(),
        "process groups (no cgroup v2 hierarchy here)"
    );
    assert!(cgroups.service("x").is_none());
    let prepared = cgroups
        .prepare(
            "x",
            &CgroupLimits {
                tasks_max: Some(Max::Infinity),
                ..CgroupLimits::default()
            },
        )
        .unwrap();
    assert!(prepared.cgroup.is_none());
    assert_eq!(
        prepared.unapplied[0].to_string(),
        "tasks_max = infinity is not enforced: corrald runs without cgroups (no cgroup v2 \
         hierarchy here)"
    );
}

#[test]
fn service_cgroups_are_listed_and_released() {
    let Some(scratch) = Scratch::new("release") else {
        return;
    };
    for name in ["b", "a", "cgroup.procs"] {
        let cgroup = scratch.cgroups.service(name).unwrap();
        assert!(cgroup.create().unwrap(), "made now");
        assert!(!cgroup.create().unwrap(), "kept: it exists");
    }
    let listed: Vec<String> = scratch
        .cgroups
        .service_cgroups()
        .iter()
        .map(|c| c.path().rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ["_cgroup.procs.service", "a.service", "b.service"]);
    // One holds a process: release leaves it and says so.
    let busy = scratch.cgroups.service("a").unwrap();
    let mut sleeper = Command::new("sleep");
    sleeper.arg("1000").process_group(0);
    let procs = busy.open_procs().unwrap();
    // SAFETY: one async-signal-safe write.
    unsafe {
        sleeper.pre_exec(move || {
            nix::unistd::write(&procs, b"0")?;
            Ok(())
        });
    }
    let mut sleeper = sleeper.spawn().unwrap();
    let left = scratch.cgroups.release();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].ends_with("a.service"), "{left:?}");
    assert!(!scratch.cgroups.service("b").unwrap().dir().exists());
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
}

#[test]
fn names_are_escaped_like_systemd_does() {
    assert_eq!(escape("web.service"), "web.service");
    assert_eq!(escape("getty@tty1.service"), "getty@tty1.service");
    assert_eq!(escape("cpu.service"), "_cpu.service");
    assert_eq!(escape("memory.max.service"), "_memory.max.service");
    assert_eq!(escape("cgroup.procs.service"), "_cgroup.procs.service");
    assert_eq!(escape(".hidden.service"), "_.hidden.service");
    assert_eq!(escape("_x.service"), "__x.service");
    assert_eq!(escape("tasks"), "_tasks");
    assert_eq!(instance_name(Path::new("/run/corral")), "run-corral");
    assert_eq!(
        instance_name(Path::new("/tmp/.tmpAb3/run")),
        "tmp-.tmpAb3-run"
    );
    assert_eq!(instance_name(Path::new("/")), "root");
    assert_eq!(instance_name(Path::new("/a b/c\nd")), "a_b-c_d");
    assert!(instance_name(Path::new(&format!("/{}", "x".repeat(300)))).len() <= 200);
}

#[test]
fn a_delegated_cgroup_gets_a_leaf_for_corrald_and_a_services_node() {
    let Some((mount, path)) = scratch_path("delegated") else {
        return;
    };
    let dir = detect::dir_of(&mount, &path);
    if let Err(err) = std::fs::create_dir(&dir) {
        eprintln!("SKIPPED delegated: cannot make {}: {err}", dir.display());
        return;
    }
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            remove_tree(&self.0);
        }
    }
    let _cleanup = Cleanup(dir.clone());
    // What systemd does for Delegate=yes: the xattr, and the main process in the cgroup.
    let c_path = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    // SAFETY: NUL-terminated strings and a value of its length.
    let set = unsafe {
        libc::setxattr(
            c_path.as_ptr(),
            c"trusted.delegate".as_ptr(),
            b"1".as_ptr().cast(),
            1,
            0,
        )
    };
    assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
    assert!(detect::is_delegated(&dir));
    let mut stand_in = Command::new("sleep").arg("1000").spawn().unwrap();
    let pid = stand_in.id();
    std::fs::write(dir.join("cgroup.procs"), pid.to_string()).unwrap();

    let base = detect::choose_base(&mount, &path, "unused", &detect::is_delegated);
    assert_eq!(base.kind, detect::BaseKind::Delegated { move_self: true });
    let tree = tree::build(base, &Default::default(), pid).unwrap();
    assert_eq!(
        cgroup_of(pid),
        format!("{path}/corrald"),
        "moved into its leaf"
    );
    assert!(
        std::fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap()
            .trim()
            .is_empty(),
        "the base holds no process, so it may pass controllers down"
    );
    assert_eq!(tree.services_path, format!("{path}/services"));
    assert!(dir.join("services").is_dir());

    // After a re-exec the process is in the leaf already: the same base, nothing moved.
    let again = detect::choose_base(&mount, &format!("{path}/corrald"), "unused", &|_| false);
    assert_eq!(again.path, path);
    assert_eq!(again.kind, detect::BaseKind::Delegated { move_self: false });
    tree::build(again, &Default::default(), pid).unwrap();
    assert_eq!(cgroup_of(pid), format!("{path}/corrald"));

    stand_in.kill().unwrap();
    stand_in.wait().unwrap();
}

#[tokio::test]
async fn an_oom_kill_is_counted_where_the_memory_controller_is() {
    let Some(scratch) = Scratch::new("oom") else {
        return;
    };
    let Mode::Cgroups { controllers, .. } = scratch.cgroups.mode() else {
        unreachable!()
    };
    let limits = CgroupLimits {
        memory_max: Some(Max::Value(16 << 20)),
        ..CgroupLimits::default()
    };
    let prepared = scratch.cgroups.prepare("hog", &limits).unwrap();
    let cgroup = prepared.cgroup.unwrap();
    if !controllers.iter().any(|c| c == "memory") {
        assert_eq!(cgroup.oom_kills(), None, "no memory controller, no count");
        eprintln!("SKIPPED oom: no memory controller for cgroups on this host");
        return;
    }
    assert_eq!(cgroup.oom_kills(), Some(0));
    // `tail` keeps a line in memory until it sees a newline, which /dev/zero never sends.
    let mut child = spawn_into(&service(&["tail", "/dev/zero"]), &cgroup);
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("the OOM killer ends it")
        .unwrap();
    assert_eq!(crate::process::exit_code(status), 128 + 9);
    assert!(cgroup.oom_kills().unwrap() >= 1);
}

#[test]
fn setup_outside_systemd_makes_a_private_subtree_and_release_removes_it() {
    // Only where setup would not move this test process (it does under a delegated
    // cgroup, which a test must not do to its harness).
    let instance = format!("test-setup-{}", std::process::id());
    match detect::find_base(&instance) {
        Ok(base) if base.kind == detect::BaseKind::Private => {}
        other => {
            eprintln!("SKIPPED setup: {other:?}");
            return;
        }
    }
    let own_before = cgroup_of(std::process::id());
    let cgroups = Cgroups::setup(&instance);
    let Mode::Cgroups { root, .. } = cgroups.mode() else {
        eprintln!("SKIPPED setup: {}", cgroups.mode());
        return;
    };
    assert_eq!(root, &format!("/corral/{instance}"));
    assert_eq!(
        cgroup_of(std::process::id()),
        own_before,
        "corrald stays where it was"
    );
    let web = cgroups.service("web").unwrap();
    assert_eq!(
        web.path(),
        format!("/corral/{instance}/services/web.service")
    );
    web.create().unwrap();
    assert!(cgroups.release().is_empty());
    assert!(!web.dir().exists());
    assert!(
        !web.dir().parent().unwrap().exists(),
        "the private subtree is gone too"
    );
}

#[test]
fn two_instances_share_the_parent_and_release_only_their_own() {
    let Some((mount, parent)) = scratch_path("two instances") else {
        return;
    };
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            remove_tree(&self.0);
        }
    }
    let _cleanup = Cleanup(detect::dir_of(&mount, &parent));
    let one = Cgroups::at(&mount, &format!("{parent}/one")).unwrap();
    let two = Cgroups::at(&mount, &format!("{parent}/two")).unwrap();
    // The same service name in both: two cgroups, never one shared.
    let (web1, web2) = (one.service("web").unwrap(), two.service("web").unwrap());
    assert_ne!(web1.path(), web2.path());
    web1.create().unwrap();
    web2.create().unwrap();
    assert!(one.release().is_empty());
    assert!(!web1.dir().exists());
    assert!(web2.dir().exists(), "the other instance's cgroups stay");
    assert!(
        detect::dir_of(&mount, &parent).exists(),
        "the shared parent is not empty"
    );
    assert!(two.release().is_empty());
    assert!(
        !detect::dir_of(&mount, &parent).exists(),
        "the last one removes the shared parent"
    );
}
