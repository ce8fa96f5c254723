//! The owner keys: a host serves a group only while it holds `groups/<group>/owner` under
//! its own lease. The key is taken with a create-if-absent transaction, waited for with a
//! watch (never polled), and given back with a delete that only happens if the key is
//! still held by our lease.
//!
//! The per-group state machine ([`Own`]) is driven by `reconcile`, which compares where
//! the group should run with what this host holds, and starts the one step that is due.

use etcd_client::{
    Client, Compare, CompareOp, EventType, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use tokio::time::timeout;

use super::actor::{Actor, Done};
use super::session::Timing;

/// Where this host stands with one group's owner key.
#[derive(Debug)]
pub(crate) enum Own {
    /// Neither held nor wanted.
    Idle,
    /// The create transaction is in flight. It cannot be cancelled: it may already have
    /// created the key, and the answer says which lease holds it.
    Taking,
    /// Someone else holds the key; a watch waits for its deletion.
    Waiting(tokio::task::AbortHandle),
    /// Held under lease `.0`; the applier is not serving it (yet, or any more).
    Held(i64),
    /// Held under lease `.0`, and the applier was told to serve it.
    Serving(i64),
    /// The applier was told to stop serving; the key stays held (under the lease, if
    /// any, that may still hold it) until the applier calls `release`.
    Stopping(Option<i64>),
    /// The delete transaction is in flight.
    Releasing,
}

/// The answer to a take attempt.
#[derive(Debug)]
pub(crate) enum Taken {
    /// The key is ours now (created, or it already was ours under this lease).
    Ours,
    /// Another holder has it, as of etcd `revision`.
    Busy { owner: String, revision: i64 },
}

/// Creates `key` = `host` under `lease` if it does not exist.
pub(crate) async fn take(
    client: &Client,
    key: &str,
    host: &str,
    lease: i64,
    timing: Timing,
) -> Result<Taken, String> {
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key,
            host,
            Some(PutOptions::new().with_lease(lease)),
        )])
        .or_else([TxnOp::get(key, None)]);
    let response = timeout(timing.request_timeout(), client.kv_client().txn(txn))
        .await
        .map_err(|_| "etcd did not answer in time".to_owned())?
        .map_err(|error| error.to_string())?;
    if response.succeeded() {
        return Ok(Taken::Ours);
    }
    let revision = response.header().map_or(0, |h| h.revision());
    let holder = response.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => get.kvs().first().cloned(),
        _ => None,
    });
    match holder {
        Some(kv) if kv.lease() == lease => Ok(Taken::Ours),
        Some(kv) => Ok(Taken::Busy {
            owner: String::from_utf8_lossy(kv.value()).into_owned(),
            revision,
        }),
        // Deleted between the compare and the get cannot happen inside one transaction;
        // treat it as busy at this revision so the watch decides.
        None => Ok(Taken::Busy {
            owner: String::new(),
            revision,
        }),
    }
}

/// Waits until `key` is deleted after `revision` (the revision at which it was seen held).
pub(crate) async fn wait_free(client: Client, key: String, revision: i64) -> Result<(), String> {
    let options = WatchOptions::new().with_start_revision(revision + 1);
    let mut stream = client
        .watch_client()
        .watch(key.as_str(), Some(options))
        .await
        .map_err(|error| error.to_string())?;
    loop {
        match stream.message().await {
            Ok(Some(response)) if response.canceled() => {
                return Err(format!("watch cancelled: {}", response.cancel_reason()));
            }
            Ok(Some(response)) => {
                if response
                    .events()
                    .iter()
                    .any(|event| event.event_type() == EventType::Delete)
                {
                    return Ok(());
                }
            }
            Ok(None) => return Err("the watch stream ended".into()),
            Err(error) => return Err(error.to_string()),
        }
    }
}

/// Deletes `key` if lease `lease` still holds it. `Ok(false)`: it did not (any more).
pub(crate) async fn give_back(
    client: &Client,
    key: &str,
    lease: i64,
    timing: Timing,
) -> Result<bool, String> {
    let txn = Txn::new()
        .when([Compare::lease(key, CompareOp::Equal, lease)])
        .and_then([TxnOp::delete(key, None)]);
    let response = timeout(timing.request_timeout(), client.kv_client().txn(txn))
        .await
        .map_err(|_| "etcd did not answer in time".to_owned())?
        .map_err(|error| error.to_string())?;
    Ok(response.succeeded())
}

impl Actor {
    /// Starts the step that is due for `group` (see [`Own`]).
    pub(crate) fn reconcile(&mut self, group: &str) {
        let placed = self.placements.peer(group).map(str::to_owned);
        let here = placed.as_deref() == Some(self.host.as_str());
        let live = self.live_lease();
        let own = self.own.remove(group).unwrap_or(Own::Idle);
        let next = match own {
            Own::Idle => match live {
                Some(live) if here => self.start_take(group, live),
                _ => Own::Idle,
            },
            Own::Waiting(task) if !(here && live.is_some()) => {
                task.abort();
                Own::Idle
            }
            // Held under a lease that is gone: nothing is held any more.
            Own::Held(lease) if Some(lease) != self.lease_id() => match live {
                Some(live) if here => self.start_take(group, live),
                _ => Own::Idle,
            },
            Own::Held(lease) if here && live == Some(lease) => {
                self.show(group, &self.host.clone(), None);
                Own::Serving(lease)
            }
            Own::Held(lease) if !here && live.is_some() => self.start_give_back(group, lease),
            Own::Serving(lease) if !here => Own::Stopping(Some(lease)),
            other => other,
        };
        let serving = matches!(next, Own::Serving(_));
        self.own.insert(group.to_owned(), next);
        if let Some(peer) = placed
            && !here
            && !serving
        {
            self.show(group, &peer, None);
        }
    }

    fn start_take(&mut self, group: &str, lease: i64) -> Own {
        let client = self.client.clone();
        let key = self.keys.owner(group);
        let host = self.host.clone();
        let timing = self.timing;
        let done = self.done.clone();
        let group = group.to_owned();
        tokio::spawn(async move {
            let result = take(&client, &key, &host, lease, timing).await;
            let _ = done.send(Done::Take {
                group,
                lease,
                result,
            });
        });
        Own::Taking
    }

    fn start_give_back(&mut self, group: &str, lease: i64) -> Own {
        let client = self.client.clone();
        let key = self.keys.owner(group);
        let timing = self.timing;
        let done = self.done.clone();
        let group = group.to_owned();
        tokio::spawn(async move {
            let result = give_back(&client, &key, lease, timing).await;
            let _ = done.send(Done::GiveBack { group, result });
        });
        Own::Releasing
    }

    /// A take transaction answered.
    pub(crate) fn taken(&mut self, group: String, lease: i64, result: Result<Taken, String>) {
        let next = match result {
            // Held under `lease`, whether or not that is still our lease: `reconcile`
            // serves it, gives it back, or forgets it (a lease that is gone holds nothing).
            Ok(Taken::Ours) => Own::Held(lease),
            Ok(Taken::Busy { owner, revision }) => {
                let here = self.placements.peer(&group) == Some(self.host.as_str());
                if here && self.live_lease().is_some() {
                    tracing::info!(group, owner, "waiting for the group's owner to let it go");
                    let client = self.client.clone();
                    let key = self.keys.owner(&group);
                    let done = self.done.clone();
                    let name = group.clone();
                    let task = tokio::spawn(async move {
                        let result = wait_free(client, key, revision).await;
                        let _ = done.send(Done::Freed {
                            group: name,
                            result,
                        });
                    });
                    Own::Waiting(task.abort_handle())
                } else {
                    Own::Idle
                }
            }
            Err(error) => {
                tracing::warn!(group, error, "cannot take the group's owner key; retrying");
                self.retry_soon();
                Own::Idle
            }
        };
        self.own.insert(group.clone(), next);
        self.reconcile(&group);
    }

    /// The owner key of a group this host waited for was deleted (or the wait failed).
    pub(crate) fn freed(&mut self, group: String, result: Result<(), String>) {
        if !matches!(self.own.get(&group), Some(Own::Waiting(_))) {
            return;
        }
        if let Err(error) = result {
            tracing::warn!(
                group,
                error,
                "lost the watch on the group's owner key; retrying"
            );
            self.retry_soon();
        }
        self.own.insert(group.clone(), Own::Idle);
        self.reconcile(&group);
    }

    /// A give-back transaction answered.
    pub(crate) fn given_back(&mut self, group: String, result: Result<bool, String>) {
        if let Err(error) = &result {
            tracing::warn!(
                group,
                error,
                "cannot delete the group's owner key; retrying"
            );
            self.retry_soon();
        }
        let next = match (result, self.lease_id()) {
            (Err(_), Some(lease)) => Own::Held(lease),
            _ => Own::Idle,
        };
        self.own.insert(group.clone(), next);
        self.reconcile(&group);
    }

    /// The applier stopped serving `group`.
    pub(crate) fn released(&mut self, group: &str) {
        let next = match self.own.remove(group) {
            Some(Own::Stopping(Some(lease))) => Own::Held(lease),
            Some(Own::Stopping(None)) | None => Own::Idle,
            // A group the applier was not told to stop: nothing changes.
            Some(other) => other,
        };
        self.own.insert(group.to_owned(), next);
        self.reconcile(group);
    }
}
