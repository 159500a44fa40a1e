//! Where snapshot files live and how they are listed, described, stored and deleted.
//!
//! Layout under `storage.snapshots_path`:
//! `<collection>/<name>.snapshot` (collection snapshots and uploads),
//! `<collection>/shards/<shard_id>/<name>.snapshot` (shard snapshots),
//! `<name>.snapshot` at the top (full-storage snapshots); each with a
//! `<name>.snapshot.checksum` sidecar.
//!
//! Storing is atomic: an archive is written under a temporary name in the same
//! directory, its sidecar likewise, then both are linked into place without replacing
//! anything (the sidecar first; a taken name gets a number, see [`SnapshotStore::publish`]).
//! A listing therefore never shows a half-written snapshot, two creates never share a
//! file, and a listed checksum is always the listed file's.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::checksum::{read_sidecar, sidecar_path};
use super::naming::{check_file_name, EXTENSION};
use crate::error::{Error, Result};
use crate::types::ShardId;

/// A snapshot as the API lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotDescription {
    pub name: String,
    /// Naive UTC `YYYY-MM-DDTHH:MM:SS`; `null` when the file system cannot tell.
    pub creation_time: Option<String>,
    pub size: u64,
    /// Present when a `.checksum` sidecar exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
}

/// Paths of the snapshot directories.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    root: PathBuf,
}

impl SnapshotStore {
    pub fn new(root: &Path) -> SnapshotStore {
        SnapshotStore {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn collection_dir(&self, collection: &str) -> PathBuf {
        self.root.join(collection)
    }

    pub fn shard_dir(&self, collection: &str, shard: ShardId) -> PathBuf {
        self.root
            .join(collection)
            .join("shards")
            .join(shard.to_string())
    }

    /// The path of an existing snapshot named by a request, or 404.
    pub fn existing(&self, dir: &Path, name: &str) -> Result<PathBuf> {
        check_file_name(name)?;
        let path = dir.join(name);
        let not_found = || Error::NotFound(format!("Snapshot {name} not found"));
        let meta = std::fs::symlink_metadata(&path).map_err(|_| not_found())?;
        if !meta.is_file() {
            return Err(not_found());
        }
        Ok(path)
    }

    /// Every `*.snapshot` file directly in `dir`, oldest first (ties by name), so the
    /// order is stable between calls. A missing directory lists as empty.
    pub fn list(&self, dir: &Path) -> Result<Vec<SnapshotDescription>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
            let name = entry.file_name().to_string_lossy().to_string();
            let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
            if is_file && name.ends_with(EXTENSION) {
                if let Ok(description) = describe(&entry.path()) {
                    out.push(description);
                }
            }
        }
        out.sort_by(|a, b| {
            a.creation_time
                .cmp(&b.creation_time)
                .then_with(|| a.name.cmp(&b.name))
        });
        Ok(out)
    }

    /// Deletes a snapshot and its sidecar; 404 if it does not exist.
    pub fn delete(&self, dir: &Path, name: &str) -> Result<()> {
        let path = self.existing(dir, name)?;
        std::fs::remove_file(&path)
            .map_err(|e| Error::io(format!("deleting {}", path.display()), e))?;
        let _ = std::fs::remove_file(sidecar_path(&path));
        Ok(())
    }

    /// Removes what interrupted snapshot work left: hidden staging files (`.*.tmp`,
    /// `.*.upload`) and sidecars whose archive was never linked (a publish interrupted
    /// between the two links) in the snapshots directory, its collection directories and
    /// their shard directories. Published snapshots are never touched. Runs at start-up,
    /// before any publish.
    pub fn remove_leftovers(&self) -> Result<()> {
        let mut dirs = vec![(self.root.clone(), 0u8)];
        while let Some((dir, depth)) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                let path = entry.path();
                let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
                if is_dir && depth < 3 {
                    dirs.push((path, depth + 1));
                } else if !is_dir
                    && ((name.starts_with('.')
                        && (name.ends_with(".tmp") || name.ends_with(".upload")))
                        || is_orphan_sidecar(&path, &name))
                {
                    tracing::info!(file = %path.display(), "removing an unfinished snapshot file");
                    std::fs::remove_file(&path)
                        .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
                }
            }
        }
        Ok(())
    }

    /// A temporary path in `dir` for an archive that [`Self::publish`] will rename.
    pub fn staging_path(&self, dir: &Path, name: &str) -> Result<PathBuf> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        Ok(dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple())))
    }

    /// Moves a finished archive into place with its sidecar, and describes it. The name
    /// is `name`, or `name` numbered (`…-2.snapshot`, `…-3.snapshot`, …) when that is
    /// taken, so every publish yields a file of its own. The pair is published without
    /// replacing anything: first the sidecar, then the archive, each as a hard link that
    /// fails if the name exists; a name whose sidecar or archive exists is skipped. A
    /// listed archive therefore always shows its own checksum (or none while it is being
    /// published). On failure nothing is left half published.
    pub fn publish(
        &self,
        staged: &Path,
        dir: &Path,
        name: &str,
        sha256: &str,
    ) -> Result<SnapshotDescription> {
        check_file_name(name)?;
        let staged_sidecar = dir.join(format!(
            ".{name}.checksum.{}.tmp",
            uuid::Uuid::new_v4().simple()
        ));
        let result = (|| -> Result<PathBuf> {
            write_synced(&staged_sidecar, sha256.as_bytes())?;
            let target = link_free_name(staged, &staged_sidecar, dir, name)?;
            sync_dir(dir)?;
            Ok(target)
        })();
        // After success the staged names are extra links of the published files.
        let _ = std::fs::remove_file(staged);
        let _ = std::fs::remove_file(&staged_sidecar);
        describe(&result?)
    }
}

/// A `<name>.snapshot.checksum` whose `<name>.snapshot` does not exist.
fn is_orphan_sidecar(path: &Path, name: &str) -> bool {
    let archive = name
        .strip_suffix(super::naming::CHECKSUM_SUFFIX)
        .filter(|archive| archive.ends_with(EXTENSION));
    archive.is_some_and(|archive| std::fs::symlink_metadata(path.with_file_name(archive)).is_err())
}

/// Most numbered names tried for one snapshot before giving up.
const MAX_NUMBERED: u32 = 10_000;

/// Links `staged` and its sidecar to the first free numbered form of `name` in `dir`;
/// returns the archive's path.
fn link_free_name(staged: &Path, staged_sidecar: &Path, dir: &Path, name: &str) -> Result<PathBuf> {
    let exists = |e: &std::io::Error| e.kind() == std::io::ErrorKind::AlreadyExists;
    for number in 1..=MAX_NUMBERED {
        let target = dir.join(numbered(name, number));
        let sidecar = sidecar_path(&target);
        if std::fs::symlink_metadata(&target).is_ok() {
            continue;
        }
        match std::fs::hard_link(staged_sidecar, &sidecar) {
            Ok(()) => {}
            Err(e) if exists(&e) => continue,
            Err(e) => return Err(Error::io(format!("publishing {}", sidecar.display()), e)),
        }
        match std::fs::hard_link(staged, &target) {
            Ok(()) => return Ok(target),
            Err(e) => {
                // The sidecar is ours (it was created without replacing anything).
                let _ = std::fs::remove_file(&sidecar);
                if !exists(&e) {
                    return Err(Error::io(format!("publishing {}", target.display()), e));
                }
            }
        }
    }
    Err(Error::Conflict(format!(
        "no free name for snapshot {name} after {MAX_NUMBERED} tries"
    )))
}

/// `name` for the first try, then `<stem>-<number>.snapshot`.
pub fn numbered(name: &str, number: u32) -> String {
    if number <= 1 {
        return name.to_string();
    }
    match name.strip_suffix(EXTENSION) {
        Some(stem) => format!("{stem}-{number}{EXTENSION}"),
        None => format!("{name}-{number}"),
    }
}

/// Describes one snapshot file.
pub fn describe(path: &Path) -> Result<SnapshotDescription> {
    let meta =
        std::fs::metadata(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let created = meta.created().or_else(|_| meta.modified()).ok();
    Ok(SnapshotDescription {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        creation_time: created.map(|t| {
            DateTime::<Utc>::from(t)
                .format("%Y-%m-%dT%H:%M:%S")
                .to_string()
        }),
        size: meta.len(),
        checksum: read_sidecar(path),
    })
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    file.write_all(bytes)
        .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    file.sync_all()
        .map_err(|e| Error::io(format!("syncing {}", path.display()), e))
}

/// Makes renames in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_list_delete() {
        let root = tempfile::tempdir().unwrap();
        let store = SnapshotStore::new(root.path());
        let dir = store.collection_dir("c");
        for name in ["b.snapshot", "a.snapshot"] {
            let staged = store.staging_path(&dir, name).unwrap();
            std::fs::write(&staged, b"data").unwrap();
            let d = store.publish(&staged, &dir, name, &"a".repeat(64)).unwrap();
            assert_eq!(d.size, 4);
            assert_eq!(d.checksum.as_deref(), Some("a".repeat(64).as_str()));
        }
        std::fs::write(dir.join("notes.txt"), b"x").unwrap();
        let names: Vec<_> = store
            .list(&dir)
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(names.len(), 2);
        assert!(names.contains(&"a.snapshot".to_string()));
        store.delete(&dir, "a.snapshot").unwrap();
        assert!(!dir.join("a.snapshot.checksum").exists());
        assert!(matches!(
            store.delete(&dir, "a.snapshot"),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            store.existing(&dir, "../c/b.snapshot"),
            Err(Error::NotFound(_))
        ));
        assert!(store
            .list(&store.collection_dir("none"))
            .unwrap()
            .is_empty());
    }

    /// Many publishes of one name at once, each of different bytes: every one gets a
    /// file of its own and every sidecar matches its file.
    #[test]
    fn concurrent_publishes_of_one_name_get_distinct_files() {
        let root = tempfile::tempdir().unwrap();
        let store = SnapshotStore::new(root.path());
        let dir = store.collection_dir("c");
        let names: Vec<String> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..16)
                .map(|i| {
                    let (store, dir) = (&store, &dir);
                    scope.spawn(move || {
                        let bytes = format!("archive {i}");
                        let sha = crate::snapshot::checksum::to_hex(
                            &<sha2::Sha256 as sha2::Digest>::digest(bytes.as_bytes()),
                        );
                        let staged = store.staging_path(dir, "s.snapshot").unwrap();
                        std::fs::write(&staged, &bytes).unwrap();
                        store
                            .publish(&staged, dir, "s.snapshot", &sha)
                            .unwrap()
                            .name
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        let distinct: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(distinct.len(), 16, "{names:?}");
        assert!(distinct.contains(&"s.snapshot".to_string()));
        assert!(distinct.contains(&"s-16.snapshot".to_string()));
        for listed in store.list(&dir).unwrap() {
            let bytes = std::fs::read(dir.join(&listed.name)).unwrap();
            let sha =
                crate::snapshot::checksum::to_hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes));
            assert_eq!(
                listed.checksum.as_deref(),
                Some(sha.as_str()),
                "{}",
                listed.name
            );
        }
        // Nothing staged is left behind.
        let hidden = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count();
        assert_eq!(hidden, 0);
    }

    #[test]
    fn leftovers_include_orphan_sidecars_only() {
        let root = tempfile::tempdir().unwrap();
        let store = SnapshotStore::new(root.path());
        let dir = store.collection_dir("c");
        std::fs::create_dir_all(&dir).unwrap();
        for name in [
            "kept.snapshot",
            "kept.snapshot.checksum",
            "orphan.snapshot.checksum",
        ] {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        store.remove_leftovers().unwrap();
        assert!(dir.join("kept.snapshot.checksum").exists());
        assert!(dir.join("kept.snapshot").exists());
        assert!(!dir.join("orphan.snapshot.checksum").exists());
    }

    #[test]
    fn numbered_names_keep_the_extension() {
        assert_eq!(numbered("a.snapshot", 1), "a.snapshot");
        assert_eq!(numbered("a.snapshot", 2), "a-2.snapshot");
        assert_eq!(numbered("a", 3), "a-3");
    }

    #[test]
    fn description_serialises_like_qdrant() {
        let d = SnapshotDescription {
            name: "x.snapshot".into(),
            creation_time: None,
            size: 1,
            checksum: None,
        };
        assert_eq!(
            serde_json::to_value(&d).unwrap(),
            serde_json::json!({"name": "x.snapshot", "creation_time": null, "size": 1})
        );
    }
}
