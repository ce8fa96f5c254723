//! The fleet's key layout in etcd, below the configured prefix:
//!
//! | key | value | lease |
//! |---|---|---|
//! | `<prefix>/hosts/<host>` | the host's JSON report ([`super::reports::HostReport`]) | the host's |
//! | `<prefix>/groups/<group>/peer` | the host the group should run on | none |
//! | `<prefix>/groups/<group>/owner` | the host serving the group now | the owner's |
//!
//! A host's report key doubles as its liveness: it exists exactly while the host's lease
//! does. Host and group names are config names (`[A-Za-z0-9_.@-]`), so neither holds a `/`
//! and every key parses back unambiguously.

/// The keys of one fleet (one prefix).
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// `<prefix>/`, with the trailing slash: the range every key of the fleet is in.
    root: String,
}

/// A fleet key, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    Host(String),
    Peer(String),
    Owner(String),
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            root: format!("{}/", prefix.trim_end_matches('/')),
        }
    }

    /// Every key of the fleet starts with this.
    pub fn root(&self) -> &str {
        &self.root
    }

    pub fn host(&self, host: &str) -> String {
        format!("{}hosts/{host}", self.root)
    }

    pub fn peer(&self, group: &str) -> String {
        format!("{}groups/{group}/peer", self.root)
    }

    pub fn owner(&self, group: &str) -> String {
        format!("{}groups/{group}/owner", self.root)
    }

    /// What `key` is; `None` for keys below the prefix that corral does not write.
    pub fn parse(&self, key: &[u8]) -> Option<Key> {
        let rest = std::str::from_utf8(key).ok()?.strip_prefix(&self.root)?;
        if let Some(host) = rest.strip_prefix("hosts/") {
            return (!host.is_empty() && !host.contains('/')).then(|| Key::Host(host.to_owned()));
        }
        let (group, leaf) = rest.strip_prefix("groups/")?.split_once('/')?;
        if group.is_empty() {
            return None;
        }
        match leaf {
            "peer" => Some(Key::Peer(group.to_owned())),
            "owner" => Some(Key::Owner(group.to_owned())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let keys = Keys::new("/corral");
        assert_eq!(keys.host("a"), "/corral/hosts/a");
        assert_eq!(keys.peer("g"), "/corral/groups/g/peer");
        assert_eq!(keys.owner("g"), "/corral/groups/g/owner");
        assert_eq!(keys.parse(b"/corral/hosts/a"), Some(Key::Host("a".into())));
        assert_eq!(
            keys.parse(keys.peer("g").as_bytes()),
            Some(Key::Peer("g".into()))
        );
        assert_eq!(
            keys.parse(keys.owner("g").as_bytes()),
            Some(Key::Owner("g".into()))
        );
    }

    #[test]
    fn foreign_keys_are_not_ours() {
        let keys = Keys::new("/corral");
        for key in [
            &b"/corralx/hosts/a"[..],
            b"/corral/hosts/",
            b"/corral/hosts/a/b",
            b"/corral/groups/g/other",
            b"/corral/groups//peer",
            b"/corral/groups/g",
            b"/other/hosts/a",
            b"/corral/hosts/\xff",
        ] {
            assert_eq!(keys.parse(key), None, "{}", String::from_utf8_lossy(key));
        }
    }
}
