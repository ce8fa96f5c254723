//! Failover: when a host's report key disappears (its lease expired or was revoked) and
//! `failover = true`, each group placed on it moves to the next live host of the group's
//! `peers` list, after the dead one and wrapping around.
//!
//! Every live host sees the deletion and tries the same move, as one transaction that
//! compares the group's peer key with the revision it saw, checks that the dead host is
//! still dead and the candidate alive: the first transaction changes the peer key, so
//! every other one fails its compare. Exactly one host wins; a host that lost the race
//! learns the outcome from the watch like everyone else.
//!
//! A group with no live candidate is remembered as an orphan and retried when a host
//! appears. A group without `peers` has no candidates and never fails over.

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use tokio::time::timeout;

use super::actor::{Actor, Done};
use super::session::Timing;

/// The host to move a group to from `dead`: the first alive one after `dead` in `peers`,
/// wrapping around (from the start when `dead` is not listed), never `dead` itself.
pub(crate) fn candidate<'a>(
    peers: &'a [String],
    dead: &str,
    alive: impl Fn(&str) -> bool,
) -> Option<&'a String> {
    let start = peers.iter().position(|p| p == dead).map_or(0, |i| i + 1);
    peers
        .iter()
        .cycle()
        .skip(start)
        .take(peers.len())
        .find(|peer| *peer != dead && alive(peer))
}

/// Moves `group` from `dead` to `to`, if its peer key still has `revision` (0: no key),
/// `dead`'s report is still gone and `to`'s exists. `Ok(false)`: the compare failed.
pub(crate) async fn fail_over(
    client: &Client,
    keys: &super::keys::Keys,
    group: &str,
    dead: &str,
    to: &str,
    revision: i64,
    timing: Timing,
) -> Result<bool, String> {
    let peer_key = keys.peer(group);
    let txn = Txn::new()
        .when([
            Compare::mod_revision(peer_key.as_str(), CompareOp::Equal, revision),
            Compare::create_revision(keys.host(dead), CompareOp::Equal, 0),
            Compare::create_revision(keys.host(to), CompareOp::Greater, 0),
        ])
        .and_then([TxnOp::put(peer_key, to, None)]);
    let response = timeout(timing.request_timeout(), client.kv_client().txn(txn))
        .await
        .map_err(|_| "etcd did not answer in time".to_owned())?
        .map_err(|error| error.to_string())?;
    Ok(response.succeeded())
}

impl Actor {
    /// Host `dead`'s report key was deleted: move its groups away, if failover is on.
    pub(crate) fn host_died(&mut self, dead: &str) {
        if !self.failover {
            return;
        }
        let groups: Vec<String> = self
            .placements
            .iter()
            .filter(|(_, peer)| *peer == dead)
            .map(|(group, _)| group.clone())
            .collect();
        for group in groups {
            self.orphans.insert(group.clone(), dead.to_owned());
            self.try_fail_over(&group);
        }
    }

    /// A host's report key appeared: orphans may have a candidate now, and the orphans of
    /// a host that came back are its own again.
    pub(crate) fn host_appeared(&mut self, host: &str) {
        self.orphans.retain(|_, dead| dead != host);
        let groups: Vec<String> = self.orphans.keys().cloned().collect();
        for group in groups {
            self.try_fail_over(&group);
        }
    }

    /// Tries to move orphan `group` to its next live candidate.
    pub(crate) fn try_fail_over(&mut self, group: &str) {
        let Some(dead) = self.orphans.get(group).cloned() else {
            return;
        };
        if self.placements.peer(group) != Some(dead.as_str()) || self.live_lease().is_none() {
            // Moved by someone else already, or we cannot act now (retried on reconnect).
            if self.placements.peer(group) != Some(dead.as_str()) {
                self.orphans.remove(group);
            }
            return;
        }
        let peers = self
            .placements
            .groups()
            .get(group)
            .map(|g| g.peers.clone())
            .unwrap_or_default();
        let Some(to) = candidate(&peers, &dead, |h| self.reports.contains_key(h)).cloned() else {
            tracing::warn!(
                group,
                dead,
                "no live peer to fail the group over to; waiting for one"
            );
            return;
        };
        let revision = self.placements.mod_revision(group);
        let client = self.client.clone();
        let keys = self.keys.clone();
        let timing = self.timing;
        let done = self.done.clone();
        let group = group.to_owned();
        tokio::spawn(async move {
            let result = fail_over(&client, &keys, &group, &dead, &to, revision, timing).await;
            let _ = done.send(Done::FailedOver {
                group,
                dead,
                to,
                result,
            });
        });
    }

    /// A failover transaction answered.
    pub(crate) fn failed_over(
        &mut self,
        group: String,
        dead: String,
        to: String,
        result: Result<bool, String>,
    ) {
        match result {
            Ok(true) => {
                tracing::info!(group, dead, to, "failed the group over");
                self.orphans.remove(&group);
            }
            // Another host won, or the state moved on: the watch brings the outcome.
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(group, dead, error, "failover transaction failed; retrying");
                self.retry_soon();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn the_next_live_peer_after_the_dead_one_wrapping_around() {
        let list = peers(&["a", "b", "c"]);
        let all = |_: &str| true;
        assert_eq!(candidate(&list, "a", all).unwrap(), "b");
        assert_eq!(candidate(&list, "b", all).unwrap(), "c");
        assert_eq!(candidate(&list, "c", all).unwrap(), "a");
        assert_eq!(candidate(&list, "a", |h| h != "b").unwrap(), "c");
        assert_eq!(candidate(&list, "x", all).unwrap(), "a");
        assert_eq!(candidate(&list, "a", |h| h == "a"), None);
        assert_eq!(candidate(&[], "a", all), None);
    }
}
