//! The collections open on this peer, by real name. Directories live under
//! `<storage_path>/collections/<name>/<shard id>/`. The registry only opens and drops;
//! what should exist is decided by the cluster state (see `node::applier`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use super::config::CollectionConfig;
use super::Collection;
use crate::error::{Error, Result};
use crate::types::ShardId;

pub struct CollectionRegistry {
    root: PathBuf,
    open: RwLock<HashMap<String, Arc<Collection>>>,
}

impl CollectionRegistry {
    pub fn new(storage_path: &Path) -> Result<CollectionRegistry> {
        let root = storage_path.join("collections");
        std::fs::create_dir_all(&root)
            .map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
        Ok(CollectionRegistry {
            root,
            open: RwLock::new(HashMap::new()),
        })
    }

    pub fn dir_of(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    pub fn get(&self, name: &str) -> Option<Arc<Collection>> {
        self.open.read().get(name).cloned()
    }

    pub fn all(&self) -> Vec<Arc<Collection>> {
        self.open.read().values().cloned().collect()
    }

    /// Opens a collection's local shards unless it is open already (idempotent).
    pub fn open(
        &self,
        name: &str,
        config: CollectionConfig,
        local_shards: &[ShardId],
    ) -> Result<Arc<Collection>> {
        if let Some(existing) = self.get(name) {
            return Ok(existing);
        }
        let collection = Arc::new(Collection::open(
            &self.dir_of(name),
            name,
            config,
            local_shards,
        )?);
        self.open
            .write()
            .insert(name.to_string(), collection.clone());
        Ok(collection)
    }

    /// Closes a collection and deletes its files. The directory is first renamed
    /// aside so a crash half-way never leaves a partly deleted collection in place.
    pub fn drop_collection(&self, name: &str) -> Result<()> {
        let removed = self.open.write().remove(name);
        drop(removed);
        let dir = self.dir_of(name);
        if dir.exists() {
            let trash = self
                .root
                .join(format!(".deleted-{name}-{}", uuid::Uuid::new_v4()));
            std::fs::rename(&dir, &trash)
                .map_err(|e| Error::io(format!("moving {} aside", dir.display()), e))?;
            std::fs::remove_dir_all(&trash)
                .map_err(|e| Error::io(format!("removing {}", trash.display()), e))?;
        }
        Ok(())
    }

    /// Finishes interrupted deletions (`.deleted-*` directories). Directories of
    /// collections the cluster state does not know are kept and reported, never
    /// deleted: losing data silently is worse than a warning.
    pub fn clean_leftovers(&self, known: &BTreeMap<String, Vec<ShardId>>) -> Result<()> {
        let entries = std::fs::read_dir(&self.root)
            .map_err(|e| Error::io(format!("listing {}", self.root.display()), e))?;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            let path = entry.path();
            if name.starts_with(".deleted-") {
                std::fs::remove_dir_all(&path)
                    .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
            } else if !known.contains_key(&name) {
                tracing::warn!(collection = %name, path = %path.display(), "directory of a collection the cluster does not know; left in place");
            }
        }
        Ok(())
    }
}
