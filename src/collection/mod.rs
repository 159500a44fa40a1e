//! A collection on this peer: its configuration, the shards placed here, and the routing
//! of points to shards. Writes are split by shard (a point's id hash picks its shard);
//! the node sends each part to the shard's replica set (`crate::replication`) and merges
//! the per-shard answers of reads with [`merge`] (score order for search, id order for
//! scroll).
//!
//! Methods here are synchronous (they fsync); the node calls them from blocking tasks.

pub mod config;
pub mod merge;
pub mod point;
pub mod registry;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use self::config::{CollectionConfig, Distance};
use self::point::{NamedVectors, PointRecord, ScoredPoint, WithPayload, WithVector};
use crate::error::{Error, Result};
use crate::shard::filter::Filter;
use crate::shard::ops::{PointSelector, ShardOp};
use crate::shard::{LocalShard, SearchRequest, ShardConfig};
use crate::types::{PointId, ShardId};

/// Largest sealed segment (KB of vectors) when indexing is off.
const DEFAULT_SEGMENT_MAX_KB: usize = 64 * 1024;
/// Merged segments grow to this many KB of live vectors when the collection sets no
/// `max_segment_size`. A merge holds its output (vectors, graph, ids: ~1.35x this for
/// 128-d) next to the segments it replaces until the swap, so this bounds the merge's
/// extra memory. Measured on 500k x 128-d: 64 MiB (5 segments) searches as fast as
/// 128 MiB (4 segments), ~215 vs ~205 q/s, with a ~90 MiB lower peak RSS.
const DEFAULT_MERGE_MAX_KB: usize = 64 * 1024;
/// Smallest automatic segment size, so tiny thresholds do not make thousands of files.
const MIN_AUTO_SEGMENT_KB: usize = 1024;

pub struct Collection {
    name: String,
    dir: PathBuf,
    config: RwLock<CollectionConfig>,
    shards: BTreeMap<ShardId, Arc<LocalShard>>,
}

/// What `GET /collections/{name}` reports about the local data.
#[derive(Debug, Clone, Default)]
pub struct CollectionStats {
    pub points_count: usize,
    pub segments_count: usize,
    pub indexed_vectors_count: usize,
    /// Some local shard has background optimizations (index builds, merges) due or running.
    pub optimizing: bool,
}

/// A nearest-neighbour request after the API layer has resolved the query vector.
#[derive(Debug, Clone)]
pub struct SearchParams {
    pub vector_name: String,
    pub vector: Vec<f32>,
    pub filter: Option<Filter>,
    pub limit: usize,
    pub offset: usize,
    pub score_threshold: Option<f32>,
    pub exact: bool,
    pub hnsw_ef: Option<usize>,
    pub with_payload: WithPayload,
    pub with_vector: WithVector,
}

impl Collection {
    /// Opens (creating if needed) the given local shards under `dir/<shard id>`.
    pub fn open(
        dir: &Path,
        name: &str,
        config: CollectionConfig,
        local_shards: &[ShardId],
    ) -> Result<Collection> {
        Self::open_keeping(dir, name, config, local_shards, &BTreeMap::new())
    }

    /// [`Collection::open`], except that the shards in `kept` (open already, from the
    /// collection this one replaces) are used as they are instead of being read again.
    pub fn open_keeping(
        dir: &Path,
        name: &str,
        config: CollectionConfig,
        local_shards: &[ShardId],
        kept: &BTreeMap<ShardId, Arc<LocalShard>>,
    ) -> Result<Collection> {
        let shard_config = shard_config(&config);
        let mut shards = BTreeMap::new();
        for shard_id in local_shards {
            let shard = match kept.get(shard_id) {
                Some(open) => open.clone(),
                None => Arc::new(LocalShard::open(
                    &dir.join(shard_id.to_string()),
                    shard_config.clone(),
                )?),
            };
            shards.insert(*shard_id, shard);
        }
        Ok(Collection {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            config: RwLock::new(config),
            shards,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> CollectionConfig {
        self.config.read().clone()
    }

    pub fn local_shards(&self) -> &BTreeMap<ShardId, Arc<LocalShard>> {
        &self.shards
    }

    /// Gives the collection up for its open shards, to open it again with some of them
    /// kept (see [`Collection::open_keeping`]).
    pub fn into_shards(self) -> BTreeMap<ShardId, Arc<LocalShard>> {
        self.shards
    }

    /// True when `expected_refs` references to this collection exist and nobody else
    /// holds one of its shards: closing it then really closes its files.
    pub fn is_idle(self: &Arc<Self>, expected_refs: usize) -> bool {
        Arc::strong_count(self) <= expected_refs
            && self.shards.values().all(|s| Arc::strong_count(s) == 1)
    }

    pub fn update_config(&self, config: CollectionConfig) {
        let shard_config = shard_config(&config);
        for shard in self.shards.values() {
            shard.update_config(shard_config.clone());
        }
        *self.config.write() = config;
    }

    /// Checks every vector of every point against the collection's vector config.
    pub fn validate_vectors(&self, vectors: &NamedVectors) -> Result<()> {
        let config = self.config.read();
        if vectors.is_empty() {
            return Err(Error::BadInput("point has no vector".into()));
        }
        for (name, vector) in vectors {
            let params = config
                .params
                .vectors
                .get(name)
                .ok_or_else(|| unknown_vector(name))?;
            if vector.len() != params.size {
                return Err(dimension_error(params.size, vector.len()));
            }
            if vector.iter().any(|x| !x.is_finite()) {
                return Err(Error::BadInput(
                    "vectors must hold finite numbers (no NaN or infinity)".into(),
                ));
            }
        }
        Ok(())
    }

    /// The shard each point belongs to, as one upsert op per shard.
    pub fn split_upsert(&self, points: Vec<PointRecord>) -> Vec<(ShardId, ShardOp)> {
        let mut by_shard: BTreeMap<ShardId, Vec<PointRecord>> = BTreeMap::new();
        for point in points {
            by_shard
                .entry(self.shard_of(&point.id))
                .or_default()
                .push(point);
        }
        by_shard
            .into_iter()
            .map(|(shard, points)| (shard, ShardOp::Upsert(points)))
            .collect()
    }

    /// Splits a payload or delete op by shard: id selectors go to the owning shards only,
    /// filter selectors to every shard of the collection.
    pub fn split_by_shard(&self, op: ShardOp) -> Vec<(ShardId, ShardOp)> {
        let selector = match &op {
            ShardOp::Upsert(points) => return self.split_upsert(points.clone()),
            ShardOp::Delete(s)
            | ShardOp::SetPayload { selector: s, .. }
            | ShardOp::OverwritePayload { selector: s, .. }
            | ShardOp::DeletePayload { selector: s, .. }
            | ShardOp::ClearPayload { selector: s } => s,
        };
        match selector {
            PointSelector::Ids(ids) => self
                .split_ids(ids)
                .into_iter()
                .map(|(shard, ids)| (shard, with_selector(&op, PointSelector::Ids(ids))))
                .collect(),
            PointSelector::Filter(_) => self.shard_ids().map(|shard| (shard, op.clone())).collect(),
        }
    }

    /// Ids grouped by the shard that owns them.
    pub fn split_ids(&self, ids: &[PointId]) -> BTreeMap<ShardId, Vec<PointId>> {
        let mut by_shard: BTreeMap<ShardId, Vec<PointId>> = BTreeMap::new();
        for id in ids {
            by_shard.entry(self.shard_of(id)).or_default().push(*id);
        }
        by_shard
    }

    /// Every shard of the collection, wherever it lives.
    pub fn shard_ids(&self) -> std::ops::Range<ShardId> {
        0..self.config.read().params.shard_number.max(1)
    }

    /// The shard a point belongs to: a stable hash of its id, the same on every peer.
    pub fn shard_of(&self, id: &PointId) -> ShardId {
        let shard_number = u64::from(self.config.read().params.shard_number.max(1));
        (id.routing_hash() % shard_number) as ShardId
    }

    /// Checks a search against the vector config and builds the request every shard
    /// answers (with `limit + offset` results, the offset is skipped after merging); also
    /// returns the distance that orders the merged hits.
    pub fn search_request(&self, params: &SearchParams) -> Result<(SearchRequest, Distance)> {
        let config = self.config.read();
        let vector = config
            .params
            .vectors
            .get(&params.vector_name)
            .ok_or_else(|| unknown_vector(&params.vector_name))?;
        if vector.size != params.vector.len() {
            return Err(dimension_error(vector.size, params.vector.len()));
        }
        check_query_vector(&params.vector)?;
        let window = params.limit.checked_add(params.offset).ok_or_else(|| {
            Error::BadRequest(format!(
                "limit + offset is too large ({} + {})",
                params.limit, params.offset
            ))
        })?;
        let request = SearchRequest {
            vector_name: params.vector_name.clone(),
            vector: params.vector.clone(),
            filter: params.filter.clone(),
            limit: window,
            score_threshold: params.score_threshold,
            exact: params.exact,
            hnsw_ef: params.hnsw_ef,
            with_payload: params.with_payload.clone(),
            with_vector: params.with_vector.clone(),
        };
        Ok((request, vector.distance))
    }

    /// The collection's point count when every shard is on this peer (an upper bound
    /// on what one search can return), `None` when some shard lives elsewhere.
    pub fn points_upper_bound(&self) -> Option<usize> {
        let all_local = self
            .shard_ids()
            .all(|shard| self.shards.contains_key(&shard));
        all_local.then(|| self.stats().points_count)
    }

    pub fn stats(&self) -> CollectionStats {
        let mut stats = CollectionStats::default();
        for shard in self.shards.values() {
            let info = shard.info();
            stats.points_count += info.points_count;
            stats.segments_count += info.segments_count;
            stats.indexed_vectors_count += info.indexed_vectors_count;
            stats.optimizing |= info.optimizing;
        }
        stats
    }

    /// Makes every local shard durable up to now (used before snapshots and at shutdown).
    pub fn flush(&self) -> Result<()> {
        for shard in self.shards.values() {
            shard.flush()?;
        }
        Ok(())
    }
}

/// A query vector must hold finite numbers whose squares sum to a finite number, so
/// that no score computed from it overflows on its side (400 otherwise).
pub fn check_query_vector(vector: &[f32]) -> Result<()> {
    if vector.iter().any(|x| !x.is_finite()) {
        return Err(Error::BadInput(
            "query vector must hold finite numbers (no NaN or infinity)".into(),
        ));
    }
    let squares: f32 = vector.iter().map(|x| x * x).sum();
    if !squares.is_finite() {
        return Err(Error::BadInput(
            "query vector values are too large: their squares overflow".into(),
        ));
    }
    Ok(())
}

/// The error of a search whose scores are not finite numbers (they overflowed).
pub fn score_overflow() -> Error {
    Error::BadInput(
        "the query's scores overflow (are not finite numbers); use smaller vector values".into(),
    )
}

/// Best first: highest score for similarities, lowest for distances.
pub fn sort_by_score(hits: &mut [ScoredPoint], distance: Distance) {
    match distance {
        Distance::Cosine | Distance::Dot => {
            hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)))
        }
        Distance::Euclid | Distance::Manhattan => {
            hits.sort_by(|a, b| a.score.total_cmp(&b.score).then(a.id.cmp(&b.id)))
        }
    }
}

/// The same op aimed at other points.
fn with_selector(op: &ShardOp, selector: PointSelector) -> ShardOp {
    match op.clone() {
        ShardOp::Upsert(points) => ShardOp::Upsert(points),
        ShardOp::Delete(_) => ShardOp::Delete(selector),
        ShardOp::SetPayload { payload, key, .. } => ShardOp::SetPayload {
            selector,
            payload,
            key,
        },
        ShardOp::OverwritePayload { payload, .. } => {
            ShardOp::OverwritePayload { selector, payload }
        }
        ShardOp::DeletePayload { keys, .. } => ShardOp::DeletePayload { selector, keys },
        ShardOp::ClearPayload { .. } => ShardOp::ClearPayload { selector },
    }
}

/// `max_segment_size` is the size merged segments grow to (default
/// [`DEFAULT_MERGE_MAX_KB`]); the appendable segment is sealed earlier, as soon as it
/// can be indexed (see [`auto_segment_kb`]), or at `max_segment_size` if that is smaller.
/// 0 means never seal and never merge.
pub fn shard_config(config: &CollectionConfig) -> ShardConfig {
    let indexing_threshold_kb = config.optimizer_config.indexing_threshold.unwrap_or(10_000);
    let seal_kb = auto_segment_kb(indexing_threshold_kb);
    let max_segment_kb = config.optimizer_config.max_segment_size;
    ShardConfig {
        vectors: config.params.vectors.by_name(),
        hnsw: config.hnsw_config.clone(),
        indexing_threshold_kb,
        segment_max_kb: max_segment_kb.map_or(seal_kb, |max| max.min(seal_kb)),
        merge_max_kb: max_segment_kb.unwrap_or(DEFAULT_MERGE_MAX_KB),
    }
}

/// Without an explicit `max_segment_size`, the appendable segment is sealed as soon as
/// it is big enough to be indexed: only sealed segments get an HNSW graph, so a larger
/// seal size would leave that much data to exact scans. Without indexing, segments are
/// sealed at 64 MiB of vectors.
fn auto_segment_kb(indexing_threshold_kb: usize) -> usize {
    if indexing_threshold_kb == 0 {
        DEFAULT_SEGMENT_MAX_KB
    } else {
        indexing_threshold_kb.clamp(MIN_AUTO_SEGMENT_KB, DEFAULT_SEGMENT_MAX_KB)
    }
}

fn unknown_vector(name: &str) -> Error {
    if name.is_empty() {
        Error::BadInput("Wrong vector name: this collection has only named vectors; name one with `using` or a named vector".into())
    } else {
        Error::BadInput(format!("Not existing vector name error: {name}"))
    }
}

fn dimension_error(expected: usize, got: usize) -> Error {
    Error::BadInput(format!(
        "Vector dimension error: expected dim: {expected}, got {got}"
    ))
}
