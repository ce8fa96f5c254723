//! The counts a resource keeps beside its leases must always agree with a scan of them:
//! grant decisions trust the counts, recalls trust the scan.

use proptest::prelude::*;
use tokio::time::Instant;

use crate::upcall::state::{Lease, LeaseKind, Resource};

/// One change to a resource's leases.
#[derive(Debug, Clone)]
enum Op {
    Grant { id: u64, client: u8, write: bool },
    Remove(u64),
    Recall(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..8, 0u8..3, any::<bool>()).prop_map(|(id, client, write)| Op::Grant {
            id,
            client,
            write
        }),
        (0u64..8).prop_map(Op::Remove),
        (0u64..8).prop_map(Op::Recall),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn counts_agree_with_a_scan(ops in proptest::collection::vec(op(), 0..64)) {
        let mut resource = Resource::default();
        let deadline = Instant::now();
        for op in ops {
            match op {
                Op::Grant { id, client, write } => {
                    if !resource.leases().contains_key(&id) {
                        let kind = if write { LeaseKind::Write } else { LeaseKind::Read };
                        let client = format!(":1.{client}");
                        resource.insert_lease(id, Lease { client, kind, recall_deadline: None });
                    }
                }
                Op::Remove(id) => {
                    resource.remove_lease(id);
                }
                Op::Recall(id) => {
                    resource.start_recall(id, deadline);
                }
            }
            for client in [":1.0", ":1.1", ":1.2", ":1.9"] {
                for kind in [LeaseKind::Read, LeaseKind::Write] {
                    prop_assert_eq!(
                        resource.has_conflict(client, kind),
                        !resource.conflicting(client, kind).is_empty()
                    );
                }
            }
            let scanned = resource.leases().values().any(|l| l.recall_deadline.is_some());
            prop_assert_eq!(resource.recalling(), scanned);
        }
        // Emptied, the counts are back to zero too.
        let ids: Vec<u64> = resource.leases().keys().copied().collect();
        for id in ids {
            resource.remove_lease(id);
        }
        prop_assert!(!resource.recalling());
        prop_assert!(!resource.has_conflict(":1.9", LeaseKind::Write));
    }
}
