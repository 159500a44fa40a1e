//! Placement of a new collection's shards over the cluster's peers.
//!
//! The proposer of `CreateCollection` computes the placement and the op carries it, so
//! every peer applies the same one. Replicas are dealt round-robin over the sorted peer
//! list, starting at the proposing peer: replica `r` of shard `s` goes to peer
//! `(start + s * replicas + r) mod peers`. Every peer gets the same number of replicas
//! (give or take one), the replicas of one shard are on distinct peers, and a
//! collection with one shard and one replica lives on the peer that created it (as a
//! single node always did).
//!
//! Placement counts every member of the cluster, learners included: a peer that
//! `GET /cluster` lists receives the log, so it opens the replicas placed on it like a
//! voter does. A shard left with fewer replicas than its replication factor (created
//! while fewer peers existed, or a peer lost) is repaired by a replicating transfer to
//! the peer [`repair_target`] picks.

use std::collections::BTreeMap;

use crate::types::{PeerId, ShardId};

/// Places `shard_number` shards with `replication_factor` replicas each over `peers`.
/// A replication factor above the number of peers gives every shard one replica on each
/// peer. `first` (the proposer) gets the first replica of shard 0; when it is not in
/// `peers` the lowest peer id does. With no peers at all, everything goes to `first`.
pub fn place(
    shard_number: u32,
    replication_factor: u32,
    peers: &[PeerId],
    first: PeerId,
) -> BTreeMap<ShardId, Vec<PeerId>> {
    let mut peers = peers.to_vec();
    peers.sort_unstable();
    peers.dedup();
    if peers.is_empty() {
        peers.push(first);
    }
    let count = peers.len();
    let start = peers.iter().position(|p| *p == first).unwrap_or(0);
    let replicas = (replication_factor.max(1) as usize).min(count);
    (0..shard_number)
        .map(|shard| {
            let base = start + shard as usize * replicas;
            let owners = (0..replicas).map(|r| peers[(base + r) % count]).collect();
            (shard, owners)
        })
        .collect()
}

/// The peer that should receive one more replica of a shard held by `holders`, when the
/// shard has fewer than `replication_factor` replicas and a member holds none: the member
/// holding the fewest replicas overall (`load`), the lowest id among equals. `None` when
/// the shard is fully replicated or every member holds it already.
pub fn repair_target(
    replication_factor: u32,
    holders: &[PeerId],
    members: &[PeerId],
    load: &BTreeMap<PeerId, usize>,
) -> Option<PeerId> {
    if holders.len() >= replication_factor.max(1) as usize {
        return None;
    }
    members
        .iter()
        .filter(|peer| !holders.contains(peer))
        .min_by_key(|peer| (load.get(peer).copied().unwrap_or(0), **peer))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(placement: &BTreeMap<ShardId, Vec<PeerId>>) -> BTreeMap<PeerId, usize> {
        let mut load = BTreeMap::new();
        for peer in placement.values().flatten() {
            *load.entry(*peer).or_default() += 1;
        }
        load
    }

    #[test]
    fn three_shards_two_replicas_spread_over_three_peers() {
        let placement = place(3, 2, &[30, 10, 20], 10);
        assert_eq!(
            placement,
            BTreeMap::from([(0, vec![10, 20]), (1, vec![30, 10]), (2, vec![20, 30])])
        );
        assert_eq!(
            load(&placement),
            BTreeMap::from([(10, 2), (20, 2), (30, 2)])
        );
    }

    #[test]
    fn the_same_peers_give_the_same_placement() {
        assert_eq!(place(5, 2, &[1, 2, 3], 2), place(5, 2, &[3, 2, 1, 2], 2));
    }

    #[test]
    fn replicas_of_a_shard_are_distinct_and_load_is_even() {
        for peers in 1..=5u64 {
            let list: Vec<PeerId> = (1..=peers).collect();
            for shards in 1..=7 {
                for factor in 1..=4 {
                    let placement = place(shards, factor, &list, 1);
                    assert_eq!(placement.len(), shards as usize);
                    for owners in placement.values() {
                        let mut unique = owners.clone();
                        unique.sort_unstable();
                        unique.dedup();
                        assert_eq!(unique.len(), owners.len(), "{placement:?}");
                        assert_eq!(owners.len(), (factor as usize).min(peers as usize));
                    }
                    let load = load(&placement);
                    let (min, max) = (load.values().min(), load.values().max());
                    if load.len() == peers as usize {
                        assert!(max.unwrap() - min.unwrap() <= 1, "{placement:?}");
                    } else {
                        // Fewer slots than peers: nobody holds two.
                        assert_eq!(max, Some(&1), "{placement:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_single_node_keeps_everything() {
        let placement = place(4, 3, &[7], 7);
        assert!(placement.values().all(|owners| owners == &vec![7]));
        assert_eq!(
            place(2, 1, &[], 9),
            BTreeMap::from([(0, vec![9]), (1, vec![9])])
        );
    }

    #[test]
    fn one_shard_lands_on_the_proposer() {
        assert_eq!(place(1, 1, &[1, 2, 3], 2), BTreeMap::from([(0, vec![2])]));
    }

    #[test]
    fn repair_picks_the_least_loaded_member_without_a_replica() {
        let load = BTreeMap::from([(1, 4), (2, 1), (3, 1), (4, 0)]);
        assert_eq!(repair_target(3, &[1, 2], &[1, 2, 3, 4], &load), Some(4));
        assert_eq!(repair_target(3, &[1, 4], &[1, 2, 3, 4], &load), Some(2));
        assert_eq!(
            repair_target(2, &[1, 2], &[1, 2, 3, 4], &load),
            None,
            "enough"
        );
        assert_eq!(
            repair_target(3, &[1, 2], &[1, 2], &load),
            None,
            "no one left"
        );
        assert_eq!(
            repair_target(0, &[], &[5], &load),
            Some(5),
            "factor 0 means 1"
        );
    }
}
