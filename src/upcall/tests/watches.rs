//! Watches: unicast invalidation, unwatch, expiry, caps, refused services.

use tokio::time::{Duration, advance};

use super::{EXPIRY, Rig, invalidation, is_invalid_args, settings};
use crate::error::CommandError;
use crate::upcall::{UpcallSettings, UpcallStats};

#[tokio::test(start_paused = true)]
async fn invalidation_goes_only_to_watchers_of_that_exact_resource() {
    let mut rig = Rig::new().await;
    let h = &rig.handle;
    h.watch(":1.1", "nfs", "/a").await.unwrap();
    h.watch(":1.2", "nfs", "/a").await.unwrap();
    h.watch(":1.3", "nfs", "/b").await.unwrap();
    h.watch(":1.4", "smb", "/a").await.unwrap();

    h.invalidate("nfs", "/a", vec!["size".into(), "mtime".into()])
        .await;
    assert_eq!(
        rig.drain(),
        vec![
            invalidation(":1.1", "nfs", "/a", &["size", "mtime"]),
            invalidation(":1.2", "nfs", "/a", &["size", "mtime"]),
        ]
    );

    rig.handle.invalidate("smb", "/a", vec![]).await;
    assert_eq!(rig.drain(), vec![invalidation(":1.4", "smb", "/a", &[])]);

    // Nobody watches /c; a service without upcall = true is not relayed.
    rig.handle.invalidate("nfs", "/c", vec![]).await;
    rig.handle.invalidate("cron", "/a", vec![]).await;
    assert_eq!(rig.drain(), vec![]);
}

#[tokio::test(start_paused = true)]
async fn unwatch_stops_invalidations_and_is_idempotent() {
    let mut rig = Rig::new().await;
    let h = &rig.handle;
    h.watch(":1.1", "nfs", "/a").await.unwrap();
    h.watch(":1.2", "nfs", "/a").await.unwrap();
    h.unwatch(":1.1", "nfs", "/a").await.unwrap();
    // Not watched (any more): still fine, expiry could have dropped it.
    h.unwatch(":1.1", "nfs", "/a").await.unwrap();
    h.unwatch(":1.9", "nfs", "/zzz").await.unwrap();

    h.invalidate("nfs", "/a", vec!["x".into()]).await;
    assert_eq!(rig.drain(), vec![invalidation(":1.2", "nfs", "/a", &["x"])]);

    rig.handle.unwatch(":1.2", "nfs", "/a").await.unwrap();
    assert_eq!(rig.handle.stats().await, UpcallStats::default());
}

#[tokio::test(start_paused = true)]
async fn idle_watch_expires_at_upcall_expiry() {
    let rig = Rig::new().await;
    let h = &rig.handle;
    h.watch(":1.1", "nfs", "/a").await.unwrap();
    advance(EXPIRY - Duration::from_millis(1)).await;
    assert_eq!(h.stats().await.watches, 1);
    advance(Duration::from_millis(1)).await;
    // Every trace is gone: watch, timer, resource, client.
    assert_eq!(h.stats().await, UpcallStats::default());
}

#[tokio::test(start_paused = true)]
async fn rewatch_and_delivered_invalidations_postpone_expiry() {
    let mut rig = Rig::new().await;
    rig.handle.watch(":1.1", "nfs", "/a").await.unwrap();
    advance(Duration::from_secs(40)).await;
    rig.handle.watch(":1.1", "nfs", "/a").await.unwrap(); // expires at 100 s now
    advance(Duration::from_secs(40)).await;
    rig.handle.invalidate("nfs", "/a", vec![]).await; // at 80 s: expires at 140 s now
    assert_eq!(rig.drain().len(), 1);
    advance(Duration::from_secs(59)).await;
    assert_eq!(rig.handle.stats().await.watches, 1, "alive at 139 s");
    advance(Duration::from_secs(1)).await;
    assert_eq!(rig.handle.stats().await.watches, 0, "expired at 140 s");
    assert_eq!(rig.handle.stats().await.timers, 0);
}

#[tokio::test(start_paused = true)]
async fn a_new_upcall_expiry_counts_from_the_last_activity() {
    let rig = Rig::new().await;
    rig.handle.watch(":1.1", "nfs", "/a").await.unwrap();
    advance(Duration::from_secs(10)).await;
    let shorter = UpcallSettings {
        upcall_expiry: Duration::from_secs(20),
        ..settings()
    };
    rig.handle.update_settings(shorter).await;
    advance(Duration::from_secs(9)).await;
    assert_eq!(rig.handle.stats().await.watches, 1, "alive at 19 s");
    advance(Duration::from_secs(1)).await;
    assert_eq!(rig.handle.stats().await.watches, 0, "expired at 20 s");
}

#[tokio::test(start_paused = true)]
async fn watch_cap_is_queue_full_naming_the_key() {
    let rig = Rig::new().await;
    let h = &rig.handle;
    for resource in ["/a", "/b", "/c"] {
        h.watch(":1.1", "nfs", resource).await.unwrap();
    }
    let refused = h.watch(":1.1", "smb", "/d").await;
    assert!(
        matches!(&refused, Err(CommandError::QueueFull(m)) if m.contains("max_watches_per_client")),
        "{refused:?}"
    );
    // Renewing an existing watch is not a new one; other clients have their own cap.
    h.watch(":1.1", "nfs", "/a").await.unwrap();
    h.watch(":1.2", "smb", "/d").await.unwrap();
    assert_eq!(h.stats().await.watches, 4);
}

#[tokio::test(start_paused = true)]
async fn unknown_and_non_upcall_services_are_refused() {
    let rig = Rig::new().await;
    let h = &rig.handle;
    let no_such = Err(CommandError::NoSuchService("nope".into()));
    assert_eq!(h.watch(":1.1", "nope", "/a").await, no_such);
    assert_eq!(h.unwatch(":1.1", "nope", "/a").await, no_such);
    assert_eq!(
        h.acquire_lease(":1.1", "nope", "/a", "read").await,
        Err(CommandError::NoSuchService("nope".into()))
    );
    let disabled = "service cron does not relay upcalls: set upcall = true";
    assert!(is_invalid_args(
        &h.watch(":1.1", "cron", "/a").await,
        disabled
    ));
    assert!(is_invalid_args(
        &h.acquire_lease(":1.1", "cron", "/a", "write").await,
        disabled
    ));
    let bad_kind = h.acquire_lease(":1.1", "nfs", "/a", "exclusive").await;
    assert!(is_invalid_args(&bad_kind, "\"read\" and \"write\""));
    assert_eq!(h.stats().await, UpcallStats::default());
}
