//! Follows everything below the fleet's prefix: one read of the whole range, then one
//! watch from the revision after it, so every change reaches the actor exactly once and in
//! order, and nothing is polled.
//!
//! A broken watch (etcd restarted, the connection dropped, the revision compacted) ends
//! the task with [`SyncNews::Broken`]; the actor starts a new one, which reads afresh.

use etcd_client::{Client, EventType, GetOptions, KeyValue, WatchOptions};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::timeout;

use super::session::Timing;

/// One key as read or as changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub key: Vec<u8>,
    /// `None`: the key was deleted.
    pub value: Option<Vec<u8>>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub lease: i64,
}

impl Record {
    fn of(kv: &KeyValue, deleted: bool) -> Record {
        Record {
            key: kv.key().to_vec(),
            value: (!deleted).then(|| kv.value().to_vec()),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
            lease: kv.lease(),
        }
    }
}

/// What a sync task reports; `generation` tells a current task from a replaced one.
#[derive(Debug)]
pub(crate) enum SyncNews {
    /// Every key below the prefix at `revision`.
    Snapshot {
        generation: u64,
        records: Vec<Record>,
        revision: i64,
    },
    /// Changes after the snapshot, in revision order.
    Changes {
        generation: u64,
        records: Vec<Record>,
    },
    /// The task ended; a new one must read afresh.
    Broken { generation: u64, reason: String },
}

/// Reads everything below `root`, then watches it, until the watch breaks or `news`
/// has no receiver.
pub(crate) async fn sync(
    client: Client,
    root: String,
    generation: u64,
    timing: Timing,
    news: UnboundedSender<SyncNews>,
) {
    let broken = |reason: String| SyncNews::Broken { generation, reason };
    let mut kv = client.kv_client();
    let read = timeout(
        timing.request_timeout(),
        kv.get(root.as_str(), Some(GetOptions::new().with_prefix())),
    )
    .await;
    let response = match read {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => return drop(news.send(broken(format!("cannot read: {error}")))),
        Err(_) => return drop(news.send(broken("etcd did not answer in time".into()))),
    };
    let revision = response.header().map_or(0, |h| h.revision());
    let records = response
        .kvs()
        .iter()
        .map(|kv| Record::of(kv, false))
        .collect();
    let snapshot = SyncNews::Snapshot {
        generation,
        records,
        revision,
    };
    if news.send(snapshot).is_err() {
        return;
    }
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let mut watcher = client.watch_client();
    let mut stream = match timeout(
        timing.request_timeout(),
        watcher.watch(root.as_str(), Some(options)),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => return drop(news.send(broken(format!("cannot watch: {error}")))),
        Err(_) => return drop(news.send(broken("etcd did not answer in time".into()))),
    };
    loop {
        let reason = match stream.message().await {
            Ok(Some(response)) if response.canceled() || response.compact_revision() > 0 => {
                format!(
                    "watch cancelled (compacted at {}): {}",
                    response.compact_revision(),
                    response.cancel_reason()
                )
            }
            Ok(Some(response)) => {
                let records: Vec<Record> = response
                    .events()
                    .iter()
                    .filter_map(|event| {
                        let deleted = event.event_type() == EventType::Delete;
                        event.kv().map(|kv| Record::of(kv, deleted))
                    })
                    .collect();
                if !records.is_empty()
                    && news
                        .send(SyncNews::Changes {
                            generation,
                            records,
                        })
                        .is_err()
                {
                    return;
                }
                continue;
            }
            Ok(None) => "the watch stream ended".into(),
            Err(error) => format!("watch: {error}"),
        };
        let _ = news.send(broken(reason));
        return;
    }
}
