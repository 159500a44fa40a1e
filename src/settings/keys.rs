//! Which configuration keys exist, and what start-up says about a key shoal does not read.
//!
//! Qdrant's stock files (`config/config.yaml`, `development.yaml`, `production.yaml`) name
//! keys for features shoal does not have or does differently (thread pools, GPU indexing,
//! audit logs, ...). Such a key is accepted with a warning that names it, as is any key
//! under a section Qdrant reads as a whole. A key neither shoal nor Qdrant knows is most
//! likely a typo: the warning names the nearest valid key. `null` for any key means "the
//! default", as in Qdrant, except where a null has a meaning of its own
//! ([`MEANINGFUL_NULLS`]).

/// Keys whose `null` is a value rather than "use the default".
pub(super) const MEANINGFUL_NULLS: &[&str] = &["service.grpc_port"];

/// Sections of Qdrant's configuration that shoal reads none of: any key under them is a
/// Qdrant key.
const QDRANT_SECTIONS: &[&str] = &[
    "logger",
    "debugger",
    "inference",
    "gpu",
    "feature_flags",
    "audit",
    "storage.snapshots_config",
    "storage.performance",
    "storage.optimizers_overwrite",
    "storage.quantization",
    "storage.collection.vectors",
    "storage.collection.quantization",
    "storage.collection.strict_mode",
];

/// Single keys of Qdrant 1.19's configuration (besides [`QDRANT_SECTIONS`]), whether shoal
/// reads them or not; the ones shoal reads are found from its own settings, so this list
/// only needs to be complete for Qdrant.
const QDRANT_KEYS: &[&str] = &[
    "log_level",
    "telemetry_disabled",
    "per_collection_metrics_enabled",
    "storage.storage_path",
    "storage.snapshots_path",
    "storage.temp_path",
    "storage.on_disk_payload",
    "storage.update_concurrency",
    "storage.update_queue_size",
    "storage.node_type",
    "storage.mmap_advice",
    "storage.handle_collection_load_errors",
    "storage.async_scorer",
    "storage.recovery_mode",
    "storage.shard_transfer_method",
    "storage.max_collections",
    "storage.wal.wal_capacity_mb",
    "storage.wal.wal_segments_ahead",
    "storage.wal.wal_retain_closed",
    "storage.optimizers.deleted_threshold",
    "storage.optimizers.vacuum_min_vector_number",
    "storage.optimizers.default_segment_number",
    "storage.optimizers.max_segment_size_kb",
    "storage.optimizers.memmap_threshold_kb",
    "storage.optimizers.indexing_threshold_kb",
    "storage.optimizers.flush_interval_sec",
    "storage.optimizers.max_optimization_threads",
    "storage.optimizers.prevent_unoptimized",
    "storage.hnsw_index.m",
    "storage.hnsw_index.ef_construct",
    "storage.hnsw_index.full_scan_threshold_kb",
    "storage.hnsw_index.max_indexing_threads",
    "storage.hnsw_index.on_disk",
    "storage.hnsw_index.payload_m",
    "storage.hnsw_index.inline_storage",
    "storage.collection.replication_factor",
    "storage.collection.write_consistency_factor",
    "storage.collection.shard_number_per_node",
    "service.host",
    "service.http_port",
    "service.grpc_port",
    "service.metrics_port",
    "service.max_request_size_mb",
    "service.max_workers",
    "service.enable_cors",
    "service.enable_tls",
    "service.verify_https_client_certificate",
    "service.api_key",
    "service.alt_api_key",
    "service.read_only_api_key",
    "service.jwt_rbac",
    "service.hide_jwt_dashboard",
    "service.static_content_dir",
    "service.enable_static_content",
    "service.slow_query_secs",
    "service.hardware_reporting",
    "service.metrics_prefix",
    "cluster.enabled",
    "cluster.peer_id",
    "cluster.grpc_timeout_ms",
    "cluster.connection_timeout_ms",
    "cluster.resharding_enabled",
    "cluster.p2p.port",
    "cluster.p2p.connection_pool_size",
    "cluster.p2p.enable_tls",
    "cluster.consensus.max_message_queue_size",
    "cluster.consensus.tick_period_ms",
    "cluster.consensus.bootstrap_timeout_sec",
    "cluster.consensus.message_timeout_ticks",
    "cluster.consensus.compact_wal_entries",
    "tls.cert",
    "tls.key",
    "tls.ca_cert",
    "tls.cert_ttl",
];

/// What start-up says about a key the settings did not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnreadKey {
    /// A key of Qdrant's configuration that shoal accepts and does not use.
    Qdrant(String),
    /// A key neither shoal nor Qdrant has, with the nearest valid key when one is close.
    Unknown {
        key: String,
        nearest: Option<String>,
    },
}

impl UnreadKey {
    /// Sorts `key` (dotted path) given the keys shoal reads (`shoal_keys`).
    pub fn classify(key: &str, shoal_keys: &[String]) -> UnreadKey {
        if is_qdrant_key(key) {
            return UnreadKey::Qdrant(key.to_string());
        }
        UnreadKey::Unknown {
            key: key.to_string(),
            nearest: nearest_key(key, shoal_keys),
        }
    }

    /// The warning logged at start-up.
    pub fn warning(&self) -> String {
        match self {
            UnreadKey::Qdrant(key) => {
                format!(
                    "config key `{key}` is a Qdrant setting that shoal accepts and does not use"
                )
            }
            UnreadKey::Unknown { key, nearest: None } => {
                format!("unknown config key `{key}` ignored")
            }
            UnreadKey::Unknown {
                key,
                nearest: Some(near),
            } => format!("unknown config key `{key}` ignored; did you mean `{near}`?"),
        }
    }
}

fn is_qdrant_key(key: &str) -> bool {
    QDRANT_KEYS.contains(&key)
        || QDRANT_SECTIONS
            .iter()
            .any(|section| key == *section || key.starts_with(&format!("{section}.")))
}

/// The valid key (shoal's or Qdrant's) closest to `key` by edit distance, when it is close
/// enough to be a likely misspelling: at most a third of the key's length, and at least 1.
fn nearest_key(key: &str, shoal_keys: &[String]) -> Option<String> {
    let limit = (key.len() / 3).max(1);
    shoal_keys
        .iter()
        .map(String::as_str)
        .chain(QDRANT_KEYS.iter().copied())
        .flat_map(with_sections)
        .map(|candidate| (strsim::levenshtein(key, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min()
        .map(|(_, candidate)| candidate.to_string())
}

/// `key` and every section above it (`a.b.c` gives `a.b.c`, `a.b`, `a`): an unread key may
/// name a whole misspelt section.
fn with_sections(key: &str) -> impl Iterator<Item = &str> {
    std::iter::once(key).chain(key.match_indices('.').map(move |(at, _)| &key[..at]))
}

/// Every leaf key path of a JSON tree (tables are walked; arrays and scalars are leaves).
pub(super) fn leaf_keys(value: &serde_json::Value) -> Vec<String> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (name, child) in map {
                    let path = if prefix.is_empty() {
                        name.clone()
                    } else {
                        format!("{prefix}.{name}")
                    };
                    walk(&path, child, out);
                }
            }
            _ => out.push(prefix.to_string()),
        }
    }
    let mut out = Vec::new();
    walk("", value, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shoal() -> Vec<String> {
        [
            "service.http_port",
            "storage.storage_path",
            "cluster.p2p.port",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    #[test]
    fn qdrant_keys_and_sections_are_recognised() {
        for key in [
            "telemetry_disabled",
            "storage.performance.max_search_threads",
            "storage.snapshots_config.s3_config.bucket",
            "logger.on_disk.enabled",
            "tls.cert_ttl",
        ] {
            assert_eq!(
                UnreadKey::classify(key, &shoal()),
                UnreadKey::Qdrant(key.into())
            );
        }
    }

    #[test]
    fn a_misspelt_key_names_the_nearest_valid_one() {
        let unread = UnreadKey::classify("service.htp_port", &shoal());
        assert_eq!(
            unread,
            UnreadKey::Unknown {
                key: "service.htp_port".into(),
                nearest: Some("service.http_port".into())
            }
        );
        assert!(unread
            .warning()
            .contains("did you mean `service.http_port`"));
        let far = UnreadKey::classify("completely_else", &shoal());
        assert_eq!(
            far,
            UnreadKey::Unknown {
                key: "completely_else".into(),
                nearest: None
            }
        );
        assert_eq!(
            nearest_key("storage.optimisers", &shoal()),
            Some("storage.optimizers".to_string())
        );
        // A section name is not a prefix match of a longer, different section.
        assert!(!is_qdrant_key("loggers.x"));
    }

    #[test]
    fn leaf_keys_walk_tables() {
        let v = serde_json::json!({"a": {"b": 1, "c": {"d": null}}, "e": [1, 2]});
        let mut keys = leaf_keys(&v);
        keys.sort();
        assert_eq!(keys, ["a.b", "a.c.d", "e"]);
    }
}
