//! The cluster's metadata as a pure state machine: collections with their config and
//! shard placement, replica states, and aliases.
//!
//! [`ClusterState::apply`] touches no disk and no network: it validates an op, changes
//! the state, and returns the [`Effect`]s that this peer's applier must execute. A user
//! error (name taken, unknown collection) leaves the state untouched and is the same on
//! every peer, so the log never diverges. The whole state is serialised for Raft
//! snapshots and for persistence at the applied index.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::effect::Effect;
use super::op::{AliasAction, ClusterOp};
use super::transfer::ShardTransfer;
use crate::collection::config::CollectionConfig;
use crate::error::{Error, Result};
use crate::types::{PeerId, ShardId};

/// The state of one replica of a shard, as Qdrant names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaState {
    /// Serves reads and writes.
    Active,
    /// Failed a write or is unreachable; waits for recovery.
    Dead,
    /// Receiving a transfer; takes writes, serves no reads.
    Partial,
    /// Being created.
    Initializing,
    /// Receives writes, never serves reads.
    Listener,
    /// Holds a copy being replaced by a snapshot recovery: serves nothing, takes no
    /// writes, and is left alone by automatic recovery (see `consensus/recovery.rs`).
    ManualRecovery,
}

/// A collection as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionState {
    pub config: CollectionConfig,
    /// Replicas of every shard: peer → state.
    pub shards: BTreeMap<ShardId, BTreeMap<PeerId, ReplicaState>>,
    /// Transfers in progress (see `transfer.rs`).
    #[serde(default)]
    pub transfers: Vec<ShardTransfer>,
    /// The snapshot recovery of this collection in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovering: Option<RecoveryMark>,
}

/// A snapshot recovery between `BeginRecovery` and its finish or abort.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryMark {
    /// The peer running it.
    pub peer: PeerId,
    /// Shards it made this peer a replica of: an abort removes those replicas again.
    pub added: Vec<ShardId>,
}

impl CollectionState {
    /// Where each shard lives, in the op's placement shape.
    pub fn placement(&self) -> BTreeMap<ShardId, Vec<PeerId>> {
        self.shards
            .iter()
            .map(|(id, replicas)| (*id, replicas.keys().copied().collect()))
            .collect()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub collections: BTreeMap<String, CollectionState>,
    /// alias → collection name
    pub aliases: BTreeMap<String, String>,
}

impl ClusterState {
    /// Applies one committed op; on error the state is unchanged.
    pub fn apply(&mut self, op: &ClusterOp) -> Result<Vec<Effect>> {
        match op {
            ClusterOp::CreateCollection {
                name,
                config,
                placement,
            } => self.create_collection(name, config, placement),
            ClusterOp::UpdateCollection { name, diff } => {
                let collection = self
                    .collections
                    .get_mut(name)
                    .ok_or_else(|| Error::collection_not_found(name))?;
                let mut config = collection.config.clone();
                diff.apply_to(&mut config)?;
                collection.config = config.clone();
                Ok(vec![Effect::CollectionUpdated {
                    name: name.clone(),
                    config,
                }])
            }
            ClusterOp::DeleteCollection { name } => {
                if self.collections.remove(name).is_none() {
                    return Err(Error::collection_not_found(name));
                }
                self.aliases.retain(|_, target| target != name);
                Ok(vec![Effect::CollectionDeleted { name: name.clone() }])
            }
            ClusterOp::UpdateAliases { actions } => {
                let mut aliases = self.aliases.clone();
                for action in actions {
                    self.apply_alias_action(&mut aliases, action)?;
                }
                self.aliases = aliases;
                Ok(Vec::new())
            }
            ClusterOp::SetReplicaState {
                collection,
                shard,
                peer,
                state,
            } => {
                self.set_replica_state(collection, *shard, *peer, *state)?;
                self.settle_transfers(collection, *shard);
                Ok(Vec::new())
            }
            ClusterOp::AddReplica {
                collection,
                shard,
                peer,
            } => self.add_replica(collection, *shard, *peer),
            ClusterOp::RemoveReplica {
                collection,
                shard,
                peer,
            } => {
                let effects = self.remove_replica(collection, *shard, *peer)?;
                self.settle_transfers(collection, *shard);
                Ok(effects)
            }
            ClusterOp::StartTransfer {
                collection,
                transfer,
            } => self.start_transfer(collection, transfer),
            ClusterOp::FinishTransfer {
                collection,
                shard,
                to,
            } => self.finish_transfer(collection, *shard, *to),
            ClusterOp::AbortTransfer {
                collection,
                shard,
                to,
                drop_target,
            } => self.abort_transfer(collection, *shard, *to, *drop_target),
            ClusterOp::BeginRecovery {
                collection,
                peer,
                shards,
            } => {
                let effects = self.begin_recovery(collection, *peer, shards)?;
                self.settle_all_transfers(collection);
                Ok(effects)
            }
            ClusterOp::FinishRecovery {
                collection,
                peer,
                shards,
                priority,
                scope,
            } => {
                let effects = self.finish_recovery(collection, *peer, shards, *priority, *scope)?;
                self.settle_all_transfers(collection);
                Ok(effects)
            }
            ClusterOp::AbortRecovery { collection, peer } => {
                let effects = self.abort_recovery(collection, *peer)?;
                self.settle_all_transfers(collection);
                Ok(effects)
            }
        }
    }

    pub(super) fn shard_mut(
        &mut self,
        collection: &str,
        shard: ShardId,
    ) -> Result<&mut BTreeMap<PeerId, ReplicaState>> {
        self.collections
            .get_mut(collection)
            .ok_or_else(|| Error::collection_not_found(collection))?
            .shards
            .get_mut(&shard)
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "shard {shard} of collection `{collection}` does not exist"
                ))
            })
    }

    fn add_replica(
        &mut self,
        collection: &str,
        shard: ShardId,
        peer: PeerId,
    ) -> Result<Vec<Effect>> {
        let replicas = self.shard_mut(collection, shard)?;
        if replicas.contains_key(&peer) {
            return Err(Error::BadRequest(format!(
                "peer {peer} already holds a replica of shard {shard} of collection `{collection}`"
            )));
        }
        replicas.insert(peer, ReplicaState::Dead);
        Ok(vec![Effect::ReplicaAdded {
            collection: collection.to_string(),
            shard,
            peer,
        }])
    }

    fn remove_replica(
        &mut self,
        collection: &str,
        shard: ShardId,
        peer: PeerId,
    ) -> Result<Vec<Effect>> {
        let replicas = self.shard_mut(collection, shard)?;
        let state = *replicas.get(&peer).ok_or_else(|| {
            Error::NotFound(format!(
                "peer {peer} holds no replica of shard {shard} of collection `{collection}`"
            ))
        })?;
        let other_active = replicas
            .iter()
            .any(|(p, s)| *p != peer && *s == ReplicaState::Active);
        if replicas.len() == 1 || (state == ReplicaState::Active && !other_active) {
            return Err(Error::BadRequest(format!(
                "the replica on peer {peer} is the last active replica of shard {shard} of \
                 collection `{collection}`; it cannot be removed"
            )));
        }
        replicas.remove(&peer);
        Ok(vec![Effect::ReplicaRemoved {
            collection: collection.to_string(),
            shard,
            peer,
        }])
    }

    /// The states of a shard's replicas, if the collection and shard exist.
    pub fn replicas(
        &self,
        collection: &str,
        shard: ShardId,
    ) -> Option<&BTreeMap<PeerId, ReplicaState>> {
        self.collections.get(collection)?.shards.get(&shard)
    }

    /// Sets one replica's state. A shard keeps at least one Active replica: taking the last
    /// one out of Active is refused, because no replica would then be trusted to serve
    /// reads or to seed the others' recovery.
    fn set_replica_state(
        &mut self,
        collection: &str,
        shard: ShardId,
        peer: PeerId,
        state: ReplicaState,
    ) -> Result<()> {
        let replicas = self
            .collections
            .get_mut(collection)
            .ok_or_else(|| Error::collection_not_found(collection))?
            .shards
            .get_mut(&shard)
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "shard {shard} of collection `{collection}` does not exist"
                ))
            })?;
        let current = *replicas.get(&peer).ok_or_else(|| {
            Error::NotFound(format!(
                "peer {peer} holds no replica of shard {shard} of collection `{collection}`"
            ))
        })?;
        let active = replicas
            .values()
            .filter(|s| **s == ReplicaState::Active)
            .count();
        if current == ReplicaState::Active && state != ReplicaState::Active && active == 1 {
            return Err(Error::BadRequest(format!(
                "the replica on peer {peer} is the last active replica of shard {shard} of \
                 collection `{collection}`; it stays {current:?}"
            )));
        }
        replicas.insert(peer, state);
        Ok(())
    }

    /// Resolves a collection name or alias to the collection's real name.
    pub fn resolve(&self, name_or_alias: &str) -> Option<&str> {
        if let Some((name, _)) = self.collections.get_key_value(name_or_alias) {
            return Some(name);
        }
        self.aliases
            .get(name_or_alias)
            .map(String::as_str)
            .filter(|c| self.collections.contains_key(*c))
    }

    fn create_collection(
        &mut self,
        name: &str,
        config: &CollectionConfig,
        placement: &BTreeMap<ShardId, Vec<PeerId>>,
    ) -> Result<Vec<Effect>> {
        validate_name(name)?;
        if self.collections.contains_key(name) {
            return Err(Error::AlreadyExists(format!(
                "Collection `{name}` already exists!"
            )));
        }
        if self.aliases.contains_key(name) {
            return Err(Error::AlreadyExists(format!(
                "Alias with name `{name}` already exists!"
            )));
        }
        config.validate()?;
        let expected: Vec<ShardId> = (0..config.params.shard_number).collect();
        if placement.keys().copied().collect::<Vec<_>>() != expected
            || placement.values().any(Vec::is_empty)
        {
            return Err(Error::BadInput(format!(
                "placement must give every shard 0..{} a peer",
                config.params.shard_number
            )));
        }
        let shards = placement
            .iter()
            .map(|(shard, peers)| {
                (
                    *shard,
                    peers.iter().map(|p| (*p, ReplicaState::Active)).collect(),
                )
            })
            .collect();
        self.collections.insert(
            name.to_string(),
            CollectionState {
                config: config.clone(),
                shards,
                transfers: Vec::new(),
                recovering: None,
            },
        );
        Ok(vec![Effect::CollectionCreated {
            name: name.to_string(),
            config: config.clone(),
            placement: placement.clone(),
        }])
    }

    fn apply_alias_action(
        &self,
        aliases: &mut BTreeMap<String, String>,
        action: &AliasAction,
    ) -> Result<()> {
        match action {
            AliasAction::CreateAlias {
                collection_name,
                alias_name,
            } => {
                validate_name(alias_name)?;
                if !self.collections.contains_key(collection_name) {
                    return Err(Error::collection_not_found(collection_name));
                }
                if self.collections.contains_key(alias_name) {
                    return Err(Error::AlreadyExists(format!(
                        "Collection with name `{alias_name}` already exists!"
                    )));
                }
                aliases.insert(alias_name.clone(), collection_name.clone());
            }
            AliasAction::DeleteAlias { alias_name } => {
                if aliases.remove(alias_name).is_none() {
                    return Err(Error::NotFound(format!(
                        "Alias {alias_name} does not exists!"
                    )));
                }
            }
            AliasAction::RenameAlias {
                old_alias_name,
                new_alias_name,
            } => {
                validate_name(new_alias_name)?;
                if self.collections.contains_key(new_alias_name) {
                    return Err(Error::AlreadyExists(format!(
                        "Collection with name `{new_alias_name}` already exists!"
                    )));
                }
                let target = aliases.remove(old_alias_name).ok_or_else(|| {
                    Error::NotFound(format!("Alias {old_alias_name} does not exists!"))
                })?;
                aliases.insert(new_alias_name.clone(), target);
            }
        }
        Ok(())
    }
}

/// Collection and alias names: 1..=255 bytes, no `/`, no NUL (Qdrant's rule), and not
/// `.` or `..` since names become directory names, nor starting with the prefixes of
/// shoal's own working directories next to them (`.recovery-`, `.deleted-`).
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 255 {
        return Err(Error::BadInput(format!(
            "collection name must be 1 to 255 bytes long, got {}",
            name.len()
        )));
    }
    if name.contains('/')
        || name.contains('\0')
        || name.contains('\\')
        || name == "."
        || name == ".."
    {
        return Err(Error::BadInput(format!(
            "collection name `{name}` must not contain `/`, `\\` or NUL, nor be `.` or `..`"
        )));
    }
    if let Some(prefix) = crate::types::RESERVED_NAME_PREFIXES
        .iter()
        .find(|p| name.starts_with(*p))
    {
        return Err(Error::BadInput(format!(
            "collection name `{name}` must not start with `{prefix}` (reserved for shoal's working directories)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collection::config::{CollectionDefaults, CreateCollection};
    use serde_json::json;

    fn config(shards: u32) -> CollectionConfig {
        let body: CreateCollection = serde_json::from_value(
            json!({"vectors": {"size": 2, "distance": "Dot"}, "shard_number": shards}),
        )
        .unwrap();
        body.into_config(&CollectionDefaults::default()).unwrap()
    }

    fn create(name: &str, shards: u32) -> ClusterOp {
        ClusterOp::CreateCollection {
            name: name.into(),
            config: config(shards),
            placement: (0..shards).map(|s| (s, vec![7])).collect(),
        }
    }

    fn alias(actions: serde_json::Value) -> ClusterOp {
        ClusterOp::UpdateAliases {
            actions: serde_json::from_value(actions).unwrap(),
        }
    }

    #[test]
    fn names_of_shoal_working_directories_are_refused() {
        for name in [".recovery-x", ".deleted-y"] {
            let err = validate_name(name).unwrap_err();
            assert!(err.to_string().contains("reserved"), "{err}");
        }
        validate_name(".hidden").unwrap();
        validate_name("recovery-x").unwrap();
    }

    #[test]
    fn create_then_duplicate_is_a_user_error_and_changes_nothing() {
        let mut state = ClusterState::default();
        let effects = state.apply(&create("c", 2)).unwrap();
        assert!(matches!(&effects[..], [Effect::CollectionCreated { name, .. }] if name == "c"));
        let before = state.clone();
        let err = state.apply(&create("c", 1)).unwrap_err();
        assert!(err.is_user_error());
        assert_eq!(state, before);
        assert_eq!(state.collections["c"].shards[&1][&7], ReplicaState::Active);
    }

    #[test]
    fn placement_must_cover_every_shard() {
        let mut state = ClusterState::default();
        let op = ClusterOp::CreateCollection {
            name: "c".into(),
            config: config(2),
            placement: BTreeMap::from([(0, vec![1])]),
        };
        assert!(state.apply(&op).is_err());
        assert!(state.collections.is_empty());
    }

    #[test]
    fn alias_actions_are_atomic() {
        let mut state = ClusterState::default();
        state.apply(&create("c", 1)).unwrap();
        state
            .apply(&alias(
                json!([{"create_alias": {"collection_name": "c", "alias_name": "a"}}]),
            ))
            .unwrap();
        assert_eq!(state.resolve("a"), Some("c"));
        // The second action fails, so the first must not stick either.
        let err = state
            .apply(&alias(json!([
                {"rename_alias": {"old_alias_name": "a", "new_alias_name": "b"}},
                {"delete_alias": {"alias_name": "missing"}}
            ])))
            .unwrap_err();
        assert!(matches!(err, Error::NotFound(_)));
        assert_eq!(state.resolve("a"), Some("c"));
        assert_eq!(state.resolve("b"), None);
    }

    #[test]
    fn deleting_a_collection_drops_its_aliases() {
        let mut state = ClusterState::default();
        state.apply(&create("c", 1)).unwrap();
        state
            .apply(&alias(
                json!([{"create_alias": {"collection_name": "c", "alias_name": "a"}}]),
            ))
            .unwrap();
        state
            .apply(&ClusterOp::DeleteCollection { name: "c".into() })
            .unwrap();
        assert!(state.aliases.is_empty());
        assert!(state
            .apply(&ClusterOp::DeleteCollection { name: "c".into() })
            .is_err());
    }

    #[test]
    fn names_and_aliases_do_not_clash() {
        let mut state = ClusterState::default();
        state.apply(&create("c", 1)).unwrap();
        assert!(state
            .apply(&alias(
                json!([{"create_alias": {"collection_name": "c", "alias_name": "c"}}])
            ))
            .is_err());
        state
            .apply(&alias(
                json!([{"create_alias": {"collection_name": "c", "alias_name": "a"}}]),
            ))
            .unwrap();
        assert!(state.apply(&create("a", 1)).is_err());
        assert!(state.apply(&create("x/y", 1)).is_err());
    }

    fn set_state(shard: ShardId, peer: PeerId, state: ReplicaState) -> ClusterOp {
        ClusterOp::SetReplicaState {
            collection: "c".into(),
            shard,
            peer,
            state,
        }
    }

    #[test]
    fn the_last_active_replica_is_never_deactivated() {
        let mut state = ClusterState::default();
        let op = ClusterOp::CreateCollection {
            name: "c".into(),
            config: config(2),
            placement: BTreeMap::from([(0, vec![1, 2]), (1, vec![3])]),
        };
        state.apply(&op).unwrap();
        state
            .apply(&set_state(0, 1, ReplicaState::Dead))
            .expect("another replica stays active");
        assert_eq!(state.replicas("c", 0).unwrap()[&1], ReplicaState::Dead);

        let before = state.clone();
        for (shard, peer) in [(0, 2), (1, 3)] {
            for target in [ReplicaState::Dead, ReplicaState::Partial] {
                let err = state.apply(&set_state(shard, peer, target)).unwrap_err();
                assert!(err.is_user_error(), "{err}");
                assert!(err.to_string().contains("last active replica"), "{err}");
            }
        }
        assert_eq!(state, before);

        // Once another replica is Active again, the former last one may go.
        state.apply(&set_state(0, 1, ReplicaState::Active)).unwrap();
        state.apply(&set_state(0, 2, ReplicaState::Dead)).unwrap();
        assert_eq!(state.replicas("c", 0).unwrap()[&2], ReplicaState::Dead);
        // A Dead replica may be set Dead again (a repeated report).
        state.apply(&set_state(0, 2, ReplicaState::Dead)).unwrap();
    }

    #[test]
    fn replicas_are_added_dead_and_the_last_active_one_stays() {
        let mut state = ClusterState::default();
        state.apply(&create("c", 1)).unwrap();
        let add = |peer| ClusterOp::AddReplica {
            collection: "c".into(),
            shard: 0,
            peer,
        };
        let remove = |peer| ClusterOp::RemoveReplica {
            collection: "c".into(),
            shard: 0,
            peer,
        };
        // The only replica cannot go.
        assert!(state.apply(&remove(7)).unwrap_err().is_user_error());
        let effects = state.apply(&add(8)).unwrap();
        assert!(matches!(
            &effects[..],
            [Effect::ReplicaAdded { peer: 8, .. }]
        ));
        assert_eq!(state.replicas("c", 0).unwrap()[&8], ReplicaState::Dead);
        assert!(state.apply(&add(8)).is_err(), "already there");
        // 7 is the last Active replica: it stays while 8 is not Active.
        assert!(state.apply(&remove(7)).is_err());
        state.apply(&set_state(0, 8, ReplicaState::Active)).unwrap();
        let effects = state.apply(&remove(7)).unwrap();
        assert!(matches!(
            &effects[..],
            [Effect::ReplicaRemoved { peer: 7, .. }]
        ));
        assert_eq!(state.collections["c"].placement()[&0], vec![8]);
    }

    #[test]
    fn replica_state_needs_an_existing_replica() {
        let mut state = ClusterState::default();
        state.apply(&create("c", 1)).unwrap();
        let before = state.clone();
        assert!(matches!(
            state.apply(&set_state(5, 7, ReplicaState::Dead)),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            state.apply(&set_state(0, 8, ReplicaState::Dead)),
            Err(Error::NotFound(_))
        ));
        let mut other = ClusterState::default();
        assert!(other.apply(&set_state(0, 7, ReplicaState::Dead)).is_err());
        assert_eq!(state, before);
    }

    #[test]
    fn update_changes_config() {
        let mut state = ClusterState::default();
        state.apply(&create("c", 1)).unwrap();
        let diff =
            serde_json::from_value(json!({"params": {"write_consistency_factor": 2}})).unwrap();
        state
            .apply(&ClusterOp::UpdateCollection {
                name: "c".into(),
                diff,
            })
            .unwrap();
        assert_eq!(
            state.collections["c"]
                .config
                .params
                .write_consistency_factor,
            2
        );
    }
}
