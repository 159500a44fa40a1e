//! The periodic consistency check of the shard replicas this peer is the reference of, and
//! the peer service's side of it (`Shards.Digest`).
//!
//! Every `cluster.consistency_check_interval_sec` (0: never) this peer checks each shard
//! whose recovery source it is (its lowest-id Active replica, `ReplicaSet::recovery_source`,
//! so one peer in the cluster checks a shard) that has two Active replicas or more and no
//! transfer in progress. A check takes the digest of every Active replica at once (this
//! peer's through its local shard, the others by `Shards.Digest`) and judges it
//! (`replication::consistency::judge`): a difference is only acted on once two
//! observations a pause apart show it with no write landing on any replica in between;
//! while writes keep landing the check gives up after a few attempts and tries again at the
//! next interval. A diverged replica is marked Dead through consensus (consensus refuses
//! that for a shard's last Active replica), logged, and re-synced by the usual recovery
//! (`recovery.rs`, which this peer runs as the recovery source). The outcome shows on this
//! peer's local shard in `GET /collections/{c}/cluster` (`consistency_check`).

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use super::{blocking, Node};
use crate::consensus::op::ClusterOp;
use crate::consensus::state::ReplicaState;
use crate::error::Result;
use crate::replication::consistency::{judge, CheckStatus, Observation, Verdict};
use crate::replication::replica_set::ReplicaSet;
use crate::shard::digest::ShardDigest;
use crate::types::{PeerId, ShardId};

/// Observations per check before it gives up on writes that keep landing.
const ATTEMPTS: usize = 4;
/// The pause between two observations of one check: longer than a write takes to reach
/// every replica, so that a difference that outlives it with no write landing is real.
const SETTLE: Duration = Duration::from_millis(750);

/// The loop; ends when consensus stops. Does nothing with an interval of 0.
pub(crate) async fn run(node: Arc<Node>, interval: Duration) {
    if interval.is_zero() {
        return;
    }
    loop {
        tokio::time::sleep(interval).await;
        if !node.consensus.raft_info().running {
            return;
        }
        for (collection, shard) in node.checks_due() {
            node.check_shard(&collection, shard).await;
        }
        let state = node.consensus.state();
        node.consistency_reports
            .retain(|collection, shard| state.replicas(collection, shard).is_some());
    }
}

impl Node {
    /// The peer service's `Shards.Digest`: a digest of this peer's replica.
    pub async fn serve_shard_digest(
        &self,
        collection: &str,
        shard: ShardId,
        min_applied_index: u64,
    ) -> Result<ShardDigest> {
        let local = self
            .replica_here(collection, shard, min_applied_index)
            .await?;
        blocking(move || Ok(local.digest())).await
    }

    /// `(collection, shard)` of every shard this peer is to check now.
    fn checks_due(&self) -> Vec<(String, ShardId)> {
        let state = self.consensus.state();
        let mut due = Vec::new();
        for (name, collection) in &state.collections {
            for shard in collection.shards.keys() {
                if let Ok(set) = self.replica_set(name, *shard) {
                    if self.to_check(&set) {
                        due.push((name.clone(), *shard));
                    }
                }
            }
        }
        due
    }

    /// Whether this peer checks the shard now: it is its reference, the shard has two
    /// Active replicas or more, no transfer of the shard is in progress, and no snapshot
    /// recovery of its collection (which swaps one replica's data before the others are
    /// marked Dead: that difference is wanted).
    fn to_check(&self, set: &ReplicaSet) -> bool {
        let active = set
            .replicas
            .values()
            .filter(|s| **s == ReplicaState::Active)
            .count();
        let state = self.consensus.state();
        let busy = state.collections.get(&set.collection).is_none_or(|c| {
            c.recovering.is_some() || c.transfers.iter().any(|t| t.shard == set.shard)
        });
        set.recovery_source() == Some(set.this_peer) && active >= 2 && !busy
    }

    /// One check of one shard (see the module doc); records its outcome.
    async fn check_shard(&self, collection: &str, shard: ShardId) {
        let mut previous: Option<Observation> = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(SETTLE).await;
            }
            let Ok(set) = self.replica_set(collection, shard) else {
                return;
            };
            if !self.to_check(&set) {
                return;
            }
            let observation = match self.observe(&set).await {
                Ok(observation) => observation,
                Err(err) => {
                    tracing::warn!(collection, shard, %err, "consistency check: a replica's digest could not be taken");
                    self.consistency_reports.record(
                        collection,
                        shard,
                        CheckStatus::Failed,
                        Some(err.to_string()),
                        0,
                    );
                    return;
                }
            };
            match judge(set.this_peer, previous.as_ref(), &observation) {
                Verdict::Consistent => {
                    let points = observation.values().next().map_or(0, |d| d.points());
                    tracing::debug!(
                        collection,
                        shard,
                        points,
                        "consistency check: replicas agree"
                    );
                    self.consistency_reports.record(
                        collection,
                        shard,
                        CheckStatus::Consistent,
                        None,
                        0,
                    );
                    return;
                }
                Verdict::Unsettled => previous = Some(observation),
                Verdict::Diverged { peers, ranges } => {
                    // A recovery or transfer that began during the observation explains it.
                    let still = self.replica_set(collection, shard);
                    if still.is_ok_and(|now| now.replicas == set.replicas && self.to_check(&now)) {
                        self.mark_diverged(&set, &observation, &peers, &ranges)
                            .await;
                    }
                    return;
                }
            }
        }
        tracing::info!(
            collection,
            shard,
            "consistency check: writes kept landing on the replicas; will check again"
        );
        self.consistency_reports.record(
            collection,
            shard,
            CheckStatus::Unsettled,
            Some(format!(
                "the replicas differed in {ATTEMPTS} observations while writes were landing"
            )),
            0,
        );
    }

    /// The digests of every Active replica of the shard, taken concurrently.
    async fn observe(&self, set: &ReplicaSet) -> Result<Observation> {
        let index = self.consensus.raft_info().applied;
        let peers: Vec<PeerId> = set
            .replicas
            .iter()
            .filter(|(_, s)| **s == ReplicaState::Active)
            .map(|(peer, _)| *peer)
            .collect();
        let digests = peers.iter().map(|peer| async move {
            if *peer == set.this_peer {
                self.serve_shard_digest(&set.collection, set.shard, 0).await
            } else {
                let replica = self.remote_replica(set, *peer)?;
                self.shard_clients.digest(&replica, index).await
            }
        });
        let digests = join_all(digests).await;
        peers
            .into_iter()
            .zip(digests)
            .map(|(peer, digest)| digest.map(|d| (peer, d)))
            .collect()
    }

    /// Marks the diverged replicas Dead through consensus, logs and records it, and wakes
    /// the recovery loop to re-sync them.
    async fn mark_diverged(
        &self,
        set: &ReplicaSet,
        observation: &Observation,
        peers: &[PeerId],
        ranges: &[usize],
    ) {
        let (collection, shard) = (set.collection.as_str(), set.shard);
        let mut marked = 0;
        let mut details = Vec::new();
        for peer in peers {
            let points = observation.get(peer).map_or(0, |d| d.points());
            let op = ClusterOp::SetReplicaState {
                collection: collection.to_string(),
                shard,
                peer: *peer,
                state: ReplicaState::Dead,
            };
            match self.propose(op).await {
                Ok(()) => {
                    marked += 1;
                    tracing::warn!(collection, shard, peer, points, ?ranges, "consistency check: the replica diverged from the others; marked it dead to re-sync it");
                    details.push(format!(
                        "the replica on peer {peer} ({points} points) differed in id ranges {ranges:?}; marked dead"
                    ));
                }
                Err(err) => {
                    tracing::error!(collection, shard, peer, %err, "consistency check: the replica diverged but could not be marked dead");
                    details.push(format!(
                        "the replica on peer {peer} differed in id ranges {ranges:?} and could not be marked dead: {err}"
                    ));
                }
            }
        }
        self.consistency_reports.record(
            collection,
            shard,
            CheckStatus::Diverged,
            Some(details.join("; ")),
            marked,
        );
        self.recovery_kick.notify_one();
    }
}
