//! A cheap digest of a shard's live points, for comparing the replicas of a shard.
//!
//! The points are split into [`DIGEST_RANGES`] ranges by a hash of their id (the same on
//! every peer), and each range is summarised by its point count and an order-independent
//! hash: the wrapping sum of one 64-bit hash per point. Two replicas that hold the same
//! points with the same stored content have equal digests whatever the order the points
//! were written in or the segments they sit in; a range whose digests differ names where
//! the replicas disagree.
//!
//! A point's hash covers what is stored: its id, every vector as stored (after
//! preprocessing, bit for bit, with its name) and its payload as stored JSON text. It does
//! not cover the point's version: versions are this replica's own operation numbers (its
//! WAL sequence), which differ between replicas that took the same writes (a replica filled
//! by a transfer numbers them anew).
//!
//! The hash is our own small multiply-rotate mix with a final avalanche: stable across
//! builds and platforms (never seeded per process), so peers of one version agree. It is
//! not cryptographic: it detects accidental or careless divergence, not a peer that forges
//! its digest (a peer that can answer peer calls can write anything anyway).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::shard::segment::SegmentData;
use crate::shard::state::{Rows, ShardState};
use crate::types::PointId;

/// How many ranges of point ids a digest has.
pub const DIGEST_RANGES: usize = 16;

/// The points of one range of ids.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeDigest {
    /// Live points in the range.
    pub count: u64,
    /// Wrapping sum of the points' hashes.
    pub hash: u64,
}

/// The digest of one replica of a shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardDigest {
    /// One entry per range, [`DIGEST_RANGES`] of them.
    pub ranges: Vec<RangeDigest>,
    /// The replica's last operation number when the digest was taken. Not part of the
    /// content (see the module doc); it tells a caller whether writes landed on the replica
    /// between two digests.
    pub last_seq: u64,
}

impl ShardDigest {
    /// The digest of an empty replica.
    pub fn empty(last_seq: u64) -> ShardDigest {
        ShardDigest {
            ranges: vec![RangeDigest::default(); DIGEST_RANGES],
            last_seq,
        }
    }

    /// The digest of a shard's live points.
    pub fn of_state(state: &ShardState) -> ShardDigest {
        Cut::take(state).digest()
    }

    /// Adds one point with hash `hash`.
    pub fn add(&mut self, id: &PointId, hash: u64) {
        let range = &mut self.ranges[range_of(id)];
        range.count += 1;
        range.hash = range.hash.wrapping_add(hash);
    }

    /// Live points in all ranges.
    pub fn points(&self) -> u64 {
        self.ranges.iter().map(|r| r.count).sum()
    }

    /// Whether two replicas hold the same points with the same content.
    pub fn same_content(&self, other: &ShardDigest) -> bool {
        self.ranges == other.ranges
    }

    /// The ranges in which two digests differ.
    pub fn differing_ranges(&self, other: &ShardDigest) -> Vec<usize> {
        let len = self.ranges.len().max(other.ranges.len());
        (0..len)
            .filter(|i| self.ranges.get(*i) != other.ranges.get(*i))
            .collect()
    }
}

/// The live points of a shard at one moment, taken cheaply under the shard's read lock
/// (the id map and the segments' rows: sealed rows are shared, only the appendable
/// segment's are copied) so that the hashing runs after the lock is released and writes
/// do not wait for it.
pub struct Cut {
    last_seq: u64,
    /// Every live point: id, index into `segments`, offset.
    rows: Vec<(PointId, u32, u32)>,
    segments: Vec<Arc<SegmentData>>,
}

impl Cut {
    /// Takes the cut of `state`.
    pub fn take(state: &ShardState) -> Cut {
        let segments = state
            .segments
            .iter()
            .map(|seg| match &seg.rows {
                Rows::Sealed(rows) => rows.clone(),
                Rows::Appendable(rows) => Arc::new(rows.clone()),
            })
            .collect();
        let rows = state
            .ids
            .iter()
            .map(|(id, loc)| (*id, loc.seg, loc.off))
            .collect();
        Cut {
            last_seq: state.last_seq,
            rows,
            segments,
        }
    }

    /// The digest of the points in the cut.
    pub fn digest(&self) -> ShardDigest {
        let mut digest = ShardDigest::empty(self.last_seq);
        for (id, seg, off) in &self.rows {
            let data = &self.segments[*seg as usize];
            digest.add(id, point_hash(id, data, *off as usize));
        }
        digest
    }
}

/// The range of ids a point belongs to. Mixed from the routing hash so that the points of
/// one shard (which share the routing hash modulo the shard count) spread over all ranges.
pub fn range_of(id: &PointId) -> usize {
    (avalanche(id.routing_hash()) >> 32) as usize % DIGEST_RANGES
}

/// The hash of the point at `off` in `data`: id, vectors by name and payload text.
pub fn point_hash(id: &PointId, data: &SegmentData, off: usize) -> u64 {
    let mut h = Mix::default();
    match id {
        PointId::Num(n) => {
            h.word(0);
            h.word(*n);
        }
        PointId::Uuid(u) => {
            let (hi, lo) = u.as_u64_pair();
            h.word(1);
            h.word(hi);
            h.word(lo);
        }
    }
    for (name, column) in &data.columns {
        h.bytes(name.as_bytes());
        match column.get(off) {
            Some(v) => {
                h.word(v.len() as u64);
                h.floats(v);
            }
            None => h.word(u64::MAX),
        }
    }
    h.bytes(data.payloads.text(off));
    h.finish()
}

/// A stable streaming mix of 64-bit words.
#[derive(Default)]
struct Mix {
    state: u64,
}

const K: u64 = 0x9E37_79B9_7F4A_7C15;

impl Mix {
    fn word(&mut self, w: u64) {
        self.state = (self.state.rotate_left(23) ^ w).wrapping_mul(K);
    }

    /// Bytes with their length, so that `("ab", "c")` and `("a", "bc")` differ.
    fn bytes(&mut self, bytes: &[u8]) {
        self.word(bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for chunk in chunks.by_ref() {
            self.word(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.word(u64::from_le_bytes(tail));
    }

    /// The bit patterns of `values`, two per word (so `-0.0` and `0.0` differ, as stored).
    /// Blocks of 8 floats feed 4 independent lanes (a long vector is not one chain of
    /// dependent multiplications), folded into the state at the end; the rest goes in pairs.
    fn floats(&mut self, values: &[f32]) {
        let pair = |a: f32, b: f32| u64::from(a.to_bits()) | (u64::from(b.to_bits()) << 32);
        let mut lanes = [0u64; 4];
        let mut blocks = values.chunks_exact(8);
        for block in blocks.by_ref() {
            for (i, lane) in lanes.iter_mut().enumerate() {
                let w = pair(block[2 * i], block[2 * i + 1]);
                *lane = (lane.rotate_left(23) ^ w).wrapping_mul(K);
            }
        }
        lanes.iter().for_each(|lane| self.word(*lane));
        let mut pairs = blocks.remainder().chunks_exact(2);
        for pair_of in pairs.by_ref() {
            self.word(pair(pair_of[0], pair_of[1]));
        }
        if let [last] = pairs.remainder() {
            self.word(u64::from(last.to_bits()));
        }
    }

    fn finish(&self) -> u64 {
        avalanche(self.state)
    }
}

/// The splitmix64 finaliser: every input bit affects every output bit.
fn avalanche(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::collection::point::{NamedVectors, Payload};

    fn data(rows: &[(u64, Vec<f32>, &str)]) -> SegmentData {
        let dims: BTreeMap<String, usize> = [(String::new(), 2)].into_iter().collect();
        let mut data = SegmentData::new(&dims);
        for (id, v, payload) in rows {
            let vectors: NamedVectors = [(String::new(), v.clone())].into_iter().collect();
            let payload: Payload = serde_json::from_str(payload).unwrap();
            data.push(PointId::Num(*id), 7, &vectors, payload);
        }
        data
    }

    fn digest(data: &SegmentData) -> ShardDigest {
        let mut d = ShardDigest::empty(0);
        for (off, id) in data.ids.iter().enumerate() {
            d.add(id, point_hash(id, data, off));
        }
        d
    }

    #[test]
    fn order_of_points_does_not_matter() {
        let a = data(&[(1, vec![1.0, 2.0], "{}"), (2, vec![3.0, 4.0], r#"{"a":1}"#)]);
        let b = data(&[(2, vec![3.0, 4.0], r#"{"a":1}"#), (1, vec![1.0, 2.0], "{}")]);
        assert!(digest(&a).same_content(&digest(&b)));
        assert_eq!(digest(&a).points(), 2);
    }

    #[test]
    fn versions_do_not_matter() {
        let a = data(&[(1, vec![1.0, 2.0], "{}")]);
        let mut b = a.clone();
        b.versions[0] = 99;
        assert!(digest(&a).same_content(&digest(&b)));
    }

    #[test]
    fn a_missing_point_shows_in_its_range_only() {
        let a = data(&[(1, vec![1.0, 2.0], "{}"), (2, vec![3.0, 4.0], "{}")]);
        let b = data(&[(1, vec![1.0, 2.0], "{}")]);
        let (da, db) = (digest(&a), digest(&b));
        assert!(!da.same_content(&db));
        assert_eq!(da.differing_ranges(&db), vec![range_of(&PointId::Num(2))]);
    }

    #[test]
    fn one_ulp_one_payload_byte_or_another_id_differs() {
        let base = digest(&data(&[(1, vec![1.0, 2.0], r#"{"a":1}"#)]));
        let ulp = f32::from_bits(2.0f32.to_bits() + 1);
        let changed = [
            data(&[(1, vec![1.0, ulp], r#"{"a":1}"#)]),
            data(&[(1, vec![1.0, 2.0], r#"{"a":2}"#)]),
            data(&[(3, vec![1.0, 2.0], r#"{"a":1}"#)]),
        ];
        for other in &changed {
            assert!(!base.same_content(&digest(other)));
        }
    }

    #[test]
    fn ranges_spread_the_ids_of_one_shard() {
        // Ids routed to one of 4 shards still land in every range.
        let mut seen = [false; DIGEST_RANGES];
        let ids = (0..4000u64)
            .map(PointId::Num)
            .filter(|id| id.routing_hash() % 4 == 1);
        for id in ids {
            seen[range_of(&id)] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }

    #[test]
    fn every_float_of_a_long_vector_and_its_position_count() {
        let v: Vec<f32> = (0..37).map(|i| i as f32 * 0.25).collect();
        let hash = |v: &[f32]| {
            let mut m = Mix::default();
            m.floats(v);
            m.finish()
        };
        let base = hash(&v);
        for i in 0..v.len() {
            let mut changed = v.clone();
            changed[i] = f32::from_bits(changed[i].to_bits() ^ 1);
            assert_ne!(hash(&changed), base, "float {i}");
        }
        let mut swapped = v.clone();
        swapped.swap(0, 8);
        assert_ne!(hash(&swapped), base);
        assert_eq!(hash(&v), base);
    }

    #[test]
    fn byte_boundaries_are_part_of_the_hash() {
        let mut a = Mix::default();
        a.bytes(b"ab");
        a.bytes(b"c");
        let mut b = Mix::default();
        b.bytes(b"a");
        b.bytes(b"bc");
        assert_ne!(a.finish(), b.finish());
    }
}
