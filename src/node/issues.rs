//! `GET /issues` and `DELETE /issues`: problems an operator should look at, in Qdrant's
//! shape (`id`, `description`, `solution`, `timestamp`, `related_collection`).
//!
//! Issues are found from the published cluster state each time they are asked for:
//! a replica in the `Dead` state, a shard with fewer replicas than its collection's
//! `replication_factor` while enough peers exist. `DELETE /issues` dismisses the issues
//! present at that moment: a dismissed issue stays hidden while it lasts, and shows again
//! if it ends and comes back later.

use std::collections::{BTreeMap, BTreeSet};

use parking_lot::Mutex;
use serde::Serialize;

use crate::consensus::state::{ClusterState, ReplicaState};
use crate::node::Node;

/// One issue, as Qdrant reports it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Issue {
    pub id: String,
    pub description: String,
    pub solution: Solution,
    /// When this peer first saw the issue (RFC 3339).
    pub timestamp: String,
    pub related_collection: Option<String>,
}

/// What to do about an issue.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Solution {
    /// A change the operator makes (no single request fixes it).
    Refactor(String),
}

/// Issues seen and dismissed on this peer.
#[derive(Default)]
pub struct Issues {
    seen: Mutex<Tracked>,
}

#[derive(Default)]
struct Tracked {
    /// id → first seen.
    first_seen: BTreeMap<String, String>,
    dismissed: BTreeSet<String>,
}

/// The issues in `state` without timestamps: (id, description, solution, collection).
fn detect(state: &ClusterState, peers: usize) -> Vec<(String, String, String, String)> {
    let mut found = Vec::new();
    for (name, collection) in &state.collections {
        let wanted = collection.config.params.replication_factor as usize;
        for (shard, replicas) in &collection.shards {
            for (peer, replica) in replicas {
                if *replica == ReplicaState::Dead {
                    found.push((
                        format!("DEAD_REPLICA/{name}/{shard}/{peer}"),
                        format!(
                            "Replica of shard {shard} of collection `{name}` on peer {peer} is Dead: it missed writes and serves nothing until it is recovered"
                        ),
                        "Keep the peer running and reachable: shoal re-syncs Dead replicas automatically. If the peer is gone for good, remove it with DELETE /cluster/peer/{peer_id}?force=true".to_string(),
                        name.clone(),
                    ));
                }
            }
            if replicas.len() < wanted && peers >= wanted && collection.recovering.is_none() {
                found.push((
                    format!("UNDER_REPLICATED/{name}/{shard}"),
                    format!(
                        "Shard {shard} of collection `{name}` has {} of {wanted} replicas",
                        replicas.len()
                    ),
                    "shoal adds the missing replicas automatically while enough peers are up; check that every peer is reachable".to_string(),
                    name.clone(),
                ));
            }
        }
    }
    found
}

impl Issues {
    /// The current issues of `state`, minus the dismissed ones.
    fn current(&self, state: &ClusterState, peers: usize) -> Vec<Issue> {
        let found = detect(state, peers);
        let mut tracked = self.seen.lock();
        let present: BTreeSet<&String> = found.iter().map(|f| &f.0).collect();
        // An issue that ended is forgotten, dismissed or not.
        tracked.first_seen.retain(|id, _| present.contains(id));
        tracked.dismissed.retain(|id| present.contains(id));
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut issues = Vec::new();
        for (id, description, solution, collection) in found {
            let timestamp = tracked
                .first_seen
                .entry(id.clone())
                .or_insert_with(|| now.clone())
                .clone();
            if tracked.dismissed.contains(&id) {
                continue;
            }
            issues.push(Issue {
                id,
                description,
                solution: Solution::Refactor(solution),
                timestamp,
                related_collection: Some(collection),
            });
        }
        issues
    }

    /// Dismisses every issue present now; returns how many.
    fn dismiss(&self, state: &ClusterState, peers: usize) -> usize {
        let shown = self.current(state, peers);
        let mut tracked = self.seen.lock();
        for issue in &shown {
            tracked.dismissed.insert(issue.id.clone());
        }
        shown.len()
    }
}

impl Node {
    /// `GET /issues`.
    pub fn issues(&self) -> Vec<Issue> {
        let peers = self.consensus.peers().len().max(1);
        self.issues.current(&self.consensus.state(), peers)
    }

    /// `DELETE /issues`.
    pub fn clear_issues(&self) -> usize {
        let peers = self.consensus.peers().len().max(1);
        self.issues.dismiss(&self.consensus.state(), peers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consensus::state::CollectionState;

    fn state_with(replicas: &[(u64, ReplicaState)], factor: u32) -> ClusterState {
        use crate::collection::config::{CollectionDefaults, CreateCollection};
        let body: CreateCollection = serde_json::from_value(serde_json::json!({
            "vectors": {"size": 2, "distance": "Dot"},
            "replication_factor": factor,
        }))
        .unwrap();
        let config = body.into_config(&CollectionDefaults::default()).unwrap();
        let mut state = ClusterState::default();
        state.collections.insert(
            "c".into(),
            CollectionState {
                config,
                shards: BTreeMap::from([(0, replicas.iter().copied().collect())]),
                transfers: vec![],
                recovering: None,
            },
        );
        state
    }

    #[test]
    fn dead_replicas_are_reported_dismissed_and_shown_again_when_they_recur() {
        let issues = Issues::default();
        let dead = state_with(&[(1, ReplicaState::Active), (2, ReplicaState::Dead)], 2);
        let found = issues.current(&dead, 2);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, "DEAD_REPLICA/c/0/2");
        assert_eq!(found[0].related_collection.as_deref(), Some("c"));
        assert_eq!(issues.dismiss(&dead, 2), 1);
        assert!(issues.current(&dead, 2).is_empty());
        let healthy = state_with(&[(1, ReplicaState::Active), (2, ReplicaState::Active)], 2);
        assert!(issues.current(&healthy, 2).is_empty());
        assert_eq!(issues.current(&dead, 2).len(), 1);
    }

    #[test]
    fn under_replication_counts_only_when_enough_peers_exist() {
        let issues = Issues::default();
        let one = state_with(&[(1, ReplicaState::Active)], 2);
        assert!(issues.current(&one, 1).is_empty());
        let found = issues.current(&one, 2);
        assert_eq!(found[0].id, "UNDER_REPLICATED/c/0");
    }
}
