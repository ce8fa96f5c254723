//! The relay's flow control: it stops taking notifications while too many invalidation
//! signals wait for the bus, and its bounded queue then fills, which is what stops the
//! control channels reading their sockets.

use tokio::sync::{mpsc, watch};

use super::Rig;
use crate::control::Notification;
use crate::upcall::relay::{self, MAX_UNSENT, NOTIFICATION_QUEUE};

fn invalidate(resource: &str) -> Notification {
    Notification {
        service: "nfs".into(),
        method: "upcall.invalidate".into(),
        params: serde_json::json!({"resource": resource, "attrs": ["mtime"]}),
    }
}

#[tokio::test]
async fn relay_waits_for_the_bus_and_its_queue_fills_meanwhile() {
    let mut rig = Rig::new().await;
    rig.handle.watch(":1.1", "nfs", "/a").await.unwrap();
    let (tx, rx) = mpsc::channel(NOTIFICATION_QUEUE);
    let (sent_tx, sent) = watch::channel(0);
    let relay = tokio::spawn(relay::run(rx, rig.handle.clone(), sent));

    // Nothing is sent on the bus: the relay takes MAX_UNSENT + 1 (the one that crosses
    // the bound), and the queue holds NOTIFICATION_QUEUE more. Every send completes, so
    // the relay really took that many.
    let taken = MAX_UNSENT as usize + 1;
    for _ in 0..taken + NOTIFICATION_QUEUE {
        tx.send(invalidate("/a")).await.unwrap();
    }
    assert!(
        matches!(
            tx.try_send(invalidate("/a")),
            Err(mpsc::error::TrySendError::Full(_))
        ),
        "the relay took a notification while {taken} signals were unsent"
    );
    assert_eq!(rig.drain().len(), taken);

    // The bus catches up: the relay goes on with what was queued, and takes more.
    sent_tx.send_replace(taken as u64);
    tx.send(invalidate("/a")).await.unwrap();
    drop(tx);
    relay.await.unwrap();
    assert_eq!(rig.drain().len(), NOTIFICATION_QUEUE + 1);
}

#[tokio::test]
async fn relay_does_not_wait_when_the_bus_side_is_gone() {
    let mut rig = Rig::new().await;
    rig.handle.watch(":1.1", "nfs", "/a").await.unwrap();
    let (tx, rx) = mpsc::channel(NOTIFICATION_QUEUE);
    let (sent_tx, sent) = watch::channel(0);
    drop(sent_tx);
    let relay = tokio::spawn(relay::run(rx, rig.handle.clone(), sent));
    let n = MAX_UNSENT as usize * 2;
    for _ in 0..n {
        tx.send(invalidate("/a")).await.unwrap();
    }
    drop(tx);
    relay.await.unwrap();
    assert_eq!(rig.drain().len(), n);
}
