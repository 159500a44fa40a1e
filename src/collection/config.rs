//! A collection's configuration in Qdrant's JSON shapes: the body of
//! `PUT /collections/{name}`, the diff of `PATCH /collections/{name}`, and the `config`
//! object of `GET /collections/{name}`. The same struct is stored in the cluster state
//! and written as `config.json` into collection snapshots.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::DEFAULT_VECTOR;

/// The largest vector dimension accepted (as in Qdrant).
pub const MAX_VECTOR_SIZE: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Distance {
    Cosine,
    Euclid,
    Dot,
    Manhattan,
}

/// Parameters of one dense vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VectorParams {
    pub size: usize,
    pub distance: Distance,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hnsw_config: Option<HnswConfigDiff>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_disk: Option<bool>,
}

/// `vectors`: one unnamed vector or a map of named vectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VectorsConfig {
    Single(VectorParams),
    Named(BTreeMap<String, VectorParams>),
}

impl VectorsConfig {
    /// Vector parameters by internal name (`""` for the unnamed vector).
    pub fn by_name(&self) -> BTreeMap<String, VectorParams> {
        match self {
            VectorsConfig::Single(p) => BTreeMap::from([(DEFAULT_VECTOR.to_string(), p.clone())]),
            VectorsConfig::Named(map) => map.clone(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&VectorParams> {
        match self {
            VectorsConfig::Single(p) if name == DEFAULT_VECTOR => Some(p),
            VectorsConfig::Single(_) => None,
            VectorsConfig::Named(map) => map.get(name),
        }
    }

    fn validate(&self) -> Result<()> {
        let all = self.by_name();
        if all.is_empty() {
            return Err(Error::BadInput(
                "collection must have at least one vector".into(),
            ));
        }
        for (name, p) in &all {
            if p.size == 0 || p.size > MAX_VECTOR_SIZE {
                let label = if name.is_empty() {
                    "vectors.size".to_string()
                } else {
                    format!("vectors.{name}.size")
                };
                return Err(Error::BadInput(format!(
                    "{label}: value {} invalid, must be from 1 to {MAX_VECTOR_SIZE}",
                    p.size
                )));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionParams {
    pub vectors: VectorsConfig,
    pub shard_number: u32,
    pub replication_factor: u32,
    pub write_consistency_factor: u32,
    pub on_disk_payload: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HnswConfig {
    pub m: usize,
    pub ef_construct: usize,
    /// Below this many kilobytes of vectors matching a filter, search scans exactly.
    pub full_scan_threshold: usize,
    pub max_indexing_threads: usize,
    pub on_disk: bool,
}

impl Default for HnswConfig {
    fn default() -> Self {
        HnswConfig {
            m: 16,
            ef_construct: 100,
            full_scan_threshold: 10_000,
            max_indexing_threads: 0,
            on_disk: false,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HnswConfigDiff {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub m: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ef_construct: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_scan_threshold: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_indexing_threads: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_disk: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimizersConfig {
    pub deleted_threshold: f64,
    pub vacuum_min_vector_number: usize,
    pub default_segment_number: usize,
    /// Largest sealed segment, in kilobytes of vectors (`None`: shoal's default).
    pub max_segment_size: Option<usize>,
    pub memmap_threshold: Option<usize>,
    /// A sealed segment with at least this many kilobytes of vectors gets an HNSW
    /// index; 0 disables indexing.
    pub indexing_threshold: Option<usize>,
    pub flush_interval_sec: u64,
    pub max_optimization_threads: Option<usize>,
}

impl Default for OptimizersConfig {
    fn default() -> Self {
        OptimizersConfig {
            deleted_threshold: 0.2,
            vacuum_min_vector_number: 1000,
            default_segment_number: 0,
            max_segment_size: None,
            memmap_threshold: None,
            indexing_threshold: Some(10_000),
            flush_interval_sec: 5,
            max_optimization_threads: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OptimizersConfigDiff {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vacuum_min_vector_number: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_segment_number: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_segment_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memmap_threshold: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indexing_threshold: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_interval_sec: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_optimization_threads: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalConfig {
    pub wal_capacity_mb: usize,
    pub wal_segments_ahead: usize,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            wal_capacity_mb: 32,
            wal_segments_ahead: 0,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WalConfigDiff {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_capacity_mb: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_segments_ahead: Option<usize>,
}

/// The whole configuration of a collection, as `GET /collections/{name}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionConfig {
    pub params: CollectionParams,
    pub hnsw_config: HnswConfig,
    pub optimizer_config: OptimizersConfig,
    pub wal_config: WalConfig,
    #[serde(default)]
    pub quantization_config: Option<serde_json::Value>,
}

/// Body of `PUT /collections/{name}`. Unknown keys are ignored, as Qdrant does;
/// known keys with a wrong type are a 400.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateCollection {
    pub vectors: VectorsConfig,
    pub shard_number: Option<u32>,
    pub replication_factor: Option<u32>,
    pub write_consistency_factor: Option<u32>,
    pub on_disk_payload: Option<bool>,
    pub hnsw_config: Option<HnswConfigDiff>,
    pub wal_config: Option<WalConfigDiff>,
    pub optimizers_config: Option<OptimizersConfigDiff>,
    pub quantization_config: Option<serde_json::Value>,
    pub sparse_vectors: Option<serde_json::Value>,
}

/// Node-wide defaults that a create request may leave out.
#[derive(Debug, Clone)]
pub struct CollectionDefaults {
    pub shard_number: u32,
    pub replication_factor: u32,
    pub write_consistency_factor: u32,
    pub on_disk_payload: bool,
    pub hnsw: HnswConfig,
    pub optimizers: OptimizersConfig,
    pub wal: WalConfig,
}

impl Default for CollectionDefaults {
    fn default() -> Self {
        CollectionDefaults {
            shard_number: 1,
            replication_factor: 1,
            write_consistency_factor: 1,
            on_disk_payload: true,
            hnsw: HnswConfig::default(),
            optimizers: OptimizersConfig::default(),
            wal: WalConfig::default(),
        }
    }
}

impl CreateCollection {
    /// Builds the full configuration, filling gaps from `defaults`, and validates it.
    pub fn into_config(self, defaults: &CollectionDefaults) -> Result<CollectionConfig> {
        if self
            .sparse_vectors
            .as_ref()
            .is_some_and(|v| !v.is_null() && v != &serde_json::json!({}))
        {
            return Err(Error::BadInput(
                "sparse vectors are not supported by shoal".into(),
            ));
        }
        let mut hnsw = defaults.hnsw.clone();
        self.hnsw_config.unwrap_or_default().apply_to(&mut hnsw);
        let mut optimizers = defaults.optimizers.clone();
        self.optimizers_config
            .unwrap_or_default()
            .apply_to(&mut optimizers);
        let mut wal = defaults.wal.clone();
        self.wal_config.unwrap_or_default().apply_to(&mut wal);
        let config = CollectionConfig {
            params: CollectionParams {
                vectors: self.vectors,
                shard_number: self.shard_number.unwrap_or(defaults.shard_number),
                replication_factor: self
                    .replication_factor
                    .unwrap_or(defaults.replication_factor),
                write_consistency_factor: self
                    .write_consistency_factor
                    .unwrap_or(defaults.write_consistency_factor),
                on_disk_payload: self.on_disk_payload.unwrap_or(defaults.on_disk_payload),
            },
            hnsw_config: hnsw,
            optimizer_config: optimizers,
            wal_config: wal,
            quantization_config: self.quantization_config.filter(|v| !v.is_null()),
        };
        config.validate()?;
        Ok(config)
    }
}

impl CollectionConfig {
    pub fn validate(&self) -> Result<()> {
        self.params.vectors.validate()?;
        let p = &self.params;
        for (label, value) in [
            ("shard_number", p.shard_number),
            ("replication_factor", p.replication_factor),
            ("write_consistency_factor", p.write_consistency_factor),
        ] {
            if value == 0 {
                return Err(Error::BadInput(format!(
                    "{label}: value 0 invalid, must be 1 or more"
                )));
            }
        }
        if p.shard_number > 1024 {
            return Err(Error::BadInput("shard_number: must be at most 1024".into()));
        }
        if self.hnsw_config.m == 0 && self.hnsw_config.ef_construct == 0 {
            return Err(Error::BadInput(
                "hnsw_config.ef_construct: must be 1 or more".into(),
            ));
        }
        if self.hnsw_config.ef_construct == 0 {
            return Err(Error::BadInput(
                "hnsw_config.ef_construct: must be 1 or more".into(),
            ));
        }
        Ok(())
    }
}

impl HnswConfigDiff {
    pub fn apply_to(&self, c: &mut HnswConfig) {
        if let Some(v) = self.m {
            c.m = v;
        }
        if let Some(v) = self.ef_construct {
            c.ef_construct = v;
        }
        if let Some(v) = self.full_scan_threshold {
            c.full_scan_threshold = v;
        }
        if let Some(v) = self.max_indexing_threads {
            c.max_indexing_threads = v;
        }
        if let Some(v) = self.on_disk {
            c.on_disk = v;
        }
    }
}

impl OptimizersConfigDiff {
    pub fn apply_to(&self, c: &mut OptimizersConfig) {
        if let Some(v) = self.deleted_threshold {
            c.deleted_threshold = v;
        }
        if let Some(v) = self.vacuum_min_vector_number {
            c.vacuum_min_vector_number = v;
        }
        if let Some(v) = self.default_segment_number {
            c.default_segment_number = v;
        }
        if self.max_segment_size.is_some() {
            c.max_segment_size = self.max_segment_size;
        }
        if self.memmap_threshold.is_some() {
            c.memmap_threshold = self.memmap_threshold;
        }
        if self.indexing_threshold.is_some() {
            c.indexing_threshold = self.indexing_threshold;
        }
        if let Some(v) = self.flush_interval_sec {
            c.flush_interval_sec = v;
        }
        if self.max_optimization_threads.is_some() {
            c.max_optimization_threads = self.max_optimization_threads;
        }
    }
}

impl WalConfigDiff {
    pub fn apply_to(&self, c: &mut WalConfig) {
        if let Some(v) = self.wal_capacity_mb {
            c.wal_capacity_mb = v;
        }
        if let Some(v) = self.wal_segments_ahead {
            c.wal_segments_ahead = v;
        }
    }
}

/// `params` of `PATCH /collections/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CollectionParamsDiff {
    pub replication_factor: Option<u32>,
    pub write_consistency_factor: Option<u32>,
    pub on_disk_payload: Option<bool>,
}

/// Per-vector part of `PATCH /collections/{name}` (`vectors: {name: {...}}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VectorParamsDiff {
    pub hnsw_config: Option<HnswConfigDiff>,
    pub on_disk: Option<bool>,
}

/// Body of `PATCH /collections/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateCollection {
    pub params: Option<CollectionParamsDiff>,
    pub hnsw_config: Option<HnswConfigDiff>,
    pub optimizers_config: Option<OptimizersConfigDiff>,
    pub vectors: Option<BTreeMap<String, VectorParamsDiff>>,
    pub quantization_config: Option<serde_json::Value>,
}

impl UpdateCollection {
    /// Applies the diff to `config`; pure, so every peer computes the same result.
    pub fn apply_to(&self, config: &mut CollectionConfig) -> Result<()> {
        if let Some(p) = &self.params {
            if let Some(v) = p.replication_factor {
                config.params.replication_factor = v;
            }
            if let Some(v) = p.write_consistency_factor {
                config.params.write_consistency_factor = v;
            }
            if let Some(v) = p.on_disk_payload {
                config.params.on_disk_payload = v;
            }
        }
        if let Some(h) = &self.hnsw_config {
            h.apply_to(&mut config.hnsw_config);
        }
        if let Some(o) = &self.optimizers_config {
            o.apply_to(&mut config.optimizer_config);
        }
        if let Some(vectors) = &self.vectors {
            for (name, diff) in vectors {
                let params = match &mut config.params.vectors {
                    VectorsConfig::Single(p) if name.is_empty() => p,
                    VectorsConfig::Single(_) => None.ok_or_else(|| unknown_vector(name))?,
                    VectorsConfig::Named(map) => {
                        map.get_mut(name).ok_or_else(|| unknown_vector(name))?
                    }
                };
                if let Some(h) = &diff.hnsw_config {
                    let mut merged = params.hnsw_config.clone().unwrap_or_default();
                    merge_hnsw_diff(&mut merged, h);
                    params.hnsw_config = Some(merged);
                }
                if diff.on_disk.is_some() {
                    params.on_disk = diff.on_disk;
                }
            }
        }
        if let Some(q) = &self.quantization_config {
            config.quantization_config = if q.is_null() { None } else { Some(q.clone()) };
        }
        config.validate()
    }
}

fn merge_hnsw_diff(into: &mut HnswConfigDiff, from: &HnswConfigDiff) {
    into.m = from.m.or(into.m);
    into.ef_construct = from.ef_construct.or(into.ef_construct);
    into.full_scan_threshold = from.full_scan_threshold.or(into.full_scan_threshold);
    into.max_indexing_threads = from.max_indexing_threads.or(into.max_indexing_threads);
    into.on_disk = from.on_disk.or(into.on_disk);
}

fn unknown_vector(name: &str) -> Error {
    Error::BadInput(format!(
        "Wrong vector name: `{name}` is not a vector of this collection"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn create_fills_defaults_and_validates() {
        let body: CreateCollection = serde_json::from_value(
            json!({"vectors": {"size": 4, "distance": "Cosine"}, "shard_number": 2}),
        )
        .unwrap();
        let config = body.into_config(&CollectionDefaults::default()).unwrap();
        assert_eq!(config.params.shard_number, 2);
        assert_eq!(config.params.replication_factor, 1);
        assert_eq!(config.params.vectors.get("").unwrap().size, 4);

        let zero: CreateCollection =
            serde_json::from_value(json!({"vectors": {"size": 0, "distance": "Dot"}})).unwrap();
        assert!(zero.into_config(&CollectionDefaults::default()).is_err());
    }

    #[test]
    fn named_vectors_parse() {
        let body: CreateCollection = serde_json::from_value(
            json!({"vectors": {"img": {"size": 2, "distance": "Euclid"}, "txt": {"size": 3, "distance": "Dot"}}}),
        )
        .unwrap();
        let config = body.into_config(&CollectionDefaults::default()).unwrap();
        assert_eq!(config.params.vectors.by_name().len(), 2);
        assert!(serde_json::from_value::<CreateCollection>(
            json!({"vectors": {"size": 2, "distance": "Nope"}})
        )
        .is_err());
    }

    #[test]
    fn update_applies_diff() {
        let body: CreateCollection =
            serde_json::from_value(json!({"vectors": {"size": 4, "distance": "Cosine"}})).unwrap();
        let mut config = body.into_config(&CollectionDefaults::default()).unwrap();
        let diff: UpdateCollection = serde_json::from_value(
            json!({"params": {"replication_factor": 3}, "optimizers_config": {"indexing_threshold": 0}}),
        )
        .unwrap();
        diff.apply_to(&mut config).unwrap();
        assert_eq!(config.params.replication_factor, 3);
        assert_eq!(config.optimizer_config.indexing_threshold, Some(0));
    }
}
