//! Replica consistency: the pure rules that compare the digests of a shard's Active
//! replicas (`shard/digest.rs`), and the reports of the latest checks.
//!
//! The check is run by the shard's reference replica, the same peer that recovers its Dead
//! replicas (`ReplicaSet::recovery_source`: the Active replica with the lowest peer id), so
//! one peer in the cluster checks each shard. It takes an *observation*, the digests of
//! every Active replica, and [`judge`]s it against the previous one:
//!
//! - all replicas hold the same content: [`Verdict::Consistent`];
//! - they differ, but some replica took a write since the previous observation (its
//!   `last_seq` moved) or there is no previous one: [`Verdict::Unsettled`], the caller looks
//!   again after a pause (a bounded number of times), because a write may have reached one
//!   replica and not yet the others;
//! - they differ in two observations between which no replica took any write:
//!   [`Verdict::Diverged`]. The content held by most replicas wins (the reference's on a
//!   tie); every replica holding something else is diverged and is to be marked Dead, so
//!   that the usual recovery re-syncs it from the reference.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use parking_lot::Mutex;
use serde::Serialize;

use crate::shard::digest::ShardDigest;
use crate::types::{PeerId, ShardId};

/// The digests of a shard's Active replicas, taken together.
pub type Observation = BTreeMap<PeerId, ShardDigest>;

/// What an observation says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every replica holds the same points with the same content.
    Consistent,
    /// The replicas differ while writes are landing: observe again.
    Unsettled,
    /// The replicas differ with no write landing: `peers` hold content that the winning
    /// replicas do not, in the id `ranges` listed.
    Diverged {
        peers: Vec<PeerId>,
        ranges: Vec<usize>,
    },
}

/// Judges `current` (see the module doc); `reference` is the checking peer, `previous`
/// the observation before `current` within the same check.
pub fn judge(reference: PeerId, previous: Option<&Observation>, current: &Observation) -> Verdict {
    let groups = content_groups(current);
    if groups.len() <= 1 {
        return Verdict::Consistent;
    }
    let settled = previous.is_some_and(|previous| {
        previous.len() == current.len()
            && current.iter().all(|(peer, digest)| {
                previous
                    .get(peer)
                    .is_some_and(|before| before.last_seq == digest.last_seq)
            })
    });
    if !settled {
        return Verdict::Unsettled;
    }
    let winner = groups
        .iter()
        .max_by_key(|group| (group.len(), group.contains(&reference)))
        .expect("two groups or more");
    let winning = &current[&winner[0]];
    let mut peers = Vec::new();
    let mut ranges = BTreeSet::new();
    for (peer, digest) in current {
        if !winner.contains(peer) {
            peers.push(*peer);
            ranges.extend(winning.differing_ranges(digest));
        }
    }
    Verdict::Diverged {
        peers,
        ranges: ranges.into_iter().collect(),
    }
}

/// The peers grouped by equal content, in peer order within and between groups.
fn content_groups(observation: &Observation) -> Vec<Vec<PeerId>> {
    let mut groups: Vec<Vec<PeerId>> = Vec::new();
    for (peer, digest) in observation {
        let same = groups
            .iter_mut()
            .find(|group| observation[&group[0]].same_content(digest));
        match same {
            Some(group) => group.push(*peer),
            None => groups.push(vec![*peer]),
        }
    }
    groups
}

/// The outcome of the latest check of a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// The Active replicas agreed.
    Consistent,
    /// A replica disagreed with no write landing; it was marked Dead to be re-synced.
    Diverged,
    /// Writes kept landing on the replicas through every attempt: nothing was decided.
    Unsettled,
    /// A replica's digest could not be taken (e.g. its peer did not answer).
    Failed,
}

/// The latest consistency check of one shard, as `GET /collections/{c}/cluster` shows it
/// on the checking peer's local shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// When the check ended (RFC 3339, UTC).
    pub last_checked: String,
    pub status: CheckStatus,
    /// What differed or failed, for the operator.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Replicas of this shard the checks marked Dead since this peer started.
    pub replicas_marked_dead: u64,
}

/// The latest check of every shard this peer checks, by `(collection, shard)`.
#[derive(Default)]
pub struct CheckReports {
    reports: Mutex<HashMap<(String, ShardId), CheckReport>>,
}

impl CheckReports {
    /// Records the outcome of a check that ended now; `marked_dead` replicas were marked
    /// Dead by it.
    pub fn record(
        &self,
        collection: &str,
        shard: ShardId,
        status: CheckStatus,
        detail: Option<String>,
        marked_dead: u64,
    ) {
        let mut reports = self.reports.lock();
        let key = (collection.to_string(), shard);
        let earlier = reports.get(&key).map_or(0, |r| r.replicas_marked_dead);
        let report = CheckReport {
            last_checked: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            status,
            detail,
            replicas_marked_dead: earlier + marked_dead,
        };
        reports.insert(key, report);
    }

    /// The latest check of a shard, if this peer checked it.
    pub fn get(&self, collection: &str, shard: ShardId) -> Option<CheckReport> {
        self.reports
            .lock()
            .get(&(collection.to_string(), shard))
            .cloned()
    }

    /// Forgets the shards for which `keep` is false (e.g. of dropped collections).
    pub fn retain(&self, keep: impl Fn(&str, ShardId) -> bool) {
        self.reports
            .lock()
            .retain(|(collection, shard), _| keep(collection, *shard));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::PointId;

    fn digest(points: &[u64], last_seq: u64) -> ShardDigest {
        let mut d = ShardDigest::empty(last_seq);
        for p in points {
            d.add(&PointId::Num(*p), p.wrapping_mul(31));
        }
        d
    }

    fn observe(replicas: &[(PeerId, &[u64], u64)]) -> Observation {
        replicas
            .iter()
            .map(|(peer, points, seq)| (*peer, digest(points, *seq)))
            .collect()
    }

    #[test]
    fn equal_replicas_are_consistent_whatever_their_operation_numbers() {
        let now = observe(&[(1, &[1, 2], 10), (2, &[1, 2], 3)]);
        assert_eq!(judge(1, None, &now), Verdict::Consistent);
    }

    #[test]
    fn a_first_difference_is_looked_at_again() {
        let now = observe(&[(1, &[1, 2], 10), (2, &[1], 11)]);
        assert_eq!(judge(1, None, &now), Verdict::Unsettled);
    }

    #[test]
    fn a_difference_while_writes_land_is_unsettled() {
        let before = observe(&[(1, &[1, 2], 10), (2, &[1], 11)]);
        let now = observe(&[(1, &[1, 2, 3], 12), (2, &[1, 3], 12)]);
        assert_eq!(judge(1, Some(&before), &now), Verdict::Unsettled);
    }

    #[test]
    fn a_difference_with_no_write_between_is_divergence_of_the_non_reference() {
        let before = observe(&[(1, &[1, 2], 10), (2, &[1], 11)]);
        let now = before.clone();
        let Verdict::Diverged { peers, ranges } = judge(1, Some(&before), &now) else {
            panic!("expected divergence");
        };
        assert_eq!(peers, vec![2]);
        assert_eq!(
            ranges,
            vec![crate::shard::digest::range_of(&PointId::Num(2))]
        );
    }

    #[test]
    fn the_majority_wins_over_the_reference() {
        let now = observe(&[(1, &[1], 10), (2, &[1, 2], 11), (3, &[1, 2], 9)]);
        let Verdict::Diverged { peers, .. } = judge(1, Some(&now), &now) else {
            panic!("expected divergence");
        };
        assert_eq!(peers, vec![1]);
    }

    #[test]
    fn on_a_tie_the_reference_wins() {
        let now = observe(&[(2, &[1, 2], 10), (5, &[1], 11)]);
        let Verdict::Diverged { peers, .. } = judge(5, Some(&now), &now) else {
            panic!("expected divergence");
        };
        assert_eq!(peers, vec![2]);
    }

    #[test]
    fn a_replica_set_that_changed_between_observations_is_unsettled() {
        let before = observe(&[(1, &[1, 2], 10), (2, &[1], 11)]);
        let now = observe(&[(1, &[1, 2], 10), (2, &[1], 11), (3, &[1], 0)]);
        assert_eq!(judge(1, Some(&before), &now), Verdict::Unsettled);
    }

    #[test]
    fn reports_count_replicas_marked_dead_over_checks() {
        let reports = CheckReports::default();
        reports.record("c", 0, CheckStatus::Diverged, Some("x".into()), 1);
        reports.record("c", 0, CheckStatus::Consistent, None, 0);
        let report = reports.get("c", 0).unwrap();
        assert_eq!(report.status, CheckStatus::Consistent);
        assert_eq!(report.replicas_marked_dead, 1);
        reports.retain(|_, _| false);
        assert_eq!(reports.get("c", 0), None);
    }
}
