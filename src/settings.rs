//! Node settings, layered as Qdrant does: built-in defaults < `config/config.yaml` <
//! `config/{RUN_MODE}.yaml` (`RUN_MODE` defaults to `development`) < `config/local.yaml`
//! (all relative to the working directory, all optional) < the file named by
//! `--config-path` < environment variables `QDRANT__SECTION__KEY` (e.g.
//! `QDRANT__SERVICE__HTTP_PORT`).
//!
//! Keys and defaults follow Qdrant's names; `config/config.yaml` in the repository lists
//! every key this struct reads. Qdrant's own stock files load unchanged: `null` means the
//! key's default, and keys shoal does not read are accepted with a warning ([`keys`]). A
//! value of the wrong type stops start-up with an error that names the key.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::collection::config::{CollectionDefaults, HnswConfig, OptimizersConfig, WalConfig};
use crate::consensus::transfer::TransferMethod;

pub mod keys;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Settings {
    pub log_level: Option<String>,
    pub service: ServiceSettings,
    pub storage: StorageSettings,
    pub cluster: ClusterSettings,
    pub tls: TlsSettings,
    // --- telemetry and metrics (issue 13 item 2) ---
    /// Qdrant's top-level `per_collection_metrics_enabled`: `GET /metrics?per_collection=true`
    /// adds per-collection samples only when this is on. `None` (unset or `null`): on.
    pub per_collection_metrics_enabled: Option<bool>,
    // --- end telemetry and metrics ---
    /// Warnings about keys the layers named and shoal does not read, logged once logging
    /// is set up (see [`keys`]).
    #[serde(skip)]
    pub load_warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceSettings {
    pub host: String,
    pub http_port: u16,
    /// `null` disables the public gRPC API (in the environment too:
    /// `QDRANT__SERVICE__GRPC_PORT=null`, see [`port_or_null`]).
    #[serde(deserialize_with = "port_or_null")]
    pub grpc_port: Option<u16>,
    /// Largest JSON request body in MiB (multipart uploads are not limited by it).
    pub max_request_size_mb: usize,
    pub enable_cors: bool,
    pub enable_snapshot_url_recovery: bool,
    /// Key that grants every operation (REST and gRPC); `None`: no authentication.
    pub api_key: Option<String>,
    /// Key that grants reads only (list, get, search, query, scroll, count, download).
    pub read_only_api_key: Option<String>,
    /// Serve REST and gRPC over TLS with `tls.cert` / `tls.key`.
    pub enable_tls: bool,
    // --- read limits (issue 10, item 6; enforced by `node::read_limits`) ---
    /// Largest `limit + offset` of one search, query or scroll (larger: 400).
    pub max_query_limit: usize,
    /// Most searches or queries in one batch request (more: 400).
    pub search_max_batchsize: usize,
    /// Most results one batch may ask for: the sum over its searches of `limit + offset`,
    /// each capped at the collection's point count when that is known here (more: 400).
    pub max_batch_results: usize,
    /// Require a client certificate signed by `tls.ca_cert` on every TLS port (REST and
    /// gRPC with `enable_tls`, the peer port with `cluster.p2p.enable_tls`): mTLS.
    pub verify_https_client_certificate: bool,
}

impl Settings {
    /// Whether `GET /metrics?per_collection=true` may add per-collection samples.
    pub fn per_collection_metrics(&self) -> bool {
        self.per_collection_metrics_enabled.unwrap_or(true)
    }
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            host: "0.0.0.0".into(),
            http_port: 6333,
            grpc_port: Some(6334),
            max_request_size_mb: 32,
            enable_cors: true,
            enable_snapshot_url_recovery: true,
            api_key: None,
            read_only_api_key: None,
            enable_tls: false,
            max_query_limit: 100_000,
            search_max_batchsize: 1000,
            max_batch_results: 100_000,
            verify_https_client_certificate: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageSettings {
    pub storage_path: PathBuf,
    pub snapshots_path: PathBuf,
    /// Where temporary files go while snapshots are built or unpacked; `None` means
    /// `<storage_path>/tmp`.
    pub temp_path: Option<PathBuf>,
    pub on_disk_payload: bool,
    pub wal: WalSettings,
    pub optimizers: OptimizerSettings,
    pub hnsw_index: HnswSettings,
    pub collection: CollectionSettings,
    /// How shard transfers copy data when a request names no method, and how Dead
    /// replicas are recovered (Qdrant's `storage.shard_transfer_method`).
    pub shard_transfer_method: TransferMethod,
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings {
            storage_path: PathBuf::from("./storage"),
            snapshots_path: PathBuf::from("./snapshots"),
            temp_path: None,
            on_disk_payload: true,
            wal: WalSettings::default(),
            optimizers: OptimizerSettings::default(),
            hnsw_index: HnswSettings::default(),
            collection: CollectionSettings::default(),
            shard_transfer_method: TransferMethod::Snapshot,
        }
    }
}

impl StorageSettings {
    /// The directory for temporary files (created on demand, wiped at start-up).
    pub fn temp_dir(&self) -> PathBuf {
        match &self.temp_path {
            Some(path) => path.join("tmp"),
            None => self.storage_path.join("tmp"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WalSettings {
    pub wal_capacity_mb: usize,
    pub wal_segments_ahead: usize,
}

impl Default for WalSettings {
    fn default() -> Self {
        WalSettings {
            wal_capacity_mb: 32,
            wal_segments_ahead: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct OptimizerSettings {
    pub deleted_threshold: f64,
    pub vacuum_min_vector_number: usize,
    pub default_segment_number: usize,
    pub max_segment_size_kb: Option<usize>,
    pub memmap_threshold_kb: Option<usize>,
    /// A sealed segment with at least this many KB of vectors gets an HNSW index.
    pub indexing_threshold_kb: usize,
    pub flush_interval_sec: u64,
    pub max_optimization_threads: Option<usize>,
}

impl Default for OptimizerSettings {
    fn default() -> Self {
        OptimizerSettings {
            deleted_threshold: 0.2,
            vacuum_min_vector_number: 1000,
            default_segment_number: 0,
            max_segment_size_kb: None,
            memmap_threshold_kb: None,
            indexing_threshold_kb: 10_000,
            flush_interval_sec: 5,
            max_optimization_threads: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HnswSettings {
    pub m: usize,
    pub ef_construct: usize,
    pub full_scan_threshold_kb: usize,
    pub max_indexing_threads: usize,
    pub on_disk: bool,
}

impl Default for HnswSettings {
    fn default() -> Self {
        HnswSettings {
            m: 16,
            ef_construct: 100,
            full_scan_threshold_kb: 10_000,
            max_indexing_threads: 0,
            on_disk: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CollectionSettings {
    pub replication_factor: u32,
    pub write_consistency_factor: u32,
}

impl Default for CollectionSettings {
    fn default() -> Self {
        CollectionSettings {
            replication_factor: 1,
            write_consistency_factor: 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterSettings {
    /// Serve the peer port and take part in a multi-peer cluster (`--uri`, `--bootstrap`).
    pub enabled: bool,
    /// How long one call to another peer may take.
    pub grpc_timeout_ms: u64,
    /// How long connecting to another peer may take.
    pub connection_timeout_ms: u64,
    pub p2p: P2pSettings,
    pub consensus: ConsensusSettings,
    // --- replica consistency check (issue 10 item 9) ---
    /// Seconds between the checks that compare the digests of each shard's Active
    /// replicas and mark a diverged one Dead (`node/consistency.rs`); 0 disables them.
    pub consistency_check_interval_sec: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            enabled: false,
            grpc_timeout_ms: 5_000,
            connection_timeout_ms: 2_000,
            p2p: P2pSettings::default(),
            consensus: ConsensusSettings::default(),
            consistency_check_interval_sec: 300,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct P2pSettings {
    pub port: u16,
    // --- peer authentication and TLS (issue 10 item 8; see docs/security.md) ---
    /// Shared cluster secret: every call on the peer port must carry it (metadata
    /// `x-shoal-peer-key`), and every call this peer makes carries it. `None`: the peer
    /// port is open to anyone who reaches it, as in Qdrant.
    pub api_key: Option<String>,
    /// Serve the peer port over TLS with `tls.cert` / `tls.key`; peers are verified
    /// against `tls.ca_cert` and reached at `https://` URIs.
    pub enable_tls: bool,
}

impl Default for P2pSettings {
    fn default() -> Self {
        P2pSettings {
            port: 6335,
            api_key: None,
            enable_tls: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ConsensusSettings {
    pub tick_period_ms: u64,
    /// Raft messages queued per peer before new ones are dropped (Raft retransmits).
    pub max_message_queue_size: usize,
    /// How long a joining peer keeps trying to reach its `--bootstrap` peer.
    pub bootstrap_timeout_sec: u64,
    /// Compact the Raft log once more than this many applied entries are stored; a peer that
    /// is further behind catches up from a Raft snapshot of the cluster state.
    pub compact_wal_entries: u64,
}

impl Default for ConsensusSettings {
    fn default() -> Self {
        ConsensusSettings {
            tick_period_ms: 100,
            max_message_queue_size: 100,
            bootstrap_timeout_sec: 30,
            compact_wal_entries: 1000,
        }
    }
}

/// Certificate and key of the public ports when `service.enable_tls` is on (PEM files).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsSettings {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// CA certificate (PEM) that peers' certificates (server and, with
    /// `service.verify_https_client_certificate`, client) must be signed by.
    pub ca_cert: Option<PathBuf>,
}

/// A port that may be switched off with `null`. A YAML `null` arrives as a nil value,
/// but an environment variable is always text, so the text `null` (any case) is read
/// as `None` here too: `QDRANT__SERVICE__GRPC_PORT=null` disables the port as the file's
/// `grpc_port: null` does. Numbers (or number text) must fit a port; anything else is
/// an error that names the key.
fn port_or_null<'de, D>(deserializer: D) -> Result<Option<u16>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct PortOrNull;

    impl<'de> serde::de::Visitor<'de> for PortOrNull {
        type Value = Option<u16>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a port number (0-65535) or null")
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }

        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Self::Value, E> {
            u16::try_from(n)
                .map(Some)
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(n), &self))
        }

        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Self::Value, E> {
            u16::try_from(n)
                .map(Some)
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(n), &self))
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            let text = text.trim();
            if text.eq_ignore_ascii_case("null") {
                return Ok(None);
            }
            text.parse::<u16>()
                .map(Some)
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Str(text), &self))
        }
    }

    deserializer.deserialize_any(PortOrNull)
}

/// `RUN_MODE` names a file beside `config/config`: no separators, no leading dot.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The tree without its `null` leaves (so that their keys take the default), except the
/// nulls that mean something ([`keys::MEANINGFUL_NULLS`]); `None` when `value` itself goes.
fn without_nulls(value: config::Value, path: &str) -> Option<config::Value> {
    match value.kind {
        config::ValueKind::Nil if keys::MEANINGFUL_NULLS.contains(&path) => Some(value),
        config::ValueKind::Nil => None,
        config::ValueKind::Table(table) => {
            let kept: config::Map<String, config::Value> = table
                .into_iter()
                .filter_map(|(name, child)| {
                    let child_path = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}.{name}")
                    };
                    without_nulls(child, &child_path).map(|child| (name, child))
                })
                .collect();
            Some(config::Value::new(None, config::ValueKind::Table(kept)))
        }
        _ => Some(value),
    }
}

/// Why settings could not be loaded; the message names the file or key at fault.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads the layers in order; `config_path` is the `--config-path` flag. The files
    /// are looked up relative to the working directory, as Qdrant does.
    pub fn load(config_path: Option<&Path>) -> Result<Settings, SettingsError> {
        Self::load_from(Path::new("config"), config_path, std::env::vars())
    }

    /// The layers, lowest first: `<config_dir>/config`, `<config_dir>/{RUN_MODE}` (default
    /// `development`), `<config_dir>/local` (each optional, any format the `config` crate
    /// reads, usually `.yaml`), the file `config_path` (must exist), then the `QDRANT__`
    /// variables of `env`. Values are taken verbatim (an API key of digits stays text);
    /// a `null` means the key's default.
    fn load_from(
        config_dir: &Path,
        config_path: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Settings, SettingsError> {
        let env: Vec<(String, String)> = env.collect();
        let run_mode = env
            .iter()
            .find(|(key, _)| key == "RUN_MODE")
            .map(|(_, value)| value.clone())
            .unwrap_or_else(|| "development".to_string());
        if !is_plain_name(&run_mode) {
            return Err(SettingsError::Invalid(format!(
                "RUN_MODE {run_mode:?} must be a plain file name (letters, digits, '-', '_', '.')"
            )));
        }
        let mut builder = config::Config::builder();
        for layer in ["config", run_mode.as_str(), "local"] {
            builder =
                builder.add_source(config::File::from(config_dir.join(layer)).required(false));
        }
        if let Some(path) = config_path {
            if !path.exists() {
                return Err(SettingsError::MissingFile(path.to_path_buf()));
            }
            builder = builder.add_source(config::File::from(path));
        }
        let variables: config::Map<String, String> = env
            .into_iter()
            .filter(|(key, _)| key.starts_with("QDRANT__"))
            .collect();
        let environment = config::Environment::with_prefix("QDRANT")
            .prefix_separator("__")
            .separator("__")
            // No `try_parsing`: it would turn `00123` into the number 123 before a string
            // key (an API key) sees it. Typed keys parse the text themselves.
            .source(Some(variables));
        let tree: config::Value = builder
            .add_source(environment)
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| SettingsError::Invalid(e.to_string()))?;
        let tree = without_nulls(tree, "").unwrap_or_else(|| {
            config::Value::new(None, config::ValueKind::Table(config::Map::new()))
        });

        let mut unread = Vec::new();
        let mut track = serde_path_to_error::Track::new();
        let tracked = serde_path_to_error::Deserializer::new(tree, &mut track);
        let loaded: Result<Settings, _> =
            serde_ignored::deserialize(tracked, |path| unread.push(path.to_string()));
        let mut settings =
            loaded.map_err(|e| SettingsError::Invalid(format!("{}: {e}", track.path())))?;
        let shoal_keys = serde_json::to_value(Settings::default())
            .map(|tree| keys::leaf_keys(&tree))
            .unwrap_or_default();
        settings.load_warnings = unread
            .iter()
            .map(|key| keys::UnreadKey::classify(key, &shoal_keys).warning())
            .collect();
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |key: &str, why: &str| Err(SettingsError::Invalid(format!("{key}: {why}")));
        if self.storage.storage_path.as_os_str().is_empty() {
            return invalid("storage.storage_path", "must not be empty");
        }
        if self.storage.snapshots_path.as_os_str().is_empty() {
            return invalid("storage.snapshots_path", "must not be empty");
        }
        if self.storage.hnsw_index.ef_construct == 0 {
            return invalid("storage.hnsw_index.ef_construct", "must be 1 or more");
        }
        if self.cluster.consensus.tick_period_ms == 0 {
            return invalid("cluster.consensus.tick_period_ms", "must be 1 or more");
        }
        if self.cluster.consensus.compact_wal_entries == 0 {
            return invalid("cluster.consensus.compact_wal_entries", "must be 1 or more");
        }
        if self.cluster.consensus.max_message_queue_size == 0 {
            return invalid(
                "cluster.consensus.max_message_queue_size",
                "must be 1 or more",
            );
        }
        if self.cluster.grpc_timeout_ms == 0 || self.cluster.connection_timeout_ms == 0 {
            return invalid(
                "cluster.grpc_timeout_ms / cluster.connection_timeout_ms",
                "must be 1 or more",
            );
        }
        if self.service.enable_tls && (self.tls.cert.is_none() || self.tls.key.is_none()) {
            return invalid(
                "service.enable_tls",
                "needs tls.cert and tls.key (PEM files)",
            );
        }
        for (key, value) in [
            ("service.api_key", &self.service.api_key),
            ("service.read_only_api_key", &self.service.read_only_api_key),
        ] {
            if value.as_deref() == Some("") {
                return invalid(key, "must not be empty (leave it out to disable keys)");
            }
        }
        if self.service.max_request_size_mb == 0 {
            return invalid("service.max_request_size_mb", "must be 1 or more");
        }
        for (key, value) in [
            ("service.max_query_limit", self.service.max_query_limit),
            (
                "service.search_max_batchsize",
                self.service.search_max_batchsize,
            ),
            ("service.max_batch_results", self.service.max_batch_results),
        ] {
            if value == 0 {
                return invalid(key, "must be 1 or more");
            }
        }
        self.validate_peer_security()
    }

    /// `cluster.p2p.api_key`, `cluster.p2p.enable_tls` and what they need.
    fn validate_peer_security(&self) -> Result<(), SettingsError> {
        let invalid = |key: &str, why: &str| Err(SettingsError::Invalid(format!("{key}: {why}")));
        if let Some(key) = &self.cluster.p2p.api_key {
            if key.is_empty() {
                return invalid(
                    "cluster.p2p.api_key",
                    "must not be empty (leave it out to disable peer authentication)",
                );
            }
            // It travels as gRPC metadata: visible ASCII only.
            if !key.bytes().all(|b| b.is_ascii_graphic()) {
                return invalid(
                    "cluster.p2p.api_key",
                    "must be visible ASCII characters only (no spaces or control characters)",
                );
            }
        }
        let p2p_tls = self.cluster.p2p.enable_tls;
        if p2p_tls && (self.tls.cert.is_none() || self.tls.key.is_none()) {
            return invalid(
                "cluster.p2p.enable_tls",
                "needs tls.cert and tls.key (PEM files)",
            );
        }
        if p2p_tls && self.tls.ca_cert.is_none() {
            return invalid(
                "cluster.p2p.enable_tls",
                "needs tls.ca_cert (the PEM CA that signed the peers' certificates)",
            );
        }
        if self.service.verify_https_client_certificate && self.tls.ca_cert.is_none() {
            return invalid(
                "service.verify_https_client_certificate",
                "needs tls.ca_cert (the PEM CA that signs client certificates)",
            );
        }
        Ok(())
    }

    /// Defaults for collections created without explicit settings.
    pub fn collection_defaults(&self) -> CollectionDefaults {
        let s = &self.storage;
        CollectionDefaults {
            shard_number: 1,
            replication_factor: s.collection.replication_factor,
            write_consistency_factor: s.collection.write_consistency_factor,
            on_disk_payload: s.on_disk_payload,
            hnsw: HnswConfig {
                m: s.hnsw_index.m,
                ef_construct: s.hnsw_index.ef_construct,
                full_scan_threshold: s.hnsw_index.full_scan_threshold_kb,
                max_indexing_threads: s.hnsw_index.max_indexing_threads,
                on_disk: s.hnsw_index.on_disk,
            },
            optimizers: OptimizersConfig {
                deleted_threshold: s.optimizers.deleted_threshold,
                vacuum_min_vector_number: s.optimizers.vacuum_min_vector_number,
                default_segment_number: s.optimizers.default_segment_number,
                max_segment_size: s.optimizers.max_segment_size_kb,
                memmap_threshold: s.optimizers.memmap_threshold_kb,
                indexing_threshold: Some(s.optimizers.indexing_threshold_kb),
                flush_interval_sec: s.optimizers.flush_interval_sec,
                max_optimization_threads: s.optimizers.max_optimization_threads,
            },
            wal: WalConfig {
                wal_capacity_mb: s.wal.wal_capacity_mb,
                wal_segments_ahead: s.wal.wal_segments_ahead,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn defaults_match_qdrant() {
        let s = Settings::load_from(Path::new("/nonexistent"), None, env(&[])).unwrap();
        assert_eq!(s.service.http_port, 6333);
        assert_eq!(s.service.grpc_port, Some(6334));
        assert_eq!(s.cluster.p2p.port, 6335);
        assert_eq!(s.storage.storage_path, PathBuf::from("./storage"));
        assert_eq!(s.storage.snapshots_path, PathBuf::from("./snapshots"));
        assert_eq!(s.storage.temp_dir(), PathBuf::from("./storage/tmp"));
        assert!(!s.cluster.enabled);
    }

    #[test]
    fn the_shipped_config_file_states_the_defaults() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let s = Settings::load_from(&base, None, env(&[])).unwrap();
        let d = Settings::default();
        assert_eq!(s.cluster.enabled, d.cluster.enabled);
        assert_eq!(s.cluster.grpc_timeout_ms, d.cluster.grpc_timeout_ms);
        assert_eq!(
            s.cluster.connection_timeout_ms,
            d.cluster.connection_timeout_ms
        );
        assert_eq!(s.cluster.p2p.port, d.cluster.p2p.port);
        let (c, dc) = (&s.cluster.consensus, &d.cluster.consensus);
        assert_eq!(c.tick_period_ms, dc.tick_period_ms);
        assert_eq!(c.max_message_queue_size, dc.max_message_queue_size);
        assert_eq!(c.bootstrap_timeout_sec, dc.bootstrap_timeout_sec);
        assert_eq!(c.compact_wal_entries, dc.compact_wal_entries);
    }

    #[test]
    fn file_then_env_override() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("extra.yaml");
        std::fs::write(
            &file,
            "service:\n  http_port: 7000\nstorage:\n  snapshots_path: /from/file\n",
        )
        .unwrap();
        let s = Settings::load_from(
            Path::new("/nonexistent"),
            Some(&file),
            env(&[
                ("QDRANT__SERVICE__HTTP_PORT", "7100"),
                ("QDRANT__STORAGE__TEMP_PATH", "/t"),
            ]),
        )
        .unwrap();
        assert_eq!(s.service.http_port, 7100);
        assert_eq!(s.storage.snapshots_path, PathBuf::from("/from/file"));
        assert_eq!(s.storage.temp_dir(), PathBuf::from("/t/tmp"));
    }

    #[test]
    fn api_keys_and_tls_come_from_the_environment() {
        let s = Settings::load_from(
            Path::new("/nonexistent"),
            None,
            env(&[
                ("QDRANT__SERVICE__API_KEY", "secret-full"),
                ("QDRANT__SERVICE__READ_ONLY_API_KEY", "secret-read"),
                ("QDRANT__SERVICE__ENABLE_TLS", "true"),
                ("QDRANT__TLS__CERT", "/c.pem"),
                ("QDRANT__TLS__KEY", "/k.pem"),
            ]),
        )
        .unwrap();
        assert_eq!(s.service.api_key.as_deref(), Some("secret-full"));
        assert_eq!(s.service.read_only_api_key.as_deref(), Some("secret-read"));
        assert!(s.service.enable_tls);
        assert_eq!(s.tls.key, Some(PathBuf::from("/k.pem")));
        let err = Settings::load_from(
            Path::new("/nonexistent"),
            None,
            env(&[("QDRANT__SERVICE__ENABLE_TLS", "true")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("tls.cert"), "{err}");
    }

    // --- peer authentication and TLS, and keys taken verbatim (issue 10 item 8) ---

    #[test]
    fn keys_from_the_environment_are_taken_verbatim() {
        // Text that looks like a number or a boolean must stay the exact text: a key
        // `00123` read as the number 123 would silently become the key `123`.
        for key in [
            "00123",
            "1e3",
            "-0",
            "+7",
            "1.50",
            "true",
            "0x1F",
            "123456789012345678901234567890",
            "12345",
        ] {
            let s = Settings::load_from(
                Path::new("/nonexistent"),
                None,
                env(&[
                    ("QDRANT__SERVICE__API_KEY", key),
                    ("QDRANT__SERVICE__READ_ONLY_API_KEY", key),
                    ("QDRANT__CLUSTER__P2P__API_KEY", key),
                ]),
            )
            .unwrap_or_else(|e| panic!("{key}: {e}"));
            assert_eq!(s.service.api_key.as_deref(), Some(key));
            assert_eq!(s.service.read_only_api_key.as_deref(), Some(key));
            assert_eq!(s.cluster.p2p.api_key.as_deref(), Some(key));
        }
        // Numbers and booleans in the environment still reach their typed keys.
        let s = Settings::load_from(
            Path::new("/nonexistent"),
            None,
            env(&[
                ("QDRANT__CLUSTER__ENABLED", "true"),
                ("QDRANT__CLUSTER__P2P__PORT", "7335"),
                ("QDRANT__STORAGE__OPTIMIZERS__DELETED_THRESHOLD", "0.5"),
                ("QDRANT__STORAGE__OPTIMIZERS__MAX_SEGMENT_SIZE_KB", "2048"),
                ("QDRANT__SERVICE__ENABLE_CORS", "false"),
            ]),
        )
        .unwrap();
        assert!(s.cluster.enabled);
        assert_eq!(s.cluster.p2p.port, 7335);
        assert_eq!(s.storage.optimizers.deleted_threshold, 0.5);
        assert_eq!(s.storage.optimizers.max_segment_size_kb, Some(2048));
        assert!(!s.service.enable_cors);
    }

    #[test]
    fn peer_security_keys_are_read_and_checked() {
        let nowhere = Path::new("/nonexistent");
        let s = Settings::load_from(
            nowhere,
            None,
            env(&[
                ("QDRANT__CLUSTER__P2P__API_KEY", "peer-secret"),
                ("QDRANT__CLUSTER__P2P__ENABLE_TLS", "true"),
                ("QDRANT__SERVICE__VERIFY_HTTPS_CLIENT_CERTIFICATE", "true"),
                ("QDRANT__TLS__CERT", "/c.pem"),
                ("QDRANT__TLS__KEY", "/k.pem"),
                ("QDRANT__TLS__CA_CERT", "/ca.pem"),
            ]),
        )
        .unwrap();
        assert_eq!(s.cluster.p2p.api_key.as_deref(), Some("peer-secret"));
        assert!(s.cluster.p2p.enable_tls);
        assert!(s.service.verify_https_client_certificate);
        assert_eq!(s.tls.ca_cert, Some(PathBuf::from("/ca.pem")));
        let d = Settings::default();
        assert_eq!(d.cluster.p2p.api_key, None);
        assert!(!d.cluster.p2p.enable_tls);
        assert!(!d.service.verify_https_client_certificate);
        assert_eq!(d.tls.ca_cert, None);
        // The shipped config file states the same defaults.
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/config");
        let shipped = Settings::load_from(&base, None, env(&[])).unwrap();
        assert_eq!(shipped.cluster.p2p.api_key, None);
        assert!(!shipped.cluster.p2p.enable_tls);
        assert!(!shipped.service.verify_https_client_certificate);
        assert_eq!(shipped.tls.ca_cert, None);

        let refused = |pairs: &[(&str, &str)], needle: &str| {
            let err = Settings::load_from(nowhere, None, env(pairs)).unwrap_err();
            assert!(err.to_string().contains(needle), "{pairs:?}: {err}");
        };
        refused(
            &[("QDRANT__CLUSTER__P2P__API_KEY", "")],
            "cluster.p2p.api_key",
        );
        refused(
            &[("QDRANT__CLUSTER__P2P__API_KEY", "has space")],
            "cluster.p2p.api_key",
        );
        refused(
            &[("QDRANT__CLUSTER__P2P__API_KEY", "caf\u{e9}")],
            "cluster.p2p.api_key",
        );
        refused(&[("QDRANT__CLUSTER__P2P__ENABLE_TLS", "true")], "tls.cert");
        refused(
            &[
                ("QDRANT__CLUSTER__P2P__ENABLE_TLS", "true"),
                ("QDRANT__TLS__CERT", "/c.pem"),
                ("QDRANT__TLS__KEY", "/k.pem"),
            ],
            "tls.ca_cert",
        );
        refused(
            &[("QDRANT__SERVICE__VERIFY_HTTPS_CLIENT_CERTIFICATE", "true")],
            "tls.ca_cert",
        );
    }

    #[test]
    fn grpc_port_null_disables_the_port_from_the_file_and_from_the_environment() {
        let nowhere = Path::new("/nonexistent");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("no-grpc.yaml");
        std::fs::write(&file, "service:\n  grpc_port: null\n").unwrap();
        let s = Settings::load_from(nowhere, Some(&file), env(&[])).unwrap();
        assert_eq!(s.service.grpc_port, None);

        for text in ["null", "NULL", " Null "] {
            let s =
                Settings::load_from(nowhere, None, env(&[("QDRANT__SERVICE__GRPC_PORT", text)]))
                    .unwrap();
            assert_eq!(s.service.grpc_port, None, "{text:?}");
        }
        // The environment's null wins over a port named in the file, and a number in the
        // environment over the file's null.
        let port_file = dir.path().join("port.yaml");
        std::fs::write(&port_file, "service:\n  grpc_port: 7334\n").unwrap();
        let s = Settings::load_from(
            nowhere,
            Some(&port_file),
            env(&[("QDRANT__SERVICE__GRPC_PORT", "null")]),
        )
        .unwrap();
        assert_eq!(s.service.grpc_port, None);
        assert_eq!(s.service.http_port, 6333, "other keys keep their values");
        let s = Settings::load_from(
            nowhere,
            Some(&file),
            env(&[("QDRANT__SERVICE__GRPC_PORT", "7444")]),
        )
        .unwrap();
        assert_eq!(s.service.grpc_port, Some(7444));
        let s = Settings::load_from(nowhere, Some(&port_file), env(&[])).unwrap();
        assert_eq!(s.service.grpc_port, Some(7334));
        // A quoted number in the file is a port as well.
        std::fs::write(&port_file, "service:\n  grpc_port: \"7335\"\n").unwrap();
        let s = Settings::load_from(nowhere, Some(&port_file), env(&[])).unwrap();
        assert_eq!(s.service.grpc_port, Some(7335));
    }

    #[test]
    fn a_grpc_port_that_is_neither_a_port_nor_null_names_the_key() {
        for text in ["nil", "none", "", "65536", "-1", "6334.5"] {
            let err = Settings::load_from(
                Path::new("/nonexistent"),
                None,
                env(&[("QDRANT__SERVICE__GRPC_PORT", text)]),
            )
            .unwrap_err();
            assert!(err.to_string().contains("grpc_port"), "{text:?}: {err}");
        }
    }

    #[test]
    fn bad_value_names_the_key() {
        let err = Settings::load_from(
            Path::new("/nonexistent"),
            None,
            env(&[("QDRANT__SERVICE__HTTP_PORT", "not-a-port")]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("http_port"), "{err}");
    }

    /// A config directory holding `files` (name, text).
    fn config_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn null_means_the_default_except_for_the_grpc_port() {
        let dir = config_dir(&[(
            "config.yaml",
            "storage:\n  shard_transfer_method: null\n  temp_path: null\n  wal:\n    wal_capacity_mb: null\nservice:\n  grpc_port: null\n  http_port: null\n",
        )]);
        let s = Settings::load_from(dir.path(), None, env(&[])).unwrap();
        let d = Settings::default();
        assert_eq!(
            s.storage.shard_transfer_method,
            d.storage.shard_transfer_method
        );
        assert_eq!(s.storage.wal.wal_capacity_mb, d.storage.wal.wal_capacity_mb);
        assert_eq!(s.service.http_port, 6333);
        assert_eq!(s.service.grpc_port, None);
        assert!(s.load_warnings.is_empty(), "{:?}", s.load_warnings);
    }

    #[test]
    fn run_mode_picks_its_file_and_local_wins_over_both() {
        let dir = config_dir(&[
            (
                "config.yaml",
                "service:\n  http_port: 7000\n  max_request_size_mb: 3\n",
            ),
            ("production.yaml", "service:\n  http_port: 7001\n"),
        ]);
        let s = Settings::load_from(dir.path(), None, env(&[])).unwrap();
        assert_eq!(s.service.http_port, 7000, "development has no file here");
        let s = Settings::load_from(dir.path(), None, env(&[("RUN_MODE", "production")])).unwrap();
        assert_eq!(s.service.http_port, 7001);
        assert_eq!(
            s.service.max_request_size_mb, 3,
            "config.yaml still applies"
        );
        std::fs::write(
            dir.path().join("local.yaml"),
            "service:\n  http_port: 7002\n",
        )
        .unwrap();
        let s = Settings::load_from(dir.path(), None, env(&[("RUN_MODE", "production")])).unwrap();
        assert_eq!(s.service.http_port, 7002);
        for bad in ["../etc/x", "a/b", "", ".hidden", "x y"] {
            let err = Settings::load_from(dir.path(), None, env(&[("RUN_MODE", bad)])).unwrap_err();
            assert!(err.to_string().contains("RUN_MODE"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn environment_values_are_taken_verbatim() {
        let s = Settings::load_from(
            Path::new("/nonexistent"),
            None,
            env(&[
                ("QDRANT__SERVICE__API_KEY", "00123"),
                ("QDRANT__SERVICE__READ_ONLY_API_KEY", "1e5"),
                ("QDRANT__STORAGE__OPTIMIZERS__DELETED_THRESHOLD", "0.5"),
                ("QDRANT__CLUSTER__ENABLED", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(s.service.api_key.as_deref(), Some("00123"));
        assert_eq!(s.service.read_only_api_key.as_deref(), Some("1e5"));
        assert_eq!(s.storage.optimizers.deleted_threshold, 0.5);
        assert!(s.cluster.enabled);
    }

    #[test]
    fn unread_keys_are_warned_about_with_the_nearest_valid_key() {
        let dir = config_dir(&[(
            "config.yaml",
            "telemetry_disabled: true\nservice:\n  htp_port: 1\nstorage:\n  performance:\n    max_search_threads: 2\n",
        )]);
        let s = Settings::load_from(dir.path(), None, env(&[])).unwrap();
        let warnings = s.load_warnings.join("\n");
        assert!(
            warnings.contains("`service.htp_port` ignored; did you mean `service.http_port`?"),
            "{warnings}"
        );
        assert!(
            warnings.contains("`telemetry_disabled` is a Qdrant setting"),
            "{warnings}"
        );
        assert!(
            warnings.contains("`storage.performance` is a Qdrant setting"),
            "{warnings}"
        );
        assert_eq!(s.load_warnings.len(), 3, "{warnings}");
    }

    #[test]
    fn qdrant_stock_files_load_in_every_run_mode() {
        let stock = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qdrant-1.19-config");
        let dir = tempfile::tempdir().unwrap();
        for name in ["config.yaml", "development.yaml", "production.yaml"] {
            std::fs::copy(stock.join(name), dir.path().join(name)).unwrap();
        }
        for mode in ["development", "production"] {
            let s = Settings::load_from(dir.path(), None, env(&[("RUN_MODE", mode)]))
                .unwrap_or_else(|e| panic!("{mode}: {e}"));
            assert_eq!(s.service.http_port, 6333);
            assert_eq!(s.cluster.consensus.compact_wal_entries, 128);
            let warnings = s.load_warnings.join("\n");
            assert!(warnings.contains("`storage.performance`"), "{warnings}");
            assert!(warnings.contains("`debug`"), "{mode}: {warnings}");
        }
        let s = Settings::load_from(dir.path(), None, env(&[])).unwrap();
        assert_eq!(
            s.service.host, "127.0.0.1",
            "development.yaml applies by default"
        );
        assert_eq!(s.storage.optimizers.flush_interval_sec, 1);
    }

    #[test]
    fn missing_config_path_is_an_error() {
        let err = Settings::load_from(
            Path::new("/nonexistent"),
            Some(Path::new("/nope.yaml")),
            env(&[]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nope.yaml"));
    }

    // --- replica consistency check (issue 10 item 9) ---
    #[test]
    fn consistency_check_interval_defaults_to_300_and_takes_the_env() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/config");
        let shipped = Settings::load_from(&base, None, env(&[])).unwrap();
        assert_eq!(shipped.cluster.consistency_check_interval_sec, 300);
        assert_eq!(
            Settings::default().cluster.consistency_check_interval_sec,
            300
        );
        let key = "QDRANT__CLUSTER__CONSISTENCY_CHECK_INTERVAL_SEC";
        let set = Settings::load_from(&base, None, env(&[(key, "0")])).unwrap();
        assert_eq!(set.cluster.consistency_check_interval_sec, 0);
    }
}
