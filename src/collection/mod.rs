//! A collection on this peer: its configuration, its local shards, and the routing of
//! points to shards. Writes are split by shard (a point's id hash picks its shard);
//! reads and searches ask every local shard and merge the answers (score order for
//! search, id order for scroll).
//!
//! Methods here are synchronous (they fsync and scan vectors); the node calls them from
//! blocking tasks.

pub mod config;
pub mod point;
pub mod registry;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use self::config::{CollectionConfig, Distance};
use self::point::{NamedVectors, PointRecord, Record, ScoredPoint, WithPayload, WithVector};
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
        let shard_config = shard_config(&config);
        let mut shards = BTreeMap::new();
        for shard_id in local_shards {
            let shard = LocalShard::open(&dir.join(shard_id.to_string()), shard_config.clone())?;
            shards.insert(*shard_id, Arc::new(shard));
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

    /// Inserts or replaces points; returns the operation id.
    pub fn upsert(&self, points: Vec<PointRecord>, durable: bool) -> Result<u64> {
        for point in &points {
            self.validate_vectors(&point.vectors)?;
        }
        let mut by_shard: BTreeMap<ShardId, Vec<PointRecord>> = BTreeMap::new();
        for point in points {
            by_shard
                .entry(self.shard_of(&point.id))
                .or_default()
                .push(point);
        }
        let mut op_id = 0;
        for (shard_id, points) in by_shard {
            op_id = op_id.max(
                self.local_shard(shard_id)?
                    .apply(ShardOp::Upsert(points), durable)?,
            );
        }
        Ok(op_id)
    }

    /// Applies a payload or delete op. Id selectors go to the owning shards only,
    /// filter selectors to every shard.
    pub fn update(&self, op: ShardOp, durable: bool) -> Result<u64> {
        let mut op_id = 0;
        for (shard_id, shard_op) in self.split_by_shard(op) {
            op_id = op_id.max(self.local_shard(shard_id)?.apply(shard_op, durable)?);
        }
        Ok(op_id)
    }

    pub fn retrieve(
        &self,
        ids: &[PointId],
        with_payload: &WithPayload,
        with_vector: &WithVector,
    ) -> Vec<Record> {
        let mut found: BTreeMap<PointId, Record> = BTreeMap::new();
        for shard in self.shards.values() {
            for record in shard.retrieve(ids, with_payload, with_vector) {
                found.insert(record.id, record);
            }
        }
        // Keep the request's order (and its duplicates out).
        let mut seen = std::collections::HashSet::new();
        ids.iter()
            .filter(|id| seen.insert(**id))
            .filter_map(|id| found.remove(id))
            .collect()
    }

    pub fn get_vectors(&self, id: PointId) -> Option<NamedVectors> {
        self.shards
            .get(&self.shard_of(&id))
            .and_then(|shard| shard.get_vectors(id))
    }

    /// One page of points in id order, and the id the next page starts at.
    pub fn scroll(
        &self,
        filter: Option<&Filter>,
        offset: Option<PointId>,
        limit: usize,
        with_payload: &WithPayload,
        with_vector: &WithVector,
    ) -> (Vec<Record>, Option<PointId>) {
        let mut records: Vec<Record> = Vec::new();
        for shard in self.shards.values() {
            records.extend(
                shard
                    .scroll(filter, offset, limit + 1, with_payload, with_vector)
                    .0,
            );
        }
        records.sort_by_key(|r| r.id);
        let next = records.get(limit).map(|r| r.id);
        records.truncate(limit);
        (records, next)
    }

    pub fn count(&self, filter: Option<&Filter>) -> usize {
        self.shards.values().map(|shard| shard.count(filter)).sum()
    }

    pub fn search(&self, params: &SearchParams) -> Result<Vec<ScoredPoint>> {
        let distance = {
            let config = self.config.read();
            let vector = config
                .params
                .vectors
                .get(&params.vector_name)
                .ok_or_else(|| unknown_vector(&params.vector_name))?;
            if vector.size != params.vector.len() {
                return Err(dimension_error(vector.size, params.vector.len()));
            }
            vector.distance
        };
        let request = SearchRequest {
            vector_name: params.vector_name.clone(),
            vector: params.vector.clone(),
            filter: params.filter.clone(),
            limit: params.limit + params.offset,
            score_threshold: params.score_threshold,
            exact: params.exact,
            hnsw_ef: params.hnsw_ef,
            with_payload: params.with_payload.clone(),
            with_vector: params.with_vector.clone(),
        };
        let mut hits = Vec::new();
        for shard in self.shards.values() {
            hits.extend(shard.search(&request)?);
        }
        sort_by_score(&mut hits, distance);
        Ok(hits
            .into_iter()
            .skip(params.offset)
            .take(params.limit)
            .collect())
    }

    pub fn stats(&self) -> CollectionStats {
        let mut stats = CollectionStats::default();
        for shard in self.shards.values() {
            let info = shard.info();
            stats.points_count += info.points_count;
            stats.segments_count += info.segments_count;
            stats.indexed_vectors_count += info.indexed_vectors_count;
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

    fn shard_of(&self, id: &PointId) -> ShardId {
        let shard_number = u64::from(self.config.read().params.shard_number.max(1));
        (id.routing_hash() % shard_number) as ShardId
    }

    fn local_shard(&self, shard_id: ShardId) -> Result<&Arc<LocalShard>> {
        self.shards.get(&shard_id).ok_or_else(|| {
            Error::Unavailable(format!(
                "shard {shard_id} of collection `{}` is not available on this peer",
                self.name
            ))
        })
    }

    fn split_by_shard(&self, op: ShardOp) -> Vec<(ShardId, ShardOp)> {
        let selector = match &op {
            ShardOp::Upsert(_) => None,
            ShardOp::Delete(s)
            | ShardOp::SetPayload { selector: s, .. }
            | ShardOp::OverwritePayload { selector: s, .. }
            | ShardOp::DeletePayload { selector: s, .. }
            | ShardOp::ClearPayload { selector: s } => Some(s),
        };
        match selector {
            Some(PointSelector::Ids(ids)) => {
                let mut by_shard: BTreeMap<ShardId, Vec<PointId>> = BTreeMap::new();
                for id in ids {
                    by_shard.entry(self.shard_of(id)).or_default().push(*id);
                }
                by_shard
                    .into_iter()
                    .map(|(shard, ids)| (shard, with_selector(&op, PointSelector::Ids(ids))))
                    .collect()
            }
            _ => self
                .shards
                .keys()
                .map(|shard| (*shard, op.clone()))
                .collect(),
        }
    }
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
fn shard_config(config: &CollectionConfig) -> ShardConfig {
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
