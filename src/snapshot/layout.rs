//! What goes into a collection (or shard) snapshot and how an unpacked one is read back.
//!
//! Collection snapshot, as Qdrant lays it out (readers must not depend on order):
//! ```text
//! <shard_id>/replica_state.json   {"is_local": true, "this_peer_id": .., "peers": {"<peer>": "Active"}}
//! <shard_id>/shard_config.json    {"type": "ReplicaSet"}
//! <shard_id>/manifest.json        shoal's shard data: manifest, segments/, wal/
//! <shard_id>/segments/..
//! <shard_id>/wal/..
//! version.info                    the Qdrant API version shoal implements
//! config.json                     the collection config (Qdrant's shape)
//! shard_key_mapping.json          []
//! payload_index.json              {"schema": {}}
//! shoal.json                      {"format": 1, "kind": "collection", "shoal_version": ..}
//! shoal-manifest.json             size and sha256 of every file above (see archive.rs)
//! ```
//! Archives shoal writes start with `shoal-index.json` (names and sizes of the files
//! above, see index.rs).
//! A shard snapshot holds one `<shard_id>/` directory's content at the archive root,
//! plus `shoal.json` with kind `shard`. A shard "has data" when its `manifest.json`
//! exists: only then is it restored.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::archive::ArchiveWriter;
use crate::collection::config::CollectionConfig;
use crate::collection::shard_config;
use crate::consensus::state::ReplicaState;
use crate::error::{Error, Result};
use crate::shard::verify::verify_shard_dir;
use crate::shard::FrozenShard;
use crate::types::{PeerId, ShardId};

/// Version of shoal's snapshot layout; bumped on incompatible changes.
pub const FORMAT: u32 = 1;
const INFO: &str = "shoal.json";
const SHARD_DATA_MARKER: &str = "manifest.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotKind {
    Collection,
    Shard,
}

#[derive(Debug, Serialize, Deserialize)]
struct Info {
    format: u32,
    kind: SnapshotKind,
    shoal_version: String,
}

/// `replica_state.json` of one shard, as Qdrant writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaStateFile {
    pub is_local: bool,
    pub this_peer_id: PeerId,
    pub peers: BTreeMap<String, ReplicaState>,
}

/// Writes a shard's frozen files and Qdrant's per-shard metadata under `prefix`
/// (`"<shard_id>/"` in a collection snapshot, `""` in a shard snapshot).
pub fn write_shard<W: Write>(
    archive: &mut ArchiveWriter<W>,
    prefix: &str,
    frozen: &FrozenShard,
    peer: PeerId,
) -> Result<()> {
    let replica_state = ReplicaStateFile {
        is_local: true,
        this_peer_id: peer,
        peers: BTreeMap::from([(peer.to_string(), ReplicaState::Active)]),
    };
    archive.add_bytes(
        &format!("{prefix}replica_state.json"),
        &to_json(&replica_state)?,
    )?;
    archive.add_bytes(
        &format!("{prefix}shard_config.json"),
        br#"{"type":"ReplicaSet"}"#,
    )?;
    for rel in frozen.files() {
        let mut file = frozen
            .open(&rel)
            .map_err(|e| Error::io(format!("opening {rel}"), e))?;
        let path = format!("{prefix}{rel}");
        match file.sha256.clone() {
            Some(known) => archive.add_known(&path, file.size, &mut file.reader, known)?,
            None => {
                if let Some(sha256) = archive.add_reader(&path, file.size, &mut file.reader)? {
                    file.remember(&sha256);
                }
            }
        }
    }
    Ok(())
}

/// Writes the collection-level files that follow the shard directories.
pub fn write_collection_meta<W: Write>(
    archive: &mut ArchiveWriter<W>,
    config: &CollectionConfig,
) -> Result<()> {
    archive.add_bytes("version.info", crate::types::QDRANT_API_VERSION.as_bytes())?;
    archive.add_bytes("config.json", &to_json(config)?)?;
    archive.add_bytes("shard_key_mapping.json", b"[]")?;
    archive.add_bytes("payload_index.json", br#"{"schema":{}}"#)?;
    write_info(archive, SnapshotKind::Collection)
}

/// Marks a shard snapshot.
pub fn write_shard_meta<W: Write>(archive: &mut ArchiveWriter<W>) -> Result<()> {
    write_info(archive, SnapshotKind::Shard)
}

fn write_info<W: Write>(archive: &mut ArchiveWriter<W>, kind: SnapshotKind) -> Result<()> {
    let info = Info {
        format: FORMAT,
        kind,
        shoal_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    archive.add_bytes(INFO, &to_json(&info)?)
}

/// A verified, unpacked collection snapshot in a directory of its own.
#[derive(Debug, Clone)]
pub struct UnpackedCollection {
    pub dir: PathBuf,
    pub config: CollectionConfig,
    /// Shards that carry data, by id: their directory inside `dir`.
    pub shards: BTreeMap<ShardId, PathBuf>,
}

/// Reads an unpacked collection snapshot. With `every_shard` (a single node, which must
/// serve every shard itself) each shard of the config needs a directory with data; in a
/// cluster a peer's snapshot holds its own shards only, and at least one is needed.
pub fn read_collection(dir: &Path, every_shard: bool) -> Result<UnpackedCollection> {
    check_info(dir, SnapshotKind::Collection)?;
    let config: CollectionConfig = read_json(&dir.join("config.json"))?;
    config
        .validate()
        .map_err(|e| Error::BadInput(format!("Invalid snapshot: config.json: {e}")))?;
    let mut shards = BTreeMap::new();
    for shard in 0..config.params.shard_number {
        let shard_dir = dir.join(shard.to_string());
        if shard_dir.join(SHARD_DATA_MARKER).is_file() {
            verify_shard_dir(&shard_dir, &shard_config(&config))
                .map_err(|e| in_snapshot(&format!("shard {shard}"), e))?;
            shards.insert(shard, shard_dir);
        } else if every_shard {
            return Err(Error::BadInput(format!(
                "Invalid snapshot: shard {shard} has no data; a snapshot recovered on one node must hold every shard"
            )));
        }
    }
    if shards.is_empty() {
        return Err(Error::BadInput(
            "Invalid snapshot: it holds no shard data".into(),
        ));
    }
    Ok(UnpackedCollection {
        dir: dir.to_path_buf(),
        config,
        shards,
    })
}

/// Checks an unpacked shard snapshot (data at the root of `dir`), and its data against
/// `config`, the config of the collection it is recovered into.
pub fn read_shard(dir: &Path, config: &CollectionConfig) -> Result<()> {
    check_info(dir, SnapshotKind::Shard)?;
    if !dir.join(SHARD_DATA_MARKER).is_file() {
        return Err(Error::BadRequest(
            "Invalid snapshot: the shard snapshot holds no data".into(),
        ));
    }
    verify_shard_dir(dir, &shard_config(config)).map_err(|e| in_snapshot("shard", e))?;
    Ok(())
}

/// Shard data that fails verification makes the snapshot invalid (400); other errors
/// (a full disk, I/O) keep their class.
fn in_snapshot(what: &str, err: Error) -> Error {
    match err {
        Error::BadInput(why) | Error::BadRequest(why) => {
            Error::BadInput(format!("Invalid snapshot: {what}: {why}"))
        }
        other => other,
    }
}

/// Removes the snapshot's own metadata files from a shard directory so that it holds
/// shard data only.
pub fn strip_shard_metadata(shard_dir: &Path) -> Result<()> {
    for name in [
        "replica_state.json",
        "shard_config.json",
        "newest_clocks.json",
        "oldest_clocks.json",
        INFO,
    ] {
        let path = shard_dir.join(name);
        if path.exists() {
            std::fs::remove_file(&path)
                .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
        }
    }
    Ok(())
}

fn check_info(dir: &Path, expected: SnapshotKind) -> Result<()> {
    let path = dir.join(INFO);
    if !path.is_file() {
        return Err(Error::BadInput(format!(
            "Invalid snapshot: no {INFO}; this is not a shoal snapshot (Qdrant's segment format cannot be read by shoal)"
        )));
    }
    let info: Info = read_json(&path)?;
    if info.format != FORMAT {
        return Err(Error::BadInput(format!(
            "Invalid snapshot: layout format {} (written by shoal {}) is not supported; this shoal reads format {FORMAT}",
            info.format, info.shoal_version
        )));
    }
    if info.kind != expected {
        return Err(Error::BadInput(format!(
            "Invalid snapshot: this is a {:?} snapshot, expected a {expected:?} snapshot",
            info.kind
        )));
    }
    Ok(())
}

/// A JSON file of the unpacked snapshot, read with the archive's size cap.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    super::bounded::read_json_file(path, &name)
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(Error::service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_json_files_are_read_and_large_ones_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        assert!(read_json::<serde_json::Value>(&path).is_err());
        std::fs::write(&path, b"{}").unwrap();
        assert_eq!(
            read_json::<serde_json::Value>(&path).unwrap(),
            serde_json::json!({})
        );
        std::fs::File::create(&path)
            .unwrap()
            .set_len(super::super::bounded::MAX_JSON + 1)
            .unwrap();
        let err = read_json::<serde_json::Value>(&path).unwrap_err();
        assert!(matches!(err, Error::BadInput(_)), "{err}");
        assert!(
            !err.to_string().contains(&dir.path().display().to_string()),
            "{err}"
        );
    }
}
