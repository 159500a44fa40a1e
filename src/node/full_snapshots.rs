//! Full-storage snapshots: one archive holding a snapshot of every collection plus the
//! aliases, and their recovery at start-up (`--storage-snapshot`).
//!
//! Layout (Qdrant's): the nested collection snapshots `<collection>-<peer>-<ts>.snapshot`
//! and `config.json` = `{"collections_mapping": {collection: entry}, "collections_aliases":
//! {alias: collection}}`, plus shoal's manifest. The nested archives are built in the
//! temp directory first (a tar entry needs its size up front) and removed afterwards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::Utc;
use serde::{Deserialize, Serialize};

use super::snapshots::{unpack_stream, write_collection_snapshot};
use super::tasks::TaskHandle;
use super::{blocking, Node};
use crate::consensus::op::{AliasAction, ClusterOp};
use crate::error::{Error, Result};
use crate::snapshot::archive;
use crate::snapshot::naming;
use crate::snapshot::store::SnapshotDescription;

#[derive(Debug, Default, Serialize, Deserialize)]
struct FullConfig {
    collections_mapping: BTreeMap<String, String>,
    #[serde(default)]
    collections_aliases: BTreeMap<String, String>,
}

impl Node {
    pub async fn create_full_snapshot(&self, task: &TaskHandle) -> Result<SnapshotDescription> {
        let collections = self.collections.all();
        let aliases = self.consensus.state().aliases;
        let (store, peer, bytes) = (
            self.snapshot_store(),
            self.consensus.peer_id(),
            task.bytes(),
        );
        let work_dir = self
            .settings
            .storage
            .temp_dir()
            .join(format!("full-{}", uuid::Uuid::new_v4().simple()));
        blocking(move || {
            std::fs::create_dir_all(&work_dir)
                .map_err(|e| Error::io(format!("creating {}", work_dir.display()), e))?;
            let result = (|| {
                let mut mapping = BTreeMap::new();
                let mut parts = Vec::new();
                for collection in &collections {
                    let part = write_collection_snapshot(collection, &store, &work_dir, peer)?;
                    mapping.insert(collection.name().to_string(), part.name.clone());
                    parts.push(work_dir.join(&part.name));
                }
                let config = FullConfig {
                    collections_mapping: mapping,
                    collections_aliases: aliases,
                };
                let name = naming::full_snapshot(Utc::now());
                let staged = store.staging_path(store.root(), &name)?;
                let (sha256, size) = archive::write_file(&staged, |writer| {
                    for part in &parts {
                        let entry = part
                            .file_name()
                            .map(|n| n.to_string_lossy().to_string())
                            .unwrap_or_default();
                        writer.add_file(&entry, part)?;
                    }
                    writer.add_bytes(
                        "config.json",
                        &serde_json::to_vec_pretty(&config).map_err(Error::service)?,
                    )
                })?;
                bytes.store(size, Ordering::Relaxed);
                store.publish(&staged, store.root(), &name, &sha256)
            })();
            let _ = std::fs::remove_dir_all(&work_dir);
            result
        })
        .await
    }

    pub fn list_full_snapshots(&self) -> Result<Vec<SnapshotDescription>> {
        let store = self.snapshot_store();
        store.list(store.root())
    }

    pub fn delete_full_snapshot(&self, snapshot: &str) -> Result<()> {
        let store = self.snapshot_store();
        store.delete(store.root(), snapshot)
    }

    pub fn full_snapshot_path(&self, snapshot: &str) -> Result<PathBuf> {
        let store = self.snapshot_store();
        store.existing(store.root(), snapshot)
    }

    /// `--storage-snapshot PATH`: restores every collection and alias of a full snapshot.
    /// Existing collections or aliases are replaced only with `force`; the conflicts are
    /// checked before anything changes.
    pub async fn recover_full_snapshot_from_path(
        &self,
        path: &Path,
        force: bool,
    ) -> Result<Vec<String>> {
        let work_dir = self.settings.storage.temp_dir().join(format!(
            "storage-recovery-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let result = self.recover_full_inner(path, &work_dir, force).await;
        let _ = std::fs::remove_dir_all(&work_dir);
        result
    }

    async fn recover_full_inner(
        &self,
        path: &Path,
        work_dir: &Path,
        force: bool,
    ) -> Result<Vec<String>> {
        let (path_owned, dir) = (path.to_path_buf(), work_dir.to_path_buf());
        let config: FullConfig = blocking(move || {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            let file = std::fs::File::open(&path_owned)
                .map_err(|e| Error::io(format!("opening {}", path_owned.display()), e))?;
            unpack_stream(
                std::io::BufReader::new(file),
                &dir,
                &AtomicU64::new(0),
                None,
                archive::FileCheck::Sha256,
            )?;
            let config_path = dir.join("config.json");
            if !config_path.is_file() {
                return Err(Error::BadInput(
                    "Invalid snapshot: a full snapshot needs config.json".into(),
                ));
            }
            let bytes = crate::snapshot::layout::read_small_file(&config_path)?;
            serde_json::from_slice(&bytes)
                .map_err(|e| Error::BadInput(format!("Invalid snapshot: config.json: {e}")))
        })
        .await?;
        if !force {
            if let Some(name) = config
                .collections_mapping
                .keys()
                .find(|c| self.collection_exists(c))
            {
                return Err(Error::AlreadyExists(format!(
                    "Collection {name} already exists. Use --force-snapshot to overwrite it."
                )));
            }
            let state = self.consensus.state();
            if let Some(alias) = config
                .collections_aliases
                .keys()
                .find(|a| state.aliases.contains_key(*a))
            {
                return Err(Error::AlreadyExists(format!(
                    "Alias {alias} already exists. Use --force-snapshot to overwrite it."
                )));
            }
        }
        for (collection, entry) in &config.collections_mapping {
            naming::check_file_name(entry).map_err(|_| {
                Error::BadInput(format!("Invalid snapshot: bad entry name `{entry}`"))
            })?;
            self.recover_collection_from_path(collection, &work_dir.join(entry), force)
                .await?;
        }
        self.restore_aliases(&config.collections_aliases).await?;
        Ok(config.collections_mapping.into_keys().collect())
    }

    /// Points every alias of the snapshot at its collection (replacing existing ones).
    async fn restore_aliases(&self, aliases: &BTreeMap<String, String>) -> Result<()> {
        if aliases.is_empty() {
            return Ok(());
        }
        let state = self.consensus.state();
        let mut actions = Vec::new();
        for (alias, collection) in aliases {
            if state.aliases.contains_key(alias) {
                actions.push(AliasAction::DeleteAlias {
                    alias_name: alias.clone(),
                });
            }
            actions.push(AliasAction::CreateAlias {
                collection_name: collection.clone(),
                alias_name: alias.clone(),
            });
        }
        self.propose(ClusterOp::UpdateAliases { actions }).await
    }
}
