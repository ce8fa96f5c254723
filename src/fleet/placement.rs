//! Where each group should run: etcd's `groups/<group>/peer` where it holds a valid value,
//! otherwise the configuration's `peer`.
//!
//! Values come from anyone who can write to etcd (`MoveGroup`, failover, `etcdctl put`), so
//! each is checked against this host's configuration before it counts. An invalid one (a
//! group this host does not define, a host not in the group's `peers`, not a host name at
//! all) is reported and ignored: the group stays where it was. Every host applies the same
//! check to the same configuration, so they all ignore the same values.

use std::collections::BTreeMap;

use super::error::FleetError;
use crate::config::Group;
use crate::names;

/// The placement of every group of the local configuration.
#[derive(Debug)]
pub(crate) struct Placements {
    /// The local configuration's groups.
    groups: BTreeMap<String, Group>,
    /// etcd's peer keys as last seen: value and mod revision (0 = no key). The revision is
    /// what a failover transaction compares, so it is kept even for an ignored value.
    stored: BTreeMap<String, (Option<String>, i64)>,
    /// The placement in force: the last valid stored value, else the configured peer.
    current: BTreeMap<String, String>,
}

/// A placement that changed: `group` now runs on `peer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Moved {
    pub group: String,
    pub peer: String,
}

impl Placements {
    pub fn new(groups: BTreeMap<String, Group>) -> Placements {
        let current = groups
            .iter()
            .map(|(name, group)| (name.clone(), group.peer.clone()))
            .collect();
        Placements {
            groups,
            stored: BTreeMap::new(),
            current,
        }
    }

    /// The local configuration's groups.
    pub fn groups(&self) -> &BTreeMap<String, Group> {
        &self.groups
    }

    /// Where `group` runs, if this host defines it.
    pub fn peer(&self, group: &str) -> Option<&str> {
        self.current.get(group).map(String::as_str)
    }

    /// Every group with its placement.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.current.iter()
    }

    /// The mod revision of `group`'s peer key (0: no key), for compare-and-set.
    pub fn mod_revision(&self, group: &str) -> i64 {
        self.stored.get(group).map_or(0, |(_, revision)| *revision)
    }

    /// A reload changed the local groups. Returns the groups whose placement changed
    /// (new groups included; removed ones are dropped silently, the reload removes them).
    pub fn set_groups(&mut self, groups: BTreeMap<String, Group>) -> Vec<Moved> {
        self.groups = groups;
        self.current
            .retain(|name, _| self.groups.contains_key(name));
        let names: Vec<String> = self.groups.keys().cloned().collect();
        names
            .into_iter()
            .filter_map(|group| self.recompute(&group))
            .collect()
    }

    /// etcd's peer key of `group` now holds `value` (`None`: deleted) at `mod_revision`.
    /// `Ok(Some)`: the placement changed; `Ok(None)`: it did not; `Err`: the value is
    /// ignored, and the error says why (for the log).
    pub fn store(
        &mut self,
        group: &str,
        value: Option<&[u8]>,
        mod_revision: i64,
    ) -> Result<Option<Moved>, FleetError> {
        let text = value.map(|bytes| String::from_utf8_lossy(bytes).into_owned());
        let checked = match &text {
            Some(text) => check(&self.groups, group, text).map(|_| ()),
            None => Ok(()),
        };
        self.stored.insert(group.to_owned(), (text, mod_revision));
        checked?;
        Ok(self.recompute(group))
    }

    /// Every peer key etcd holds (from a fresh read): keys not listed are gone.
    pub fn store_all(
        &mut self,
        values: &BTreeMap<String, (Vec<u8>, i64)>,
    ) -> (Vec<Moved>, Vec<FleetError>) {
        let mut moved = Vec::new();
        let mut problems = Vec::new();
        let names: std::collections::BTreeSet<String> =
            self.stored.keys().chain(values.keys()).cloned().collect();
        for group in names {
            let result = match values.get(&group) {
                Some((value, revision)) => self.store(&group, Some(value), *revision),
                None => self.store(&group, None, 0),
            };
            match result {
                Ok(Some(change)) if !moved.contains(&change) => moved.push(change),
                Ok(_) => {}
                Err(problem) if !problems.contains(&problem) => problems.push(problem),
                Err(_) => {}
            }
        }
        (moved, problems)
    }

    /// Brings `current[group]` in line with the stored value and the configuration.
    fn recompute(&mut self, group: &str) -> Option<Moved> {
        let config = self.groups.get(group)?;
        let peer = match self.stored.get(group) {
            Some((Some(value), _)) if check(&self.groups, group, value).is_ok() => value.clone(),
            // An ignored value leaves the placement where it was.
            Some((Some(_), _)) => self
                .current
                .get(group)
                .cloned()
                .unwrap_or_else(|| config.peer.clone()),
            _ => config.peer.clone(),
        };
        if self.current.get(group) == Some(&peer) {
            return None;
        }
        self.current.insert(group.to_owned(), peer.clone());
        Some(Moved {
            group: group.to_owned(),
            peer,
        })
    }
}

/// Whether `group` may be placed on `peer` by this host's configuration: the group exists,
/// `peer` is a host name, and one of the group's `peers` when it lists them.
pub(crate) fn check(
    groups: &BTreeMap<String, Group>,
    group: &str,
    peer: &str,
) -> Result<(), FleetError> {
    let Some(config) = groups.get(group) else {
        return Err(FleetError::UnknownGroup(group.to_owned()));
    };
    let reason = if !names::is_valid_name(peer) {
        "it is not a host name".to_owned()
    } else if !config.peers.is_empty() && !config.peers.iter().any(|p| p == peer) {
        format!(
            "it is not one of the group's peers ({})",
            config.peers.join(", ")
        )
    } else {
        return Ok(());
    };
    Err(FleetError::UnknownHost {
        group: group.to_owned(),
        peer: peer.to_owned(),
        reason,
    })
}

/// Writes `group`'s placement as `peer`, provided `peer`'s report key exists (it is alive).
pub(crate) async fn write(
    client: &etcd_client::Client,
    keys: &super::keys::Keys,
    group: &str,
    peer: &str,
    timing: super::session::Timing,
) -> Result<(), FleetError> {
    use etcd_client::{Compare, CompareOp, Txn, TxnOp};
    let txn = Txn::new()
        .when([Compare::create_revision(
            keys.host(peer),
            CompareOp::Greater,
            0,
        )])
        .and_then([TxnOp::put(keys.peer(group), peer, None)]);
    let response = tokio::time::timeout(timing.request_timeout(), client.kv_client().txn(txn))
        .await
        .map_err(|_| FleetError::Etcd("etcd did not answer in time".into()))?
        .map_err(|error| FleetError::Etcd(error.to_string()))?;
    if response.succeeded() {
        Ok(())
    } else {
        Err(FleetError::UnknownHost {
            group: group.to_owned(),
            peer: peer.to_owned(),
            reason: "no such host is alive in the fleet (it has no report under hosts/)".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> BTreeMap<String, Group> {
        BTreeMap::from([
            (
                "g".to_string(),
                Group {
                    peer: "a".into(),
                    peers: vec!["a".into(), "b".into()],
                },
            ),
            (
                "free".to_string(),
                Group {
                    peer: "a".into(),
                    peers: Vec::new(),
                },
            ),
        ])
    }

    fn moved(group: &str, peer: &str) -> Option<Moved> {
        Some(Moved {
            group: group.into(),
            peer: peer.into(),
        })
    }

    #[test]
    fn etcd_wins_once_written_and_deleting_reverts_to_the_config() {
        let mut placements = Placements::new(groups());
        assert_eq!(placements.peer("g"), Some("a"));
        assert_eq!(placements.store("g", Some(b"b"), 7), Ok(moved("g", "b")));
        assert_eq!(placements.mod_revision("g"), 7);
        assert_eq!(placements.store("g", Some(b"b"), 8), Ok(None));
        assert_eq!(placements.store("g", None, 0), Ok(moved("g", "a")));
        assert_eq!(placements.mod_revision("g"), 0);
    }

    #[test]
    fn bad_values_are_reported_and_ignored() {
        let mut placements = Placements::new(groups());
        placements.store("g", Some(b"b"), 3).unwrap();
        let error = placements.store("g", Some(b"zz"), 4).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("not one of the group's peers (a, b)"),
            "{error}"
        );
        assert_eq!(placements.peer("g"), Some("b"), "the placement stays");
        // The revision is the key's, so that a failover compares against what etcd holds.
        assert_eq!(placements.mod_revision("g"), 4);
        let error = placements.store("nosuch", Some(b"a"), 5).unwrap_err();
        assert_eq!(error, FleetError::UnknownGroup("nosuch".into()));
        let error = placements.store("free", Some(b"a b"), 6).unwrap_err();
        assert!(error.to_string().contains("not a host name"), "{error}");
        // Without `peers`, any host name is a valid placement.
        assert_eq!(
            placements.store("free", Some(b"z"), 7),
            Ok(moved("free", "z"))
        );
    }

    #[test]
    fn a_reload_can_make_a_stored_value_valid() {
        let mut placements = Placements::new(groups());
        assert!(placements.store("g", Some(b"c"), 3).is_err());
        let mut more = groups();
        more.get_mut("g").unwrap().peers.push("c".into());
        assert_eq!(placements.set_groups(more), vec![moved("g", "c").unwrap()]);
    }

    #[test]
    fn a_fresh_read_replaces_everything() {
        let mut placements = Placements::new(groups());
        placements.store("g", Some(b"b"), 3).unwrap();
        let values = BTreeMap::from([("free".to_string(), (b"q".to_vec(), 9))]);
        let (moved_groups, problems) = placements.store_all(&values);
        assert!(problems.is_empty());
        assert_eq!(
            moved_groups,
            vec![moved("free", "q").unwrap(), moved("g", "a").unwrap()]
        );
    }
}
