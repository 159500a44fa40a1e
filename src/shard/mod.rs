//! A local shard: the storage engine for one shard's points on this peer.
//!
//! A shard is a write-ahead log plus immutable segment files, described by a small
//! manifest. Directory layout:
//! ```text
//! <shard dir>/manifest.json            segments, deletion and index files, WAL start (manifest.rs)
//! <shard dir>/wal/000000000001.log     WAL files named by their first sequence number (wal.rs)
//! <shard dir>/segments/000004.points   rows of a segment, or one chunk of the appendable one (segment.rs)
//! <shard dir>/segments/000007.deleted  deleted offsets of a segment as of a checkpoint (segment.rs)
//! <shard dir>/segments/000008.hnsw     vector index of one sealed segment's column (index.rs)
//! ```
//! Every file but `manifest.json` is written once and never modified; `manifest.json` is
//! replaced atomically. Superseded files are deleted only after the manifest that drops
//! them is durable, and not while a [`FrozenShard`] pins them.
//!
//! Module map: `ops` (operations and their WAL encoding), `wal`, `segment` (rows and
//! their files), `state` (segments in memory and applying ops), `search`, `filter` and
//! `json_path` (Qdrant filters), `engine` (locks, recovery, write path), `checkpoint`
//! (checkpoints and freezing), `worker` (background checkpoints and indexing), `merge`
//! (merging small sealed segments into larger ones, dropping deleted rows), `digest` (a
//! cheap per-range digest of the live points, to compare replicas), `index`
//! (the seam between segments and a vector index), `hnsw` (the HNSW graph),
//! `file_digests` (the sha256 of files that will not change again, for snapshots),
//! `names` (checked shard file names: the only place a listed name becomes a path) and
//! `verify` (checking received shard data against the collection config before a swap).
//!
//! Segment sizes: the appendable segment is sealed at `segment_max_kb` (so fresh data
//! gets an index soon); the merge optimizer then merges neighbouring sealed segments up
//! to `merge_max_kb`, building the merged segment's index before it swaps it in through
//! a checkpoint (the new manifest is the switch point).
//!
//! Threading: [`LocalShard`] is `Send + Sync`; all methods take `&self`. Reads run in
//! parallel with each other; a write holds the shard's write lock only while it appends
//! to the WAL and updates memory. Two background threads per shard: the worker does
//! checkpoints and index builds, the merger (at a lower CPU priority) one merge at a
//! time. Dropping the shard stops both; a build in progress gives up at its next poll.

pub mod binio;
pub mod bitset;
pub mod checkpoint;
pub mod digest;
pub mod distance;
pub mod engine;
pub mod file_digests;
pub mod files;
pub mod filter;
pub mod hnsw;
pub mod index;
pub mod json_path;
pub mod manifest;
pub mod merge;
pub mod names;
pub mod ops;
pub mod payloads;
pub mod search;
pub mod segment;
pub mod state;
pub mod verify;
pub mod wal;
pub mod worker;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use crate::collection::config::{HnswConfig, VectorParams};
use crate::collection::point::{
    NamedVectors, Payload, Record, ScoredPoint, VectorOutput, WithPayload, WithVector,
};
use crate::error::{Error, Result};
use crate::types::PointId;

pub use checkpoint::FrozenShard;
pub use filter::Filter;
pub use ops::{PointSelector, ShardOp};

use engine::Inner;
use index::IndexBuilder;
use state::{Loc, ShardState};

/// What a shard needs to know of its collection's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardConfig {
    /// Vector parameters by name; `""` is the default vector.
    pub vectors: BTreeMap<String, VectorParams>,
    pub hnsw: HnswConfig,
    /// A sealed segment with at least this many KB of vectors gets an index; 0 = never.
    pub indexing_threshold_kb: usize,
    /// The appendable segment is sealed once its vectors exceed this many KB; 0 = never.
    pub segment_max_kb: usize,
    /// Neighbouring sealed segments are merged while their live vectors fit in this many
    /// KB (see `merge.rs`); 0 = never merge.
    #[serde(default)]
    pub merge_max_kb: usize,
}

impl ShardConfig {
    /// Dimension of each vector name.
    pub fn dims(&self) -> BTreeMap<String, usize> {
        self.vectors
            .iter()
            .map(|(n, p)| (n.clone(), p.size))
            .collect()
    }
}

/// A nearest-neighbour query against one vector name.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    pub vector_name: String,
    pub vector: Vec<f32>,
    pub filter: Option<Filter>,
    /// Number of results, already including any offset the caller will skip.
    pub limit: usize,
    pub score_threshold: Option<f32>,
    pub exact: bool,
    pub hnsw_ef: Option<usize>,
    pub with_payload: WithPayload,
    pub with_vector: WithVector,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ShardInfo {
    pub points_count: usize,
    pub segments_count: usize,
    pub indexed_vectors_count: usize,
    /// Background checkpoints, index builds or merges are due or running.
    pub optimizing: bool,
}

pub struct LocalShard {
    inner: Arc<Inner>,
    workers: Vec<JoinHandle<()>>,
}

impl LocalShard {
    /// Opens the shard in `dir` (created if new), recovering from the WAL after a crash.
    pub fn open(dir: &Path, config: ShardConfig) -> Result<LocalShard> {
        Self::open_with_builder(dir, config, index::default_builder())
    }

    /// Like [`LocalShard::open`] with a chosen index implementation.
    pub fn open_with_builder(
        dir: &Path,
        config: ShardConfig,
        builder: Arc<dyn IndexBuilder>,
    ) -> Result<LocalShard> {
        let inner = Arc::new(Inner::open(dir, config, builder)?);
        let workers =
            worker::spawn(inner.clone()).map_err(|e| Error::io("starting shard worker", e))?;
        // Replaying the WAL may have sealed segments that no file holds yet.
        let unpersisted = inner
            .state
            .read()
            .segments
            .iter()
            .any(|s| s.is_sealed() && s.disk.points.is_empty());
        if unpersisted {
            inner.jobs.request_checkpoint();
        }
        inner.jobs.request_indexing();
        Ok(LocalShard { inner, workers })
    }

    /// Replaces the configuration (e.g. a changed indexing threshold). Vector sizes and
    /// distances must not change.
    pub fn update_config(&self, config: ShardConfig) {
        self.inner.state.write().config = config;
        self.inner.jobs.request_indexing();
    }

    /// Validates, logs and applies `op`; returns its sequence number. With `durable`, the
    /// op's WAL record is fsynced before this returns (concurrent callers share fsyncs).
    /// A failed op changes nothing.
    pub fn apply(&self, op: ShardOp, durable: bool) -> Result<u64> {
        self.inner.apply(op, durable)
    }

    /// The points with these ids, in request order; missing ids are skipped.
    pub fn retrieve(
        &self,
        ids: &[PointId],
        with_payload: &WithPayload,
        with_vector: &WithVector,
    ) -> Vec<Record> {
        let state = self.inner.state.read();
        ids.iter()
            .filter_map(|id| {
                state
                    .ids
                    .get(id)
                    .map(|loc| record(&state, *id, *loc, with_payload, with_vector))
            })
            .collect()
    }

    /// Up to `limit` points with id >= `offset` passing `filter`, ascending by id, and the
    /// id to continue from (`None` at the end).
    pub fn scroll(
        &self,
        filter: Option<&Filter>,
        offset: Option<PointId>,
        limit: usize,
        with_payload: &WithPayload,
        with_vector: &WithVector,
    ) -> (Vec<Record>, Option<PointId>) {
        let state = self.inner.state.read();
        let start = offset.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Included);
        let mut page = state
            .ids
            .range((start, std::ops::Bound::Unbounded))
            .filter(|(id, loc)| filter.is_none_or(|f| f.matches(**id, &state.payload(**loc))))
            .take(limit.saturating_add(1));
        let records = page
            .by_ref()
            .take(limit)
            .map(|(id, loc)| record(&state, *id, *loc, with_payload, with_vector));
        let records: Vec<Record> = records.collect();
        let next = page.next().map(|(id, _)| *id);
        (records, next)
    }

    /// Exact number of points passing `filter`.
    pub fn count(&self, filter: Option<&Filter>) -> usize {
        let state = self.inner.state.read();
        match filter {
            None => state.ids.len(),
            Some(f) => state
                .ids
                .iter()
                .filter(|(id, loc)| f.matches(**id, &state.payload(**loc)))
                .count(),
        }
    }

    /// Nearest neighbours, best first, scored as Qdrant reports them.
    pub fn search(&self, req: &SearchRequest) -> Result<Vec<ScoredPoint>> {
        let state = self.inner.state.read();
        let hits = search::search(&state, req)?;
        let distance = state
            .config
            .vectors
            .get(&req.vector_name)
            .map(|p| p.distance);
        let Some(distance) = distance else {
            return Ok(Vec::new());
        };
        Ok(hits
            .into_iter()
            .map(|hit| {
                let (seg, off) = state.row(hit.loc);
                let data = seg.data();
                ScoredPoint {
                    id: data.ids[off],
                    version: data.versions[off],
                    score: distance.to_user_score(hit.sim),
                    payload: select_payload(&req.with_payload, || data.payloads.get(off)),
                    vector: select_vectors(&state, hit.loc, &req.with_vector),
                }
            })
            .collect())
    }

    /// All stored (preprocessed) vectors of a point.
    pub fn get_vectors(&self, id: PointId) -> Option<NamedVectors> {
        let state = self.inner.state.read();
        state.ids.get(&id).map(|loc| state.vectors(*loc))
    }

    /// A digest of the live points (see [`digest`]) of one state of the shard: the points
    /// are taken under the read lock (copying the id map and the appendable segment's
    /// rows), and hashed once it is released, so writes wait only for the copy.
    pub fn digest(&self) -> digest::ShardDigest {
        let cut = digest::Cut::take(&self.inner.state.read());
        cut.digest()
    }

    /// The number of points, or `None` when a writer holds the shard right now (for
    /// metrics, which must never wait on a busy shard).
    pub fn try_points_count(&self) -> Option<usize> {
        self.inner.state.try_read().map(|state| state.ids.len())
    }

    pub fn info(&self) -> ShardInfo {
        let optimizing = worker::optimizations_pending(&self.inner);
        let state = self.inner.state.read();
        let indexed_vectors_count = state
            .segments
            .iter()
            .map(|s| s.indexes.values().map(|i| i.len()).sum::<usize>())
            .sum();
        ShardInfo {
            points_count: state.ids.len(),
            segments_count: state.segments.len(),
            indexed_vectors_count,
            optimizing,
        }
    }

    /// Checkpoint: writes what is only in the WAL into segment files and a new manifest,
    /// then drops the WAL before it.
    pub fn flush(&self) -> Result<()> {
        self.inner.checkpoint()?;
        self.inner.jobs.request_indexing();
        Ok(())
    }

    /// Pins a set of files (manifest, segment files, closed WAL files) that reproduces
    /// the shard as of now; see [`FrozenShard`]. Rotates the WAL, so writers wait only for
    /// that. Later checkpoints proceed but defer deleting pinned files until the guard drops.
    pub fn freeze(&self) -> Result<FrozenShard> {
        self.inner.freeze()
    }
}

impl Drop for LocalShard {
    fn drop(&mut self) {
        self.inner.jobs.stop();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

fn record(
    state: &ShardState,
    id: PointId,
    loc: Loc,
    with_payload: &WithPayload,
    with_vector: &WithVector,
) -> Record {
    Record {
        id,
        payload: select_payload(with_payload, || state.payload(loc)),
        vector: select_vectors(state, loc, with_vector),
    }
}

/// The payload to return, decoded only when one is asked for.
fn select_payload(
    with_payload: &WithPayload,
    payload: impl FnOnce() -> Payload,
) -> Option<Payload> {
    match with_payload {
        WithPayload::Enable(false) => None,
        _ => with_payload.select(&payload()),
    }
}

fn select_vectors(state: &ShardState, loc: Loc, with_vector: &WithVector) -> Option<VectorOutput> {
    if !with_vector.wants_any() {
        return None;
    }
    with_vector
        .select(&state.vectors(loc))
        .map(VectorOutput::from_named)
}

#[cfg(test)]
mod tests;
