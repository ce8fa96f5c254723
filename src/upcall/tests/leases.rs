//! Leases: sharing, recall then grant, revocation at the timeout, FIFO, service conflicts,
//! clients leaving, caps, services going away.

use std::collections::BTreeSet;

use tokio::time::{Duration, Instant, advance};

use super::{RECALL, Rig, is_invalid_args, recall};
use crate::error::CommandError;
use crate::upcall::{UpcallSettings, UpcallStats};

#[tokio::test(start_paused = true)]
async fn read_leases_share() {
    let mut rig = Rig::new().await;
    let a = rig.lease(":1.1", "/f", "read").await;
    let b = rig.lease(":1.2", "/f", "read").await;
    assert_ne!(a, b);
    assert_eq!(rig.drain(), vec![]);
    assert_eq!(rig.handle.stats().await.leases, 2);
}

#[tokio::test(start_paused = true)]
async fn write_recalls_each_holder_and_is_granted_when_they_release() {
    let mut rig = Rig::new().await;
    let a = rig.lease(":1.1", "/f", "read").await;
    let b = rig.lease(":1.2", "/f", "read").await;
    let start = Instant::now();
    let writer = rig.spawn_acquire(":1.3", "/f", "write").await;
    assert_eq!(
        rig.drain(),
        vec![recall(":1.1", a, "/f"), recall(":1.2", b, "/f")]
    );

    advance(Duration::from_secs(1)).await;
    rig.handle.release_lease(":1.1", a).await.unwrap();
    assert_eq!(rig.handle.stats().await.pending, 1, ":1.2 still holds");
    advance(Duration::from_secs(1)).await;
    rig.handle.release_lease(":1.2", b).await.unwrap();

    let granted = writer.await.unwrap().unwrap();
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(2),
        "granted on release"
    );
    assert!(granted > b);
    assert_eq!(rig.drain(), vec![]);
    let stats = rig.handle.stats().await;
    assert_eq!((stats.leases, stats.pending, stats.timers), (1, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn an_ignored_recall_is_revoked_at_exactly_the_timeout() {
    let mut rig = Rig::new().await;
    let held = rig.lease(":1.1", "/f", "write").await;
    let start = Instant::now();
    let reader = rig.handle.acquire_lease(":1.2", "nfs", "/f", "read").await;
    assert_eq!(start.elapsed(), RECALL);
    assert!(reader.is_ok());
    assert_eq!(rig.drain(), vec![recall(":1.1", held, "/f")]);
    // The revoked holder is told nothing more, and its lease is gone.
    assert!(is_invalid_args(
        &rig.handle.release_lease(":1.1", held).await,
        "no lease"
    ));
    assert_eq!(rig.handle.stats().await.leases, 1);
}

#[tokio::test(start_paused = true)]
async fn conflicting_requests_are_granted_in_fifo_order() {
    let mut rig = Rig::new().await;
    let a = rig.lease(":1.1", "/f", "read").await;
    let b_task = rig.spawn_acquire(":1.2", "/f", "write").await;
    // Compatible with :1.1's read, but queued behind the write: it waits (no starvation).
    let c_task = rig.spawn_acquire(":1.3", "/f", "read").await;
    assert_eq!(rig.handle.stats().await.pending, 2);
    assert_eq!(rig.drain(), vec![recall(":1.1", a, "/f")]);

    rig.handle.release_lease(":1.1", a).await.unwrap();
    let b = b_task.await.unwrap().unwrap();
    // Now the read at the front conflicts with the write just granted.
    assert_eq!(rig.drain(), vec![recall(":1.2", b, "/f")]);
    assert_eq!(rig.handle.stats().await.pending, 1);

    rig.handle.release_lease(":1.2", b).await.unwrap();
    let c = c_task.await.unwrap().unwrap();
    assert!(a < b && b < c);
    assert_eq!(rig.handle.stats().await.leases, 1);
}

#[tokio::test(start_paused = true)]
async fn own_leases_do_not_conflict() {
    let mut rig = Rig::new().await;
    let read = rig.lease(":1.1", "/f", "read").await;
    let write = rig.lease(":1.1", "/f", "write").await;
    assert_eq!(rig.drain(), vec![], "no recall of one's own lease");
    // Another reader conflicts with the write only, not with the read.
    let other = rig.spawn_acquire(":1.2", "/f", "read").await;
    assert_eq!(rig.drain(), vec![recall(":1.1", write, "/f")]);
    rig.handle.release_lease(":1.1", write).await.unwrap();
    other.await.unwrap().unwrap();
    assert_eq!(rig.handle.stats().await.leases, 2);
    rig.handle.release_lease(":1.1", read).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_conflict_from_the_service_recalls_then_revokes() {
    let mut rig = Rig::new().await;
    let a = rig.lease(":1.1", "/f", "read").await;
    let b = rig.lease(":1.2", "/f", "read").await;
    let start = Instant::now();
    rig.handle.conflict("nfs", "/f").await;
    assert_eq!(
        rig.drain(),
        vec![recall(":1.1", a, "/f"), recall(":1.2", b, "/f")]
    );
    // While the recall runs nothing is granted, not even a compatible read.
    let late = rig.spawn_acquire(":1.3", "/f", "read").await;
    rig.handle.release_lease(":1.1", a).await.unwrap();
    assert_eq!(rig.handle.stats().await.pending, 1);

    late.await.unwrap().unwrap();
    assert_eq!(start.elapsed(), RECALL, ":1.2 revoked at the timeout");
    assert!(is_invalid_args(
        &rig.handle.release_lease(":1.2", b).await,
        "no lease"
    ));
    // A conflict on a resource nobody leases does nothing.
    rig.handle.conflict("nfs", "/other").await;
    assert_eq!(rig.drain(), vec![]);
}

#[tokio::test(start_paused = true)]
async fn a_client_leaving_drops_everything_and_unblocks_the_queue() {
    let mut rig = Rig::new().await;
    rig.handle.watch(":1.1", "nfs", "/w").await.unwrap();
    let held = rig.lease(":1.1", "/f", "write").await;
    let other = rig.lease(":1.2", "/g", "write").await;
    let waiting = rig.spawn_acquire(":1.3", "/f", "write").await;
    let doomed = rig.spawn_acquire(":1.1", "/g", "read").await;
    let recalls = rig.drain();
    assert_eq!(
        recalls,
        vec![recall(":1.1", held, "/f"), recall(":1.2", other, "/g")]
    );

    let start = Instant::now();
    rig.handle.client_gone(":1.1").await;
    waiting.await.unwrap().unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO, "granted at once");
    assert!(is_invalid_args(&doomed.await.unwrap(), "left the bus"));

    rig.handle.invalidate("nfs", "/w", vec![]).await;
    assert_eq!(rig.drain(), vec![], "nothing more for the departed client");
    let stats = rig.handle.stats().await;
    assert_eq!((stats.watches, stats.pending), (0, 0));
    assert_eq!(stats.clients, 2, ":1.2 and :1.3 hold leases");
    // The recall of :1.2 was sent, so it runs to its end even though its cause is gone.
    advance(RECALL).await;
    assert_eq!(rig.handle.stats().await.leases, 1);
}

#[tokio::test(start_paused = true)]
async fn lease_cap_counts_pending_acquisitions() {
    let rig = Rig::new().await;
    let f = rig.lease(":1.1", "/f", "read").await;
    rig.lease(":1.1", "/g", "read").await;
    rig.lease(":1.2", "/h", "write").await;
    let _queued = rig.spawn_acquire(":1.1", "/h", "read").await;
    let refused = rig.handle.acquire_lease(":1.1", "nfs", "/i", "read").await;
    assert!(
        matches!(&refused, Err(CommandError::QueueFull(m)) if m.contains("max_leases_per_client")),
        "{refused:?}"
    );
    rig.handle.release_lease(":1.1", f).await.unwrap();
    rig.lease(":1.1", "/i", "read").await;
}

#[tokio::test(start_paused = true)]
async fn only_the_holder_releases() {
    let rig = Rig::new().await;
    let held = rig.lease(":1.1", "/f", "write").await;
    let queued = rig.spawn_acquire(":1.2", "/f", "write").await;
    let stranger = rig.handle.release_lease(":1.2", held).await;
    assert!(is_invalid_args(&stranger, "only its holder"));
    assert!(is_invalid_args(
        &rig.handle.release_lease(":1.2", held + 1).await,
        "not been granted yet"
    ));
    assert!(is_invalid_args(
        &rig.handle.release_lease(":1.1", 999).await,
        "no lease 999"
    ));
    rig.handle.release_lease(":1.1", held).await.unwrap();
    queued.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn lease_ids_are_unique_and_never_reused() {
    let rig = Rig::new().await;
    let mut seen = BTreeSet::new();
    for round in 0..50 {
        let kind = if round % 2 == 0 { "read" } else { "write" };
        let id = rig.lease(":1.1", "/f", kind).await;
        assert!(seen.insert(id), "id {id} handed out twice");
        rig.handle.release_lease(":1.1", id).await.unwrap();
    }
    assert_eq!(rig.handle.stats().await, UpcallStats::default());
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_acquisition_is_not_granted() {
    let rig = Rig::new().await;
    let held = rig.lease(":1.1", "/f", "write").await;
    let abandoned = rig.spawn_acquire(":1.2", "/f", "write").await;
    abandoned.abort();
    let _ = abandoned.await;
    rig.handle.release_lease(":1.1", held).await.unwrap();
    assert_eq!(rig.handle.stats().await, UpcallStats::default());
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_acquisition_recalls_nobody_when_its_turn_comes() {
    let mut rig = Rig::new().await;
    let held = rig.lease(":1.1", "/f", "write").await;
    let reader = rig.spawn_acquire(":1.2", "/f", "read").await;
    let abandoned = rig.spawn_acquire(":1.3", "/f", "write").await;
    abandoned.abort();
    let _ = abandoned.await;
    rig.handle.release_lease(":1.1", held).await.unwrap();
    let read = reader.await.unwrap().unwrap();
    // The abandoned write, now at the front, would conflict with the read: no recall.
    assert_eq!(rig.drain(), vec![recall(":1.1", held, "/f")]);
    let stats = rig.handle.stats().await;
    assert_eq!((stats.leases, stats.pending, stats.clients), (1, 0, 1));
    rig.handle.release_lease(":1.2", read).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn durations_of_u64_max_seconds_do_not_overflow() {
    let huge = UpcallSettings {
        lease_recall_timeout: Duration::from_secs(u64::MAX),
        upcall_expiry: Duration::from_secs(u64::MAX),
        ..super::settings()
    };
    let mut rig = Rig::with(huge.clone()).await;
    rig.handle.watch(":1.1", "nfs", "/w").await.unwrap();
    rig.handle.invalidate("nfs", "/w", vec![]).await;
    let held = rig.lease(":1.1", "/f", "write").await;
    let waiting = rig.spawn_acquire(":1.2", "/f", "read").await;
    assert_eq!(rig.drain().last(), Some(&recall(":1.1", held, "/f")));
    rig.handle
        .update_settings(UpcallSettings {
            upcall_expiry: Duration::from_secs(1),
            ..huge
        })
        .await;
    rig.handle.release_lease(":1.1", held).await.unwrap();
    waiting.await.unwrap().unwrap();
    // The saturated watch had no known last activity: the new expiry counts from now.
    assert_eq!(rig.handle.stats().await.watches, 1);
    advance(Duration::from_secs(1)).await;
    assert_eq!(rig.handle.stats().await.watches, 0);
}

#[tokio::test(start_paused = true)]
async fn services_losing_upcall_or_removed_drop_their_state() {
    let mut rig = Rig::new().await;
    let h = rig.handle.clone();
    h.watch(":1.1", "nfs", "/f").await.unwrap();
    h.watch(":1.1", "smb", "/f").await.unwrap();
    rig.lease(":1.1", "/f", "write").await;
    let queued = rig.spawn_acquire(":1.2", "/f", "read").await;
    let smb_lease = h.acquire_lease(":1.1", "smb", "/f", "write").await.unwrap();
    let smb_task = {
        let h = h.clone();
        tokio::spawn(async move { h.acquire_lease(":1.2", "smb", "/f", "read").await })
    };
    while h.stats().await.pending < 2 {
        tokio::task::yield_now().await;
    }
    rig.drain();

    h.set_services(vec![("nfs".into(), false), ("smb".into(), true)])
        .await;
    assert!(is_invalid_args(&queued.await.unwrap(), "set upcall = true"));
    let stats = h.stats().await;
    assert_eq!((stats.watches, stats.leases, stats.pending), (1, 1, 1));

    h.set_services(vec![]).await;
    assert_eq!(
        smb_task.await.unwrap(),
        Err(CommandError::NoSuchService("smb".into()))
    );
    assert_eq!(h.stats().await, UpcallStats::default());
    // The recalls were pending; the holders hear nothing further, not even at the timeout.
    advance(RECALL * 2).await;
    assert_eq!(rig.drain(), vec![]);
    assert!(smb_lease > 0);
}

#[tokio::test(start_paused = true)]
async fn a_second_recall_neither_repeats_the_message_nor_extends_the_deadline() {
    let mut rig = Rig::new().await;
    let held = rig.lease(":1.1", "/f", "read").await;
    let start = Instant::now();
    let writer = rig.spawn_acquire(":1.2", "/f", "write").await;
    advance(Duration::from_secs(2)).await;
    rig.handle.conflict("nfs", "/f").await;
    writer.await.unwrap().unwrap();
    assert_eq!(
        start.elapsed(),
        RECALL,
        "revoked at the first recall's deadline"
    );
    assert_eq!(rig.drain(), vec![recall(":1.1", held, "/f")]);
}

#[tokio::test(start_paused = true)]
async fn a_zero_recall_timeout_revokes_at_once_after_telling_the_holder() {
    let zero = UpcallSettings {
        lease_recall_timeout: Duration::ZERO,
        ..super::settings()
    };
    let mut rig = Rig::with(zero).await;
    let held = rig.lease(":1.1", "/f", "write").await;
    let start = Instant::now();
    rig.lease(":1.2", "/f", "write").await;
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(rig.drain(), vec![recall(":1.1", held, "/f")]);
    assert_eq!(rig.handle.stats().await.leases, 1);
}
