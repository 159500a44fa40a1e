//! The replicas of one shard, as the applied cluster state describes them, and the pure
//! rules that pick which of them take a write and which answer a read.
//!
//! - A write goes to every replica that is not Dead or in ManualRecovery (Active, Partial,
//!   Initializing and Listener replicas all take writes, so a replica being filled does
//!   not miss any), and only if the shard has an Active replica at all.
//! - A read goes to one Active replica, this peer's own first (no network hop), then the
//!   others in peer order as fallbacks.
//! - A write is acknowledged once `write_consistency_factor` replicas took it, or every
//!   replica it was sent to when there are fewer.

use std::collections::BTreeMap;

use crate::consensus::state::ReplicaState;
use crate::error::{Error, Result};
use crate::types::{PeerId, ShardId};

#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaSet {
    pub collection: String,
    pub shard: ShardId,
    /// The peer asking: its own replica is read first.
    pub this_peer: PeerId,
    pub replicas: BTreeMap<PeerId, ReplicaState>,
}

impl ReplicaSet {
    /// The peers a write goes to, or 503 when the shard has no Active replica.
    pub fn write_targets(&self) -> Result<Vec<PeerId>> {
        self.require_active()?;
        Ok(self
            .replicas
            .iter()
            .filter(|(_, state)| {
                !matches!(state, ReplicaState::Dead | ReplicaState::ManualRecovery)
            })
            .map(|(peer, _)| *peer)
            .collect())
    }

    /// The Active replicas in the order to ask them for a read (this peer's first), or
    /// 503 when there is none.
    pub fn read_order(&self) -> Result<Vec<PeerId>> {
        self.require_active()?;
        let mut order: Vec<PeerId> = self
            .replicas
            .iter()
            .filter(|(_, state)| **state == ReplicaState::Active)
            .map(|(peer, _)| *peer)
            .collect();
        order.sort_by_key(|peer| (*peer != self.this_peer, *peer));
        Ok(order)
    }

    /// How many replicas must take a write sent to `targets` replicas.
    pub fn required_acks(write_consistency_factor: u32, targets: usize) -> usize {
        (write_consistency_factor.max(1) as usize)
            .min(targets)
            .max(1)
    }

    /// The peer that recovers this shard's Dead replicas: the Active replica with the lowest
    /// peer id, so that exactly one peer (the same in every peer's view) takes it on.
    pub fn recovery_source(&self) -> Option<PeerId> {
        self.replicas
            .iter()
            .find(|(_, state)| **state == ReplicaState::Active)
            .map(|(peer, _)| *peer)
    }

    /// The replicas waiting for recovery: Dead ones, and Partial ones (seen by the
    /// recovery source while it runs no transfer, a Partial replica is one whose transfer
    /// was cut short, e.g. by the source's crash).
    pub fn awaiting_recovery(&self) -> Vec<PeerId> {
        self.replicas
            .iter()
            .filter(|(_, state)| matches!(state, ReplicaState::Dead | ReplicaState::Partial))
            .map(|(peer, _)| *peer)
            .collect()
    }

    /// The shard's name in messages.
    pub fn describe(&self) -> String {
        format!("shard {} of collection {}", self.shard, self.collection)
    }

    fn require_active(&self) -> Result<()> {
        if self.replicas.values().any(|s| *s == ReplicaState::Active) {
            Ok(())
        } else {
            Err(Error::Unavailable(format!(
                "Shard temporarily unavailable: {} has no active replica",
                self.describe()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReplicaState::*;

    fn set(me: PeerId, replicas: &[(PeerId, ReplicaState)]) -> ReplicaSet {
        ReplicaSet {
            collection: "c".into(),
            shard: 2,
            this_peer: me,
            replicas: replicas.iter().copied().collect(),
        }
    }

    #[test]
    fn writes_skip_dead_replicas_only() {
        let set = set(1, &[(1, Active), (2, Dead), (3, Partial), (4, Listener)]);
        assert_eq!(set.write_targets().unwrap(), vec![1, 3, 4]);
    }

    #[test]
    fn reads_prefer_this_peer_then_other_active_replicas() {
        let set = set(3, &[(1, Active), (2, Partial), (3, Active), (4, Active)]);
        assert_eq!(set.read_order().unwrap(), vec![3, 1, 4]);
        let remote_only = ReplicaSet {
            this_peer: 2,
            ..set
        };
        assert_eq!(remote_only.read_order().unwrap(), vec![1, 3, 4]);
    }

    #[test]
    fn no_active_replica_is_a_503_naming_the_shard() {
        let set = set(1, &[(1, Dead), (2, Partial)]);
        for err in [
            set.write_targets().unwrap_err(),
            set.read_order().unwrap_err(),
        ] {
            assert!(matches!(err, Error::Unavailable(_)));
            assert!(
                err.to_string().contains(
                    "Shard temporarily unavailable: shard 2 of collection c has no active replica"
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn the_lowest_active_replica_recovers_the_dead_ones() {
        let mixed = set(
            1,
            &[(1, Dead), (2, Partial), (3, Active), (4, Active), (5, Dead)],
        );
        assert_eq!(mixed.recovery_source(), Some(3));
        assert_eq!(mixed.awaiting_recovery(), vec![1, 2, 5]);
        assert_eq!(set(1, &[(1, Dead)]).recovery_source(), None);
    }

    #[test]
    fn acks_needed_are_capped_by_the_targets() {
        assert_eq!(ReplicaSet::required_acks(1, 3), 1);
        assert_eq!(ReplicaSet::required_acks(2, 3), 2);
        assert_eq!(ReplicaSet::required_acks(3, 2), 2);
        assert_eq!(ReplicaSet::required_acks(0, 2), 1);
    }
}
