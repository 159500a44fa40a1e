//! The in-memory state of a shard: its segments and the id → location map, and how an
//! operation changes them.
//!
//! Owns the rules that make segment files immutable:
//! - the last segment is the only *appendable* one; all others are *sealed* and their
//!   rows (shared behind an `Arc`, so files can be written without holding a lock) never
//!   change; only their `deleted` bits grow;
//! - every write to an existing point marks its old row deleted and appends a new row to
//!   the appendable segment (copy-on-write), except that an appendable row not yet handed
//!   to a checkpoint (`offset >= frozen_len`) may be updated in place;
//! - every live id is in `ids` exactly once, pointing at a row whose deleted bit is unset;
//! - when the appendable segment's vectors pass `segment_max_kb` it is *sealed*: its
//!   deleted rows are dropped in place (no second copy of the vectors), the rows move
//!   behind an `Arc`, its `epoch` advances (its old files no longer describe it) and a new
//!   empty appendable segment starts.
//!
//! `apply` never fails: everything that can be wrong with an op is found by `validate`
//! first, so an op that fails validation changes nothing and is never logged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::collection::point::{NamedVectors, Payload, PointRecord};
use crate::error::{Error, Result};
use crate::shard::bitset::BitSet;
use crate::shard::index::VectorIndex;
use crate::shard::json_path::JsonPath;
use crate::shard::names::ShardFileName;
use crate::shard::ops::{PointSelector, ShardOp};
use crate::shard::segment::SegmentData;
use crate::shard::ShardConfig;
use crate::types::PointId;

/// Where a live point's current row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub seg: u32,
    pub off: u32,
}

pub enum Rows {
    Appendable(SegmentData),
    Sealed(Arc<SegmentData>),
}

/// What the current manifest says about a segment (for the epoch it was written in).
#[derive(Debug, Clone, Default)]
pub struct OnDisk {
    pub epoch: u64,
    pub points: Vec<ShardFileName>,
    /// Rows `0..persisted_len` are in `points`.
    pub persisted_len: usize,
    pub deleted: Option<ShardFileName>,
    /// Value of `Segment::deletions` when `deleted` was written.
    pub deletions: u64,
}

pub struct Segment {
    pub id: u64,
    pub rows: Rows,
    pub deleted: BitSet,
    /// Counts deletions, so a checkpoint can tell whether the deletion file is stale.
    pub deletions: u64,
    /// Rows below this offset belong to a checkpoint and are never changed in place.
    pub frozen_len: usize,
    /// Advances when the rows are laid out anew (sealing), invalidating older files.
    pub epoch: u64,
    pub disk: OnDisk,
    pub indexes: BTreeMap<String, Arc<dyn VectorIndex>>,
    pub index_files: BTreeMap<String, ShardFileName>,
}

impl Segment {
    pub fn new_appendable(id: u64, config: &ShardConfig) -> Segment {
        Segment::with_rows(id, Rows::Appendable(SegmentData::new(&config.dims())))
    }

    pub fn with_rows(id: u64, rows: Rows) -> Segment {
        Segment {
            id,
            rows,
            deleted: BitSet::default(),
            deletions: 0,
            frozen_len: 0,
            epoch: 0,
            disk: OnDisk::default(),
            indexes: BTreeMap::new(),
            index_files: BTreeMap::new(),
        }
    }

    pub fn data(&self) -> &SegmentData {
        match &self.rows {
            Rows::Appendable(d) => d,
            Rows::Sealed(d) => d,
        }
    }

    pub fn is_sealed(&self) -> bool {
        matches!(self.rows, Rows::Sealed(_))
    }

    pub fn is_live(&self, off: usize) -> bool {
        off < self.data().len() && !self.deleted.get(off)
    }

    fn mark_deleted(&mut self, off: usize) {
        if self.deleted.set(off) {
            self.deletions += 1;
        }
    }
}

pub struct ShardState {
    pub config: ShardConfig,
    /// Ordered by creation. Positions change only when a merge swaps neighbouring
    /// sealed segments for one (`merge.rs`), which remaps `ids` in the same step.
    pub segments: Vec<Segment>,
    pub ids: BTreeMap<PointId, Loc>,
    pub last_seq: u64,
    pub next_segment: u64,
    /// An index was attached since the last checkpoint captured the state.
    pub index_dirty: bool,
}

/// What applying an op did, for the caller's housekeeping.
#[derive(Debug, Default, Clone, Copy)]
pub struct Applied {
    pub sealed: bool,
}

impl ShardState {
    /// A state from loaded segments; builds the id map (a later segment wins a duplicate).
    pub fn new(
        config: ShardConfig,
        mut segments: Vec<Segment>,
        last_seq: u64,
        next_segment: u64,
    ) -> ShardState {
        let mut next_segment =
            next_segment.max(segments.iter().map(|s| s.id + 1).max().unwrap_or(1));
        if segments.last().is_none_or(Segment::is_sealed) {
            segments.push(Segment::new_appendable(next_segment, &config));
            next_segment += 1;
        }
        let mut state = ShardState {
            config,
            segments: Vec::new(),
            ids: BTreeMap::new(),
            last_seq,
            next_segment,
            index_dirty: false,
        };
        for (si, mut seg) in segments.into_iter().enumerate() {
            for off in 0..seg.data().len() {
                if seg.deleted.get(off) {
                    continue;
                }
                let id = seg.data().ids[off];
                let loc = Loc {
                    seg: si as u32,
                    off: off as u32,
                };
                if let Some(old) = state.ids.insert(id, loc) {
                    state.segments[old.seg as usize].mark_deleted(old.off as usize);
                }
            }
            seg.frozen_len = seg.data().len();
            state.segments.push(seg);
        }
        state
    }

    pub fn appendable(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    pub fn row(&self, loc: Loc) -> (&Segment, usize) {
        (&self.segments[loc.seg as usize], loc.off as usize)
    }

    /// The payload of a row, decoded.
    pub fn payload(&self, loc: Loc) -> Payload {
        let (seg, off) = self.row(loc);
        seg.data().payloads.get(off)
    }

    pub fn vectors(&self, loc: Loc) -> NamedVectors {
        let (seg, off) = self.row(loc);
        seg.data().vectors_of(off)
    }

    // ------------------------------------------------------------ validation

    /// Everything that could make `op` fail, checked before it is logged.
    pub fn validate(&self, op: &ShardOp) -> Result<()> {
        validate_op(&self.config, op)
    }

    // ------------------------------------------------------------ applying

    /// Applies a validated op as sequence number `seq`.
    pub fn apply(&mut self, seq: u64, op: ShardOp) -> Applied {
        self.last_seq = self.last_seq.max(seq);
        match op {
            ShardOp::Upsert(points) => points.into_iter().for_each(|p| self.upsert(seq, p)),
            ShardOp::Delete(sel) => {
                for id in self.select(&sel) {
                    self.remove(id);
                }
            }
            ShardOp::SetPayload {
                selector,
                payload,
                key,
            } => {
                let path = key.as_deref().and_then(|k| parse_path(k).ok());
                self.update_payloads(seq, &selector, |p| match &path {
                    Some(path) => path.set(p, &payload),
                    None => p.extend(payload.iter().map(|(k, v)| (k.clone(), v.clone()))),
                });
            }
            ShardOp::OverwritePayload { selector, payload } => {
                self.update_payloads(seq, &selector, |p| *p = payload.clone());
            }
            ShardOp::DeletePayload { selector, keys } => {
                let paths: Vec<JsonPath> = keys.iter().filter_map(|k| parse_path(k).ok()).collect();
                self.update_payloads(seq, &selector, |p| {
                    paths.iter().for_each(|path| path.remove(p))
                });
            }
            ShardOp::ClearPayload { selector } => {
                self.update_payloads(seq, &selector, Payload::clear)
            }
        }
        Applied {
            sealed: self.maybe_seal(),
        }
    }

    fn upsert(&mut self, seq: u64, p: PointRecord) {
        let mut vectors = p.vectors;
        for (name, v) in vectors.iter_mut() {
            if let Some(params) = self.config.vectors.get(name) {
                *v = params.distance.preprocess(std::mem::take(v));
            }
        }
        self.append(p.id, seq, &vectors, p.payload);
    }

    /// Appends a row for `id`; a live row it had before is marked deleted (one search of
    /// the id map for both: replaying a WAL does this for every point).
    fn append(&mut self, id: PointId, seq: u64, vectors: &NamedVectors, payload: Payload) {
        let seg_index = (self.segments.len() - 1) as u32;
        let Rows::Appendable(rows) = &mut self.appendable().rows else {
            unreachable!("the last segment is always appendable")
        };
        let off = rows.len() as u32;
        rows.push(id, seq, vectors, payload);
        let loc = Loc {
            seg: seg_index,
            off,
        };
        if let Some(old) = self.ids.insert(id, loc) {
            self.segments[old.seg as usize].mark_deleted(old.off as usize);
        }
    }

    fn remove(&mut self, id: PointId) {
        if let Some(loc) = self.ids.remove(&id) {
            self.segments[loc.seg as usize].mark_deleted(loc.off as usize);
        }
    }

    /// Ids of live points the selector names, in ascending order.
    pub fn select(&self, sel: &PointSelector) -> Vec<PointId> {
        match sel {
            PointSelector::Ids(ids) => {
                let unique: BTreeSet<PointId> = ids
                    .iter()
                    .filter(|id| self.ids.contains_key(id))
                    .copied()
                    .collect();
                unique.into_iter().collect()
            }
            PointSelector::Filter(f) => self
                .ids
                .iter()
                .filter(|(id, loc)| f.matches(**id, &self.payload(**loc)))
                .map(|(id, _)| *id)
                .collect(),
        }
    }

    fn update_payloads(&mut self, seq: u64, sel: &PointSelector, change: impl Fn(&mut Payload)) {
        for id in self.select(sel) {
            let Some(&loc) = self.ids.get(&id) else {
                continue;
            };
            let last = self.segments.len() - 1;
            let seg = &mut self.segments[loc.seg as usize];
            let off = loc.off as usize;
            if loc.seg as usize == last && off >= seg.frozen_len {
                if let Rows::Appendable(rows) = &mut seg.rows {
                    let mut payload = rows.payloads.get(off);
                    change(&mut payload);
                    rows.payloads.set(off, &payload);
                    rows.versions[off] = seq;
                    continue;
                }
            }
            let mut payload = seg.data().payloads.get(off);
            change(&mut payload);
            let vectors = seg.data().vectors_of(off);
            self.append(id, seq, &vectors, payload);
        }
    }

    // ------------------------------------------------------------ sealing

    fn maybe_seal(&mut self) -> bool {
        let max_bytes = self.config.segment_max_kb.saturating_mul(1024);
        if max_bytes == 0 || self.appendable().data().vector_bytes() <= max_bytes {
            return false;
        }
        self.seal();
        true
    }

    /// Seals the appendable segment (see the module doc) and starts a new one.
    pub fn seal(&mut self) {
        let seg_index = self.segments.len() - 1;
        let seg = &mut self.segments[seg_index];
        let Rows::Appendable(rows) = &mut seg.rows else {
            return;
        };
        let mut rows = std::mem::take(rows);
        let deleted = std::mem::take(&mut seg.deleted);
        rows.retain(|i| !deleted.get(i));
        for (off, id) in rows.ids.iter().enumerate() {
            self.ids.insert(
                *id,
                Loc {
                    seg: seg_index as u32,
                    off: off as u32,
                },
            );
        }
        seg.frozen_len = rows.len();
        seg.rows = Rows::Sealed(Arc::new(rows));
        seg.deletions = 0;
        seg.epoch += 1;
        seg.disk = OnDisk {
            epoch: seg.epoch,
            ..OnDisk::default()
        };
        let id = self.next_segment;
        self.next_segment += 1;
        let fresh = Segment::new_appendable(id, &self.config);
        self.segments.push(fresh);
    }
}

fn parse_path(key: &str) -> Result<JsonPath> {
    key.parse().map_err(Error::BadInput)
}

fn display_name(name: &str) -> &str {
    if name.is_empty() {
        "(default vector)"
    } else {
        name
    }
}

/// Everything that could make `op` fail against a shard of `config`: what
/// [`ShardState::validate`] checks before an op is logged, and what WAL replay and the
/// verification of received shard data (`verify.rs`) check for ops read from files.
pub fn validate_op(config: &ShardConfig, op: &ShardOp) -> Result<()> {
    match op {
        ShardOp::Upsert(points) => points.iter().try_for_each(|p| validate_point(config, p)),
        ShardOp::SetPayload { key: Some(key), .. } => parse_path(key).map(|_| ()),
        ShardOp::DeletePayload { keys, .. } => {
            keys.iter().try_for_each(|k| parse_path(k).map(|_| ()))
        }
        _ => Ok(()),
    }
}

fn validate_point(config: &ShardConfig, p: &PointRecord) -> Result<()> {
    for (name, v) in &p.vectors {
        let params = config.vectors.get(name).ok_or_else(|| {
            Error::BadInput(format!(
                "Not existing vector name error: {}",
                display_name(name)
            ))
        })?;
        if v.len() != params.size {
            return Err(Error::BadInput(format!(
                "Vector dimension error: expected dim: {}, got {}",
                params.size,
                v.len()
            )));
        }
    }
    Ok(())
}
