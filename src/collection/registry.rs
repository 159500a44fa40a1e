//! The collections open on this peer, by real name. Directories live under
//! `<storage_path>/collections/<name>/<shard id>/`. The registry only opens and drops;
//! what should exist is decided by the cluster state (see `node::applier`).
//!
//! Every change that closes and reopens a collection (a recovery's swap, a transfer's
//! install, a replica added or removed by the applier) holds that collection's swap turn
//! ([`SwapTurns`]) from its first look at the open collection to the reopen. Two of them
//! at once would each wait for the other's reference to go away (until the idle wait
//! ran out), and one would fail.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};

use super::config::CollectionConfig;
use super::Collection;
use crate::error::{Error, Result};
use crate::shard::LocalShard;
use crate::types::{ShardId, RESERVED_NAME_PREFIXES};

/// Prefix of directories where recoveries unpack, next to the live collections so that
/// swapping one in is a rename on the same file system.
const RECOVERY_PREFIX: &str = RESERVED_NAME_PREFIXES[0];
/// Prefix of directories being deleted (renamed aside first).
const DELETED_PREFIX: &str = RESERVED_NAME_PREFIXES[1];

pub struct CollectionRegistry {
    root: PathBuf,
    open: RwLock<HashMap<String, Arc<Collection>>>,
    swaps: SwapTurns,
}

impl CollectionRegistry {
    pub fn new(storage_path: &Path) -> Result<CollectionRegistry> {
        let root = storage_path.join("collections");
        std::fs::create_dir_all(&root)
            .map_err(|e| Error::io(format!("creating {}", root.display()), e))?;
        Ok(CollectionRegistry {
            root,
            open: RwLock::new(HashMap::new()),
            swaps: SwapTurns::default(),
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

    /// [`Self::all`], or `None` while a swap holds the registry (for metrics, which must
    /// never wait on a snapshot recovery).
    pub fn try_all(&self) -> Option<Vec<Arc<Collection>>> {
        self.open
            .try_read()
            .map(|open| open.values().cloned().collect())
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
        let _turn = self.swaps.take(name);
        let removed = self.open.write().remove(name);
        drop(removed);
        let dir = self.dir_of(name);
        if dir.exists() {
            let trash = self
                .root
                .join(format!("{DELETED_PREFIX}{name}-{}", uuid::Uuid::new_v4()));
            std::fs::rename(&dir, &trash)
                .map_err(|e| Error::io(format!("moving {} aside", dir.display()), e))?;
            std::fs::remove_dir_all(&trash)
                .map_err(|e| Error::io(format!("removing {}", trash.display()), e))?;
        }
        Ok(())
    }

    /// Finishes interrupted deletions (`.deleted-*` directories) and removes what
    /// interrupted recoveries left (`.recovery-*`: either never swapped in, or the old
    /// data that a swap replaced). Directories of
    /// collections the cluster state does not know are kept and reported, never
    /// deleted: losing data silently is worse than a warning.
    pub fn clean_leftovers(&self, known: &BTreeMap<String, Vec<ShardId>>) -> Result<()> {
        let entries = std::fs::read_dir(&self.root)
            .map_err(|e| Error::io(format!("listing {}", self.root.display()), e))?;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().to_string();
            let path = entry.path();
            // A known collection is never removed, whatever its name (names with these
            // prefixes are refused today, but a state from before may hold one).
            let leftover = RESERVED_NAME_PREFIXES.iter().any(|p| name.starts_with(p));
            if leftover && !known.contains_key(&name) {
                std::fs::remove_dir_all(&path)
                    .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
            } else if !known.contains_key(&name) {
                tracing::warn!(collection = %name, path = %path.display(), "directory of a collection the cluster does not know; left in place");
            }
        }
        Ok(())
    }

    /// A fresh, empty directory to unpack a recovery of `name` into.
    pub fn recovery_dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.root.join(format!(
            "{RECOVERY_PREFIX}{name}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        Ok(dir)
    }

    /// Swaps `new_dir` in as the data of collection `name` and reopens it. The swap is
    /// one atomic exchange of two directories, so a crash at any moment leaves either
    /// the old data or the new in place, never a mix; if the new data fails to open,
    /// the old data is swapped back. Afterwards `new_dir` holds the old data (or is
    /// gone) and the caller removes it.
    pub fn replace_data(
        &self,
        name: &str,
        new_dir: &Path,
        config: CollectionConfig,
        local_shards: &[ShardId],
    ) -> Result<Arc<Collection>> {
        let live = self.dir_of(name);
        let _turn = self.swaps.take(name);
        // Wait for users to finish without blocking lookups of other collections, then
        // hold the write lock so that new lookups wait (not fail) during the swap.
        if let Some(current) = self.get(name) {
            wait_idle(&current, name, IDLE_WAIT)?;
        }
        let mut open = self.open.write();
        let previous_config = match open.get(name).cloned() {
            // Every shard is replaced: none is kept open.
            Some(previous) => Some(take_when_idle(&mut open, name, previous)?.0),
            None => None,
        };
        let had_live = live.exists();
        if had_live {
            exchange(new_dir, &live)?;
        } else {
            std::fs::rename(new_dir, &live)
                .map_err(|e| Error::io(format!("moving {} into place", new_dir.display()), e))?;
        }
        crate::snapshot::store::sync_dir(&self.root)?;
        match Collection::open(&live, name, config, local_shards) {
            Ok(collection) => {
                let collection = Arc::new(collection);
                open.insert(name.to_string(), collection.clone());
                Ok(collection)
            }
            Err(err) => {
                tracing::error!(collection = name, %err, "recovered data does not open; restoring the previous data");
                if had_live {
                    exchange(new_dir, &live)?;
                    if let Some(config) = previous_config {
                        let collection =
                            Arc::new(Collection::open(&live, name, config, local_shards)?);
                        open.insert(name.to_string(), collection);
                    }
                } else {
                    let _ = std::fs::rename(&live, new_dir);
                }
                Err(err)
            }
        }
    }
}

impl CollectionRegistry {
    /// Swaps `new_dir` in as the data of one shard of an open collection and reopens
    /// the collection, with the same all-or-nothing rule as [`Self::replace_data`].
    pub fn replace_shard(
        &self,
        name: &str,
        shard: ShardId,
        new_dir: &Path,
    ) -> Result<Arc<Collection>> {
        self.replace_shards(name, &[(shard, new_dir.to_path_buf())])
    }

    /// Swaps each directory in as the data of its shard (one atomic exchange per shard;
    /// a shard not open here yet is moved into place) and reopens the collection once:
    /// the replaced shards are read from disk, the others stay open as they were.
    /// If anything fails, every swapped shard is exchanged back and the previous data
    /// is opened again.
    pub fn replace_shards(
        &self,
        name: &str,
        replacements: &[(ShardId, PathBuf)],
    ) -> Result<Arc<Collection>> {
        let _turn = self.swaps.take(name);
        if let Some(current) = self.get(name) {
            wait_idle(&current, name, IDLE_WAIT)?;
        }
        let mut open = self.open.write();
        let current = open
            .get(name)
            .cloned()
            .ok_or_else(|| Error::collection_not_found(name))?;
        let mut local = current.local_shards().keys().copied().collect::<Vec<_>>();
        let (config, mut kept) = take_when_idle(&mut open, name, current)?;
        // Closed before their directories are exchanged.
        kept.retain(|shard, _| !replacements.iter().any(|(replaced, _)| replaced == shard));
        let previous_local = local.clone();
        let collection_dir = self.dir_of(name);
        let mut swapped: Vec<(&Path, PathBuf, bool)> = Vec::new();
        let mut outcome = Ok(());
        for (shard, new_dir) in replacements {
            let live = collection_dir.join(shard.to_string());
            let existed = live.exists();
            let moved = if existed {
                exchange(new_dir, &live)
            } else {
                std::fs::rename(new_dir, &live)
                    .map_err(|e| Error::io(format!("moving {} into place", new_dir.display()), e))
            };
            if let Err(err) = moved {
                outcome = Err(err);
                break;
            }
            swapped.push((new_dir.as_path(), live, existed));
            if !local.contains(shard) {
                local.push(*shard);
            }
        }
        let reopened = outcome
            .and_then(|()| crate::snapshot::store::sync_dir(&collection_dir))
            .and_then(|()| {
                Collection::open_keeping(&collection_dir, name, config.clone(), &local, &kept)
            });
        match reopened {
            Ok(collection) => {
                let collection = Arc::new(collection);
                open.insert(name.to_string(), collection.clone());
                Ok(collection)
            }
            Err(err) => {
                tracing::error!(collection = name, %err, "recovered shards do not open; restoring the previous data");
                for (new_dir, live, existed) in swapped.iter().rev() {
                    if *existed {
                        exchange(new_dir, live)?;
                    } else {
                        let _ = std::fs::rename(live, new_dir);
                    }
                }
                let collection = Arc::new(Collection::open_keeping(
                    &collection_dir,
                    name,
                    config,
                    &previous_local,
                    &kept,
                )?);
                open.insert(name.to_string(), collection);
                Err(err)
            }
        }
    }
}

impl CollectionRegistry {
    /// Opens one more local shard of an open collection (a replica placed here after the
    /// collection was created). Idempotent.
    pub fn add_local_shard(&self, name: &str, shard: ShardId) -> Result<()> {
        let _turn = self.swaps.take(name);
        let Some(current) = self.get(name) else {
            return Ok(());
        };
        if current.local_shards().contains_key(&shard) {
            return Ok(());
        }
        let mut local: Vec<ShardId> = current.local_shards().keys().copied().collect();
        local.push(shard);
        self.reopen(name, current, &local)
    }

    /// Closes a local shard of an open collection and deletes its files (moved aside first,
    /// so a crash never leaves half a shard). Idempotent.
    pub fn remove_local_shard(&self, name: &str, shard: ShardId) -> Result<()> {
        let _turn = self.swaps.take(name);
        if let Some(current) = self.get(name) {
            if current.local_shards().contains_key(&shard) {
                let local: Vec<ShardId> = current
                    .local_shards()
                    .keys()
                    .copied()
                    .filter(|s| *s != shard)
                    .collect();
                self.reopen(name, current, &local)?;
            }
        }
        let dir = self.dir_of(name).join(shard.to_string());
        if dir.exists() {
            let trash = self.root.join(format!(
                "{DELETED_PREFIX}{name}-{shard}-{}",
                uuid::Uuid::new_v4()
            ));
            std::fs::rename(&dir, &trash)
                .map_err(|e| Error::io(format!("moving {} aside", dir.display()), e))?;
            std::fs::remove_dir_all(&trash)
                .map_err(|e| Error::io(format!("removing {}", trash.display()), e))?;
        }
        Ok(())
    }

    /// Takes `current` out once idle and opens it again with `local` shards: those it had
    /// stay open, a shard no longer in `local` is closed, a new one is opened. If the new
    /// set does not open, the previous one is opened again. The caller holds the
    /// collection's swap turn.
    fn reopen(&self, name: &str, current: Arc<Collection>, local: &[ShardId]) -> Result<()> {
        let previous: Vec<ShardId> = current.local_shards().keys().copied().collect();
        wait_idle(&current, name, IDLE_WAIT)?;
        let mut open = self.open.write();
        let (config, mut kept) = take_when_idle(&mut open, name, current)?;
        kept.retain(|shard, _| local.contains(shard));
        let dir = self.dir_of(name);
        match Collection::open_keeping(&dir, name, config.clone(), local, &kept) {
            Ok(collection) => {
                open.insert(name.to_string(), Arc::new(collection));
                Ok(())
            }
            Err(err) => {
                let collection = Collection::open_keeping(&dir, name, config, &previous, &kept)?;
                open.insert(name.to_string(), Arc::new(collection));
                Err(err)
            }
        }
    }
}

/// One swap at a time per collection (see the module doc). Blocking: taken on
/// `spawn_blocking` threads only.
#[derive(Default)]
struct SwapTurns {
    busy: Mutex<std::collections::HashSet<String>>,
    freed: Condvar,
}

/// A collection's swap turn; the next waiter goes when it is dropped.
struct SwapTurn<'a> {
    turns: &'a SwapTurns,
    name: String,
}

impl SwapTurns {
    fn take(&self, name: &str) -> SwapTurn<'_> {
        let mut busy = self.busy.lock();
        while busy.contains(name) {
            self.freed.wait(&mut busy);
        }
        busy.insert(name.to_string());
        SwapTurn {
            turns: self,
            name: name.to_string(),
        }
    }
}

impl Drop for SwapTurn<'_> {
    fn drop(&mut self) {
        self.turns.busy.lock().remove(&self.name);
        self.turns.freed.notify_all();
    }
}

/// How long a swap waits for requests and snapshots that still use a collection.
const IDLE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long it waits again once new lookups are held back by the write lock.
const LOCKED_IDLE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Takes `collection` out of the map once nothing else uses it, and returns its config
/// and its open shards, held by nothing else: a shard the caller drops is closed (its
/// files too). If the collection stays busy, it is left in place and the swap fails with
/// 503 before anything changed.
fn take_when_idle(
    open: &mut HashMap<String, Arc<Collection>>,
    name: &str,
    collection: Arc<Collection>,
) -> Result<(CollectionConfig, BTreeMap<ShardId, Arc<LocalShard>>)> {
    wait_idle(&collection, name, LOCKED_IDLE_WAIT)?;
    let config = collection.config();
    open.remove(name);
    // Idle and out of the map (whose write lock the caller holds): this is the last
    // reference, so the collection itself can be taken apart.
    match Arc::try_unwrap(collection) {
        Ok(collection) => Ok((config, collection.into_shards())),
        Err(still_used) => {
            open.insert(name.to_string(), still_used);
            Err(Error::Unavailable(format!(
                "collection `{name}` became busy while it was being reopened; try again"
            )))
        }
    }
}

/// Waits (bounded) until only the registry and the caller hold `collection`.
fn wait_idle(collection: &Arc<Collection>, name: &str, wait: std::time::Duration) -> Result<()> {
    let deadline = std::time::Instant::now() + wait;
    // One reference in the map, one held by the caller.
    while !collection.is_idle(2) {
        if std::time::Instant::now() > deadline {
            return Err(Error::Unavailable(format!(
                "collection `{name}` stayed busy (a snapshot or long request uses it); try again"
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Ok(())
}

/// Atomically exchanges two directories (Linux `renameat2(RENAME_EXCHANGE)`).
fn exchange(a: &Path, b: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let to_c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| Error::service(format!("path {} holds NUL", p.display())))
    };
    let (ca, cb) = (to_c(a)?, to_c(b)?);
    // SAFETY: both pointers are valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::io(
            format!("exchanging {} and {}", a.display(), b.display()),
            std::io::Error::last_os_error(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::ops::ShardOp;

    #[test]
    fn exchange_swaps_directories() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(a.join("x"), b"from a").unwrap();
        exchange(&a, &b).unwrap();
        assert_eq!(std::fs::read(b.join("x")).unwrap(), b"from a");
        assert!(!a.join("x").exists());
    }

    fn local_shard_ids(registry: &CollectionRegistry, name: &str) -> Vec<ShardId> {
        registry
            .get(name)
            .unwrap()
            .local_shards()
            .keys()
            .copied()
            .collect()
    }

    fn two_dim_config() -> CollectionConfig {
        use crate::collection::config::{CollectionDefaults, CreateCollection};
        let body: CreateCollection = serde_json::from_value(
            serde_json::json!({"vectors": {"size": 2, "distance": "Dot"}, "shard_number": 3}),
        )
        .unwrap();
        body.into_config(&CollectionDefaults::default()).unwrap()
    }

    /// Leftover working directories go at start-up; a collection the cluster knows stays,
    /// whatever its name.
    #[test]
    fn leftovers_are_removed_but_known_collections_never() {
        let storage = tempfile::tempdir().unwrap();
        let registry = CollectionRegistry::new(storage.path()).unwrap();
        for dir in [
            ".deleted-old",
            ".recovery-x-1234",
            ".deleted-kept",
            "unknown",
        ] {
            std::fs::create_dir_all(registry.dir_of(dir).join("0")).unwrap();
        }
        let known = BTreeMap::from([(".deleted-kept".to_string(), vec![0])]);
        registry.clean_leftovers(&known).unwrap();
        assert!(!registry.dir_of(".deleted-old").exists());
        assert!(!registry.dir_of(".recovery-x-1234").exists());
        assert!(registry.dir_of(".deleted-kept").join("0").exists());
        assert!(
            registry.dir_of("unknown").exists(),
            "unknown directories are only reported"
        );
    }

    /// Adding, replacing or removing one shard reopens only that shard: the others stay
    /// the same open shards (nothing is read from disk again for them).
    #[test]
    fn reopening_for_one_shard_keeps_the_others_open() {
        let storage = tempfile::tempdir().unwrap();
        let registry = CollectionRegistry::new(storage.path()).unwrap();
        registry.open("c", two_dim_config(), &[0]).unwrap();
        let shard_ptr = |id: ShardId| Arc::as_ptr(&registry.get("c").unwrap().local_shards()[&id]);
        let first = shard_ptr(0);
        registry.add_local_shard("c", 2).unwrap();
        assert_eq!(shard_ptr(0), first);
        let second = shard_ptr(2);
        let incoming = registry.recovery_dir("c-shard-1").unwrap();
        registry.replace_shard("c", 1, &incoming).unwrap();
        assert_eq!((shard_ptr(0), shard_ptr(2)), (first, second));
        let point = crate::collection::point::PointRecord {
            id: crate::types::PointId::Num(7),
            vectors: [(String::new(), vec![1.0, 0.0])].into_iter().collect(),
            payload: Default::default(),
        };
        let shard_one = || registry.get("c").unwrap().local_shards()[&1].clone();
        shard_one()
            .apply(ShardOp::Upsert(vec![point]), true)
            .unwrap();
        assert_eq!(shard_one().count(None), 1);
        // An empty shard swapped in: the point is gone, so it was read from the new data.
        let incoming = registry.recovery_dir("c-shard-1").unwrap();
        registry.replace_shard("c", 1, &incoming).unwrap();
        assert_eq!(shard_one().count(None), 0);
        assert_eq!((shard_ptr(0), shard_ptr(2)), (first, second));
        registry.remove_local_shard("c", 2).unwrap();
        assert_eq!(shard_ptr(0), first);
        let shards = local_shard_ids(&registry, "c");
        assert_eq!(shards, vec![0, 1]);
        assert!(!registry.dir_of("c").join("2").exists());
    }

    /// A shard swap and a replica added by the applier at the same moment: each used to
    /// wait for the other's reference to the collection until the idle wait ran out.
    #[test]
    fn concurrent_reopens_of_one_collection_take_turns() {
        let storage = tempfile::tempdir().unwrap();
        let registry = Arc::new(CollectionRegistry::new(storage.path()).unwrap());
        registry.open("c", two_dim_config(), &[0]).unwrap();
        // A request still using the collection: both reopens start waiting for it.
        let user = registry.get("c").unwrap();
        let barrier = Arc::new(std::sync::Barrier::new(3));
        let swapper = {
            let (registry, barrier) = (registry.clone(), barrier.clone());
            std::thread::spawn(move || {
                let incoming = registry.recovery_dir("c-shard-1").unwrap();
                barrier.wait();
                registry.replace_shard("c", 1, &incoming).map(|_| ())
            })
        };
        let adder = {
            let (registry, barrier) = (registry.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                registry.add_local_shard("c", 2)
            })
        };
        barrier.wait();
        let started = std::time::Instant::now();
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(user);
        swapper.join().unwrap().unwrap();
        adder.join().unwrap().unwrap();
        assert!(
            started.elapsed() < IDLE_WAIT,
            "the two reopens waited for each other"
        );
        let shards = local_shard_ids(&registry, "c");
        assert_eq!(shards, vec![0, 1, 2]);
    }
}
