//! Executes committed metadata effects on this peer's storage, in log order, then lets
//! the proposer return. Also opens, at start-up, what the recovered cluster state places
//! on this peer, which makes every effect safe to lose in a crash: the next start
//! reconciles storage with the state again.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;

use crate::collection::registry::CollectionRegistry;
use crate::consensus::effect::Effect;
use crate::consensus::state::ClusterState;
use crate::consensus::{Applied, AppliedKind};
use crate::error::Result;
use crate::types::{PeerId, ShardId};

/// Opens every collection that has shards on this peer; finishes interrupted deletes.
pub fn open_placed_here(
    registry: &CollectionRegistry,
    state: &ClusterState,
    peer: PeerId,
) -> Result<()> {
    let mut known: BTreeMap<String, Vec<ShardId>> = BTreeMap::new();
    for (name, collection) in &state.collections {
        let local = local_shards(&collection.placement(), peer);
        registry.open(name, collection.config.clone(), &local)?;
        known.insert(name.clone(), local);
    }
    registry.clean_leftovers(&known)
}

/// The applier loop: one effect batch at a time, in the order Raft applied them. After
/// each entry, `executed` moves to its index (peers' shard calls wait on it).
pub async fn run(
    mut applied: UnboundedReceiver<Applied>,
    registry: Arc<CollectionRegistry>,
    peer: PeerId,
    executed: watch::Sender<u64>,
) {
    while let Some(entry) = applied.recv().await {
        let registry = registry.clone();
        let effects = entry.effects;
        let outcome = match entry.kind {
            // The leader replaced our whole state: reconcile storage with it.
            AppliedKind::Snapshot(state) => {
                tokio::task::spawn_blocking(move || reconcile(&registry, &state, peer)).await
            }
            _ => tokio::task::spawn_blocking(move || execute_all(&registry, peer, effects)).await,
        };
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::error!(index = entry.index, %err, "executing committed effects failed")
            }
            Err(err) => tracing::error!(index = entry.index, %err, "effect task panicked"),
        }
        executed.send_if_modified(|index| {
            let moved = entry.index > *index;
            *index = (*index).max(entry.index);
            moved
        });
        if let Some(done) = entry.done {
            let _ = done.send(());
        }
    }
}

/// Drops collections the state no longer has, then opens what it places here.
fn reconcile(registry: &CollectionRegistry, state: &ClusterState, peer: PeerId) -> Result<()> {
    for collection in registry.all() {
        if !state.collections.contains_key(collection.name()) {
            registry.drop_collection(collection.name())?;
        }
    }
    open_placed_here(registry, state, peer)
}

fn execute_all(registry: &CollectionRegistry, peer: PeerId, effects: Vec<Effect>) -> Result<()> {
    for effect in effects {
        execute(registry, peer, effect)?;
    }
    Ok(())
}

fn execute(registry: &CollectionRegistry, peer: PeerId, effect: Effect) -> Result<()> {
    match effect {
        Effect::CollectionCreated {
            name,
            config,
            placement,
        } => {
            // A directory left by an earlier collection of the same name is stale.
            if registry.get(&name).is_none() {
                registry.drop_collection(&name)?;
            }
            registry.open(&name, config, &local_shards(&placement, peer))?;
        }
        Effect::CollectionUpdated { name, config } => {
            if let Some(collection) = registry.get(&name) {
                collection.update_config(config);
            }
        }
        Effect::CollectionDeleted { name } => registry.drop_collection(&name)?,
        Effect::ReplicaAdded {
            collection,
            shard,
            peer: holder,
        } if holder == peer => registry.add_local_shard(&collection, shard)?,
        Effect::ReplicaRemoved {
            collection,
            shard,
            peer: holder,
        } if holder == peer => registry.remove_local_shard(&collection, shard)?,
        // Another peer's replica: nothing to do here.
        Effect::ReplicaAdded { .. } | Effect::ReplicaRemoved { .. } => {}
    }
    Ok(())
}

fn local_shards(placement: &BTreeMap<ShardId, Vec<PeerId>>, peer: PeerId) -> Vec<ShardId> {
    placement
        .iter()
        .filter(|(_, peers)| peers.contains(&peer))
        .map(|(shard, _)| *shard)
        .collect()
}
