//! Collection messages ⇄ shoal's collection configuration, information, aliases and
//! cluster information. Quantization settings travel as the JSON object REST uses,
//! which is how shoal stores them.

use std::collections::BTreeMap;

use serde_json::{json, Value as Json};

use super::{to_usize, unsupported};
use crate::api::grpc::proto;
use crate::collection::config::{
    CollectionConfig, CollectionParamsDiff, CreateCollection, Distance, HnswConfig, HnswConfigDiff,
    OptimizersConfig, OptimizersConfigDiff, UpdateCollection, VectorParams, VectorParamsDiff,
    VectorsConfig, WalConfig, WalConfigDiff,
};
use crate::consensus::op::AliasAction;
use crate::consensus::state::ReplicaState;
use crate::error::{Error, Result};
use crate::node::collections::{AliasDescription, CollectionClusterInfo, CollectionInfo};
use crate::types::DEFAULT_VECTOR;

fn usize_opt(value: Option<u64>, field: &str) -> Result<Option<usize>> {
    value.map(|v| to_usize(v, field)).transpose()
}

fn hnsw_diff(diff: Option<proto::HnswConfigDiff>) -> Result<Option<HnswConfigDiff>> {
    let Some(d) = diff else { return Ok(None) };
    Ok(Some(HnswConfigDiff {
        m: usize_opt(d.m, "hnsw_config.m")?,
        ef_construct: usize_opt(d.ef_construct, "hnsw_config.ef_construct")?,
        full_scan_threshold: usize_opt(d.full_scan_threshold, "hnsw_config.full_scan_threshold")?,
        max_indexing_threads: usize_opt(
            d.max_indexing_threads,
            "hnsw_config.max_indexing_threads",
        )?,
        on_disk: d.on_disk,
    }))
}

fn optimizers_diff(
    diff: Option<proto::OptimizersConfigDiff>,
) -> Result<Option<OptimizersConfigDiff>> {
    use proto::max_optimization_threads::Variant;
    let Some(d) = diff else { return Ok(None) };
    let threads = match d.max_optimization_threads.and_then(|t| t.variant) {
        Some(Variant::Value(v)) => Some(v),
        Some(Variant::Setting(_)) => None,
        None => d.deprecated_max_optimization_threads,
    };
    let f = "optimizers_config";
    Ok(Some(OptimizersConfigDiff {
        deleted_threshold: d.deleted_threshold,
        vacuum_min_vector_number: usize_opt(d.vacuum_min_vector_number, f)?,
        default_segment_number: usize_opt(d.default_segment_number, f)?,
        max_segment_size: usize_opt(d.max_segment_size, f)?,
        memmap_threshold: usize_opt(d.memmap_threshold, f)?,
        indexing_threshold: usize_opt(d.indexing_threshold, f)?,
        flush_interval_sec: d.flush_interval_sec,
        max_optimization_threads: usize_opt(threads, f)?,
    }))
}

fn wal_diff(diff: Option<proto::WalConfigDiff>) -> Result<Option<WalConfigDiff>> {
    let Some(d) = diff else { return Ok(None) };
    Ok(Some(WalConfigDiff {
        wal_capacity_mb: usize_opt(d.wal_capacity_mb, "wal_config.wal_capacity_mb")?,
        wal_segments_ahead: usize_opt(d.wal_segments_ahead, "wal_config.wal_segments_ahead")?,
    }))
}

fn distance(value: i32) -> Result<Distance> {
    match proto::Distance::try_from(value) {
        Ok(proto::Distance::Cosine) => Ok(Distance::Cosine),
        Ok(proto::Distance::Euclid) => Ok(Distance::Euclid),
        Ok(proto::Distance::Dot) => Ok(Distance::Dot),
        Ok(proto::Distance::Manhattan) => Ok(Distance::Manhattan),
        _ => Err(Error::BadInput(format!(
            "vectors_config.distance: {value} is not a known distance"
        ))),
    }
}

fn vector_params(p: proto::VectorParams) -> Result<VectorParams> {
    if p.quantization_config.is_some() {
        return Err(unsupported("per-vector quantization_config"));
    }
    match p.datatype.map(proto::Datatype::try_from) {
        None | Some(Ok(proto::Datatype::Default | proto::Datatype::Float32)) => {}
        Some(_) => return Err(unsupported("vector datatypes other than float32")),
    }
    Ok(VectorParams {
        size: to_usize(p.size, "vectors_config.size")?,
        distance: distance(p.distance)?,
        hnsw_config: hnsw_diff(p.hnsw_config)?,
        on_disk: p.on_disk,
    })
}

fn vectors_config(config: Option<proto::VectorsConfig>) -> Result<VectorsConfig> {
    use proto::vectors_config::Config;
    match config.and_then(|c| c.config) {
        Some(Config::Params(p)) => Ok(VectorsConfig::Single(vector_params(p)?)),
        Some(Config::ParamsMap(map)) => Ok(VectorsConfig::Named(
            map.map
                .into_iter()
                .map(|(name, p)| Ok((name, vector_params(p)?)))
                .collect::<Result<_>>()?,
        )),
        None => Err(Error::BadInput("`vectors_config` is required".into())),
    }
}

fn quantization_json(q: proto::QuantizationConfig) -> Option<Json> {
    use proto::quantization_config::Quantization;
    Some(match q.quantization? {
        Quantization::Scalar(s) => json!({"scalar": scalar_json(s)}),
        Quantization::Product(p) => json!({"product": product_json(p)}),
        Quantization::Binary(b) => json!({"binary": {"always_ram": b.always_ram}}),
    })
}

fn scalar_json(s: proto::ScalarQuantization) -> Json {
    json!({"type": "int8", "quantile": s.quantile, "always_ram": s.always_ram})
}

fn product_json(p: proto::ProductQuantization) -> Json {
    let ratio = proto::CompressionRatio::try_from(p.compression)
        .unwrap_or(proto::CompressionRatio::X4)
        .as_str_name();
    json!({"compression": ratio, "always_ram": p.always_ram})
}

fn quantization_diff_json(q: proto::QuantizationConfigDiff) -> Option<Json> {
    use proto::quantization_config_diff::Quantization;
    Some(match q.quantization? {
        Quantization::Scalar(s) => json!({"scalar": scalar_json(s)}),
        Quantization::Product(p) => json!({"product": product_json(p)}),
        Quantization::Binary(b) => json!({"binary": {"always_ram": b.always_ram}}),
        Quantization::Disabled(_) => Json::Null,
    })
}

/// The stored JSON quantization config back as a message (unknown shapes are left out).
fn quantization_to_grpc(q: &Json) -> Option<proto::QuantizationConfig> {
    use proto::quantization_config::Quantization;
    let always_ram = |o: &Json| o.get("always_ram").and_then(Json::as_bool);
    let quantization = if let Some(s) = q.get("scalar") {
        Quantization::Scalar(proto::ScalarQuantization {
            r#type: proto::QuantizationType::Int8 as i32,
            quantile: s.get("quantile").and_then(Json::as_f64).map(|v| v as f32),
            always_ram: always_ram(s),
        })
    } else if let Some(p) = q.get("product") {
        let compression = p
            .get("compression")
            .and_then(Json::as_str)
            .and_then(proto::CompressionRatio::from_str_name)
            .unwrap_or(proto::CompressionRatio::X4);
        Quantization::Product(proto::ProductQuantization {
            compression: compression as i32,
            always_ram: always_ram(p),
        })
    } else if let Some(b) = q.get("binary") {
        Quantization::Binary(proto::BinaryQuantization {
            always_ram: always_ram(b),
        })
    } else {
        return None;
    };
    Some(proto::QuantizationConfig {
        quantization: Some(quantization),
    })
}

fn no_sparse(config: &Option<proto::SparseVectorConfig>) -> Result<()> {
    match config {
        Some(c) if !c.map.is_empty() => Err(unsupported("sparse vectors")),
        _ => Ok(()),
    }
}

/// `Create`: the name and the body of `PUT /collections/{name}`.
pub fn create_collection(request: proto::CreateCollection) -> Result<(String, CreateCollection)> {
    no_sparse(&request.sparse_vectors_config)?;
    let body = CreateCollection {
        vectors: vectors_config(request.vectors_config)?,
        shard_number: request.shard_number,
        replication_factor: request.replication_factor,
        write_consistency_factor: request.write_consistency_factor,
        on_disk_payload: request.on_disk_payload,
        hnsw_config: hnsw_diff(request.hnsw_config)?,
        wal_config: wal_diff(request.wal_config)?,
        optimizers_config: optimizers_diff(request.optimizers_config)?,
        quantization_config: request.quantization_config.and_then(quantization_json),
        sparse_vectors: None,
    };
    Ok((request.collection_name, body))
}

/// `Update`: the name and the body of `PATCH /collections/{name}`.
pub fn update_collection(request: proto::UpdateCollection) -> Result<(String, UpdateCollection)> {
    use proto::vectors_config_diff::Config;
    no_sparse(&request.sparse_vectors_config)?;
    let vector_diff = |d: proto::VectorParamsDiff| -> Result<VectorParamsDiff> {
        if d.quantization_config.is_some() {
            return Err(unsupported("per-vector quantization_config"));
        }
        Ok(VectorParamsDiff {
            hnsw_config: hnsw_diff(d.hnsw_config)?,
            on_disk: d.on_disk,
        })
    };
    let vectors = match request.vectors_config.and_then(|c| c.config) {
        None => None,
        Some(Config::Params(d)) => Some(BTreeMap::from([(
            DEFAULT_VECTOR.to_string(),
            vector_diff(d)?,
        )])),
        Some(Config::ParamsMap(map)) => Some(
            map.map
                .into_iter()
                .map(|(name, d)| Ok((name, vector_diff(d)?)))
                .collect::<Result<_>>()?,
        ),
    };
    let diff = UpdateCollection {
        params: request.params.map(|p| CollectionParamsDiff {
            replication_factor: p.replication_factor,
            write_consistency_factor: p.write_consistency_factor,
            on_disk_payload: p.on_disk_payload,
        }),
        hnsw_config: hnsw_diff(request.hnsw_config)?,
        optimizers_config: optimizers_diff(request.optimizers_config)?,
        vectors,
        quantization_config: request.quantization_config.and_then(quantization_diff_json),
    };
    Ok((request.collection_name, diff))
}

fn hnsw_to_grpc(h: &HnswConfig) -> proto::HnswConfigDiff {
    proto::HnswConfigDiff {
        m: Some(h.m as u64),
        ef_construct: Some(h.ef_construct as u64),
        full_scan_threshold: Some(h.full_scan_threshold as u64),
        max_indexing_threads: Some(h.max_indexing_threads as u64),
        on_disk: Some(h.on_disk),
        payload_m: None,
    }
}

fn hnsw_diff_to_grpc(h: &HnswConfigDiff) -> proto::HnswConfigDiff {
    proto::HnswConfigDiff {
        m: h.m.map(|v| v as u64),
        ef_construct: h.ef_construct.map(|v| v as u64),
        full_scan_threshold: h.full_scan_threshold.map(|v| v as u64),
        max_indexing_threads: h.max_indexing_threads.map(|v| v as u64),
        on_disk: h.on_disk,
        payload_m: None,
    }
}

fn optimizers_to_grpc(o: &OptimizersConfig) -> proto::OptimizersConfigDiff {
    use proto::max_optimization_threads::{Setting, Variant};
    let threads = match o.max_optimization_threads {
        Some(n) => Variant::Value(n as u64),
        None => Variant::Setting(Setting::Auto as i32),
    };
    proto::OptimizersConfigDiff {
        deleted_threshold: Some(o.deleted_threshold),
        vacuum_min_vector_number: Some(o.vacuum_min_vector_number as u64),
        default_segment_number: Some(o.default_segment_number as u64),
        max_segment_size: o.max_segment_size.map(|v| v as u64),
        memmap_threshold: o.memmap_threshold.map(|v| v as u64),
        indexing_threshold: o.indexing_threshold.map(|v| v as u64),
        flush_interval_sec: Some(o.flush_interval_sec),
        deprecated_max_optimization_threads: o.max_optimization_threads.map(|v| v as u64),
        max_optimization_threads: Some(proto::MaxOptimizationThreads {
            variant: Some(threads),
        }),
    }
}

fn wal_to_grpc(w: &WalConfig) -> proto::WalConfigDiff {
    proto::WalConfigDiff {
        wal_capacity_mb: Some(w.wal_capacity_mb as u64),
        wal_segments_ahead: Some(w.wal_segments_ahead as u64),
    }
}

fn vector_params_to_grpc(p: &VectorParams) -> proto::VectorParams {
    let distance = match p.distance {
        Distance::Cosine => proto::Distance::Cosine,
        Distance::Euclid => proto::Distance::Euclid,
        Distance::Dot => proto::Distance::Dot,
        Distance::Manhattan => proto::Distance::Manhattan,
    };
    proto::VectorParams {
        size: p.size as u64,
        distance: distance as i32,
        hnsw_config: p.hnsw_config.as_ref().map(hnsw_diff_to_grpc),
        quantization_config: None,
        on_disk: p.on_disk,
        datatype: None,
    }
}

fn config_to_grpc(c: &CollectionConfig) -> proto::CollectionConfig {
    use proto::vectors_config::Config;
    let vectors = match &c.params.vectors {
        VectorsConfig::Single(p) => Config::Params(vector_params_to_grpc(p)),
        VectorsConfig::Named(map) => Config::ParamsMap(proto::VectorParamsMap {
            map: map
                .iter()
                .map(|(name, p)| (name.clone(), vector_params_to_grpc(p)))
                .collect(),
        }),
    };
    proto::CollectionConfig {
        params: Some(proto::CollectionParams {
            shard_number: c.params.shard_number,
            on_disk_payload: c.params.on_disk_payload,
            vectors_config: Some(proto::VectorsConfig {
                config: Some(vectors),
            }),
            replication_factor: Some(c.params.replication_factor),
            write_consistency_factor: Some(c.params.write_consistency_factor),
        }),
        hnsw_config: Some(hnsw_to_grpc(&c.hnsw_config)),
        optimizer_config: Some(optimizers_to_grpc(&c.optimizer_config)),
        wal_config: Some(wal_to_grpc(&c.wal_config)),
        quantization_config: c
            .quantization_config
            .as_ref()
            .and_then(quantization_to_grpc),
    }
}

pub fn collection_info(info: CollectionInfo) -> proto::CollectionInfo {
    let status = match info.status {
        "green" => proto::CollectionStatus::Green,
        "yellow" => proto::CollectionStatus::Yellow,
        "red" => proto::CollectionStatus::Red,
        "grey" => proto::CollectionStatus::Grey,
        _ => proto::CollectionStatus::UnknownCollectionStatus,
    };
    let ok = info.optimizer_status == "ok";
    proto::CollectionInfo {
        status: status as i32,
        optimizer_status: Some(proto::OptimizerStatus {
            ok,
            error: if ok {
                String::new()
            } else {
                info.optimizer_status.to_string()
            },
        }),
        segments_count: info.segments_count as u64,
        config: Some(config_to_grpc(&info.config)),
        points_count: Some(info.points_count as u64),
        indexed_vectors_count: Some(info.indexed_vectors_count as u64),
    }
}

pub fn alias_actions(actions: Vec<proto::AliasOperations>) -> Result<Vec<AliasAction>> {
    use proto::alias_operations::Action;
    actions
        .into_iter()
        .map(|a| match a.action {
            Some(Action::CreateAlias(c)) => Ok(AliasAction::CreateAlias {
                collection_name: c.collection_name,
                alias_name: c.alias_name,
            }),
            Some(Action::RenameAlias(r)) => Ok(AliasAction::RenameAlias {
                old_alias_name: r.old_alias_name,
                new_alias_name: r.new_alias_name,
            }),
            Some(Action::DeleteAlias(d)) => Ok(AliasAction::DeleteAlias {
                alias_name: d.alias_name,
            }),
            None => Err(Error::BadInput("alias action is empty".into())),
        })
        .collect()
}

pub fn aliases(list: Vec<AliasDescription>) -> Vec<proto::AliasDescription> {
    list.into_iter()
        .map(|a| proto::AliasDescription {
            alias_name: a.alias_name,
            collection_name: a.collection_name,
        })
        .collect()
}

fn replica_state(state: ReplicaState) -> i32 {
    (match state {
        ReplicaState::Active => proto::ReplicaState::Active,
        ReplicaState::Dead => proto::ReplicaState::Dead,
        ReplicaState::Partial => proto::ReplicaState::Partial,
        ReplicaState::Initializing => proto::ReplicaState::Initializing,
        ReplicaState::Listener => proto::ReplicaState::Listener,
        ReplicaState::ManualRecovery => proto::ReplicaState::ManualRecovery,
    }) as i32
}

pub fn cluster_info(info: CollectionClusterInfo) -> proto::CollectionClusterInfoResponse {
    proto::CollectionClusterInfoResponse {
        peer_id: info.peer_id,
        shard_count: info.shard_count as u64,
        local_shards: info
            .local_shards
            .into_iter()
            .map(|s| proto::LocalShardInfo {
                shard_id: s.shard_id,
                points_count: s.points_count as u64,
                state: replica_state(s.state),
            })
            .collect(),
        remote_shards: info
            .remote_shards
            .into_iter()
            .map(|s| proto::RemoteShardInfo {
                shard_id: s.shard_id,
                peer_id: s.peer_id,
                state: replica_state(s.state),
            })
            .collect(),
        shard_transfers: info
            .shard_transfers
            .into_iter()
            .map(|t| proto::ShardTransferInfo {
                shard_id: t.shard_id,
                from: t.from,
                to: t.to,
                sync: t.sync,
            })
            .collect(),
    }
}
