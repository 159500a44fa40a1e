//! Snapshots of collections, shards and the whole storage: create, list, delete, locate
//! for download, and recover (from a `file://` or `http(s)://` location, or an upload).
//!
//! Every rule lives here, whichever door a request came through: the URL-recovery
//! switch, `file://` confinement, checksum checks, compatibility with an existing
//! collection. Recovery unpacks and verifies into a directory of its own next to the
//! live data, and only then swaps it in with an atomic directory exchange; a failed or
//! interrupted recovery leaves the previous collection as it was. Recoveries of one
//! collection are serialised: a second one while the first runs answers 409.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::Utc;
use serde::Serialize;

use super::snapshot_install::{empty_result_note, RecoveredShards};
use super::tasks::TaskHandle;
use super::{blocking, Node};
use crate::collection::Collection;
use crate::consensus::op::ClusterOp;
use crate::consensus::recovery::RecoveryScope;
use crate::consensus::state::validate_name;
use crate::error::{Error, Result};
use crate::replication::placement;
use crate::snapshot::archive::{self, FileCheck, Manifest};
use crate::snapshot::checksum::{self, HashingReader};
use crate::snapshot::layout::{self, UnpackedCollection};
use crate::snapshot::naming;
use crate::snapshot::source::{self, Location};
use crate::snapshot::store::{SnapshotDescription, SnapshotStore};
use crate::snapshot::upload::ChannelReader;

/// Where the bytes of a snapshot to unpack come from.
pub(crate) enum Source<'a> {
    /// A file or URL.
    At(&'a Location),
    /// An upload, streamed from the request body as it arrives.
    Stream(ChannelReader),
}

pub use super::snapshot_install::ShardRecovery;
pub use crate::consensus::recovery::SnapshotPriority;

/// What a recovery did, per shard: the `recovery` object of the recover response.
#[derive(Debug, Clone, Serialize)]
pub struct RecoveryReport {
    pub collection: String,
    pub created: bool,
    pub priority: SnapshotPriority,
    pub shards: Vec<ShardRecovery>,
    /// Set when the result is not what a user may expect (an empty collection).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Serialises recoveries per collection name.
#[derive(Default)]
pub struct RecoveryLocks {
    busy: parking_lot::Mutex<HashSet<String>>,
}

/// Held while a recovery of one collection runs.
pub struct RecoveryGuard<'a> {
    locks: &'a RecoveryLocks,
    name: String,
}

impl RecoveryLocks {
    pub(crate) fn acquire(&self, name: &str) -> Result<RecoveryGuard<'_>> {
        if !self.busy.lock().insert(name.to_string()) {
            return Err(Error::Conflict(format!("a recovery of collection `{name}` is already running; try again when it has finished")));
        }
        Ok(RecoveryGuard {
            locks: self,
            name: name.to_string(),
        })
    }
}

impl RecoveryLocks {
    /// Whether a recovery of `name` runs on this peer now.
    pub(crate) fn is_held(&self, name: &str) -> bool {
        self.busy.lock().contains(name)
    }
}

impl Drop for RecoveryGuard<'_> {
    fn drop(&mut self) {
        self.locks.busy.lock().remove(&self.name);
    }
}

/// A recovery request, as the REST body and the upload query give it.
#[derive(Debug, Clone, Default)]
pub struct RecoverRequest {
    pub priority: SnapshotPriority,
    pub checksum: Option<String>,
    pub api_key: Option<String>,
}

impl Node {
    pub fn snapshot_store(&self) -> SnapshotStore {
        SnapshotStore::new(&self.settings.storage.snapshots_path)
    }

    // ---- collection snapshots ----

    pub async fn create_collection_snapshot(
        &self,
        name: &str,
        task: &TaskHandle,
    ) -> Result<SnapshotDescription> {
        let collection = self.collection(name)?;
        let (store, peer, bytes) = (
            self.snapshot_store(),
            self.consensus.peer_id(),
            task.bytes(),
        );
        blocking(move || {
            let description = write_collection_snapshot(
                &collection,
                &store,
                &store.collection_dir(collection.name()),
                peer,
            )?;
            bytes.store(description.size, Ordering::Relaxed);
            Ok(description)
        })
        .await
    }

    pub fn list_collection_snapshots(&self, name: &str) -> Result<Vec<SnapshotDescription>> {
        let collection = self.collection(name)?;
        let store = self.snapshot_store();
        store.list(&store.collection_dir(collection.name()))
    }

    pub fn delete_collection_snapshot(&self, name: &str, snapshot: &str) -> Result<()> {
        let collection = self.collection(name)?;
        let store = self.snapshot_store();
        store.delete(&store.collection_dir(collection.name()), snapshot)
    }

    /// The file to serve for a download.
    pub fn collection_snapshot_path(&self, name: &str, snapshot: &str) -> Result<PathBuf> {
        let collection = self.collection(name)?;
        let store = self.snapshot_store();
        store.existing(&store.collection_dir(collection.name()), snapshot)
    }

    /// `PUT /collections/{name}/snapshots/recover`.
    pub async fn recover_collection(
        &self,
        name: &str,
        location: &str,
        request: RecoverRequest,
        task: &TaskHandle,
    ) -> Result<RecoveryReport> {
        validate_name(name)?;
        let expected = request
            .checksum
            .as_deref()
            .map(checksum::parse_expected)
            .transpose()?;
        let location = source::parse_location(
            location,
            &self.settings.storage.snapshots_path,
            self.settings.service.enable_snapshot_url_recovery,
        )?;
        let target = self.recovery_target(name);
        let _guard = self.recovery_locks.acquire(&target)?;
        let unpacked = self
            .unpack_collection(
                &target,
                Source::At(&location),
                request.api_key.as_deref(),
                expected,
                task,
            )
            .await?;
        self.install_collection(&target, unpacked, request.priority, Requester::Api)
            .await
    }

    /// `POST /collections/{name}/snapshots/upload`: `upload` is the received file, already
    /// stored under `snapshots_path/<collection>/`.
    pub async fn recover_uploaded_collection(
        &self,
        name: &str,
        body: ChannelReader,
        expected: Option<String>,
        request: RecoverRequest,
        task: &TaskHandle,
    ) -> Result<RecoveryReport> {
        let target = self.recovery_target(name);
        let _guard = self.recovery_locks.acquire(&target)?;
        let unpacked = self
            .unpack_collection(&target, Source::Stream(body), None, expected, task)
            .await?;
        self.install_collection(&target, unpacked, request.priority, Requester::Api)
            .await
    }

    /// Start-up recovery (`--snapshot PATH:NAME`): any path on disk; an existing
    /// collection is replaced only with `force`.
    pub async fn recover_collection_from_path(
        &self,
        name: &str,
        path: &Path,
        force: bool,
    ) -> Result<RecoveryReport> {
        validate_name(name)?;
        if self.collection_exists(name) && !force {
            return Err(Error::AlreadyExists(format!(
                "Collection {name} already exists. Use --force-snapshot to overwrite it."
            )));
        }
        let task = self.tasks.start("recover_snapshot", name);
        // A refusal ends the task too (it is listed, and counted in the metrics, as failed).
        let _guard = match self.recovery_locks.acquire(name) {
            Ok(guard) => guard,
            Err(err) => {
                let refused: Result<RecoveryReport> = Err(err);
                task.finish(&refused);
                return refused;
            }
        };
        let unpacked = self
            .unpack_collection(
                name,
                Source::At(&Location::File(path.to_path_buf())),
                None,
                None,
                &task,
            )
            .await;
        let outcome = match unpacked {
            Ok(unpacked) => {
                self.install_collection(
                    name,
                    unpacked,
                    SnapshotPriority::Snapshot,
                    Requester::StartUp { force },
                )
                .await
            }
            Err(err) => Err(err),
        };
        task.finish(&outcome);
        outcome
    }

    /// The collection a recovery addressed by `name` lands in (aliases resolve).
    fn recovery_target(&self, name: &str) -> String {
        self.consensus
            .state()
            .resolve(name)
            .unwrap_or(name)
            .to_string()
    }

    /// Streams the snapshot into a fresh recovery directory, verifying every file and
    /// the outer checksum. The directory is removed on any failure.
    async fn unpack_collection(
        &self,
        name: &str,
        location: Source<'_>,
        api_key: Option<&str>,
        expected: Option<String>,
        task: &TaskHandle,
    ) -> Result<UnpackedCollection> {
        let dir = self.collections.recovery_dir(name)?;
        let started = std::time::Instant::now();
        let unpacked = self
            .unpack_into(&dir, location, api_key, task.bytes(), expected)
            .await;
        let result = match unpacked {
            Ok(()) => {
                tracing::info!(collection = name, elapsed = ?started.elapsed(), "snapshot unpacked and verified");
                // Reads every segment and WAL record of the shards (verify.rs): off the runtime.
                let (unpacked_dir, every_shard) = (dir.clone(), !self.settings.cluster.enabled);
                blocking(move || layout::read_collection(&unpacked_dir, every_shard)).await
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            remove_dir_quietly(&dir);
        }
        result
    }

    /// Unpacks `location` into `dir`, verifying every file and, when `expected` is
    /// given, the sha256 of the whole archive.
    pub(crate) async fn unpack_into(
        &self,
        dir: &Path,
        location: Source<'_>,
        api_key: Option<&str>,
        bytes: Arc<AtomicU64>,
        expected: Option<String>,
    ) -> Result<()> {
        let dir = dir.to_path_buf();
        let location = match location {
            Source::At(location) => location,
            Source::Stream(body) => {
                return blocking(move || {
                    unpack_stream(body, &dir, &bytes, expected.as_deref(), FileCheck::Sha256)
                        .map(drop)
                })
                .await
            }
        };
        match location {
            Location::File(path) => {
                let path = path.clone();
                blocking(move || {
                    let file = std::fs::File::open(&path)
                        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
                    unpack_stream(
                        std::io::BufReader::with_capacity(1 << 20, file),
                        &dir,
                        &bytes,
                        expected.as_deref(),
                        FileCheck::Sha256,
                    )
                    .map(drop)
                })
                .await
            }
            Location::Url(url) => {
                let client = source::download_client()?;
                let body = source::open_url(&client, url, api_key).await?;
                // The bridge must be created inside the runtime; it then blocks a worker thread.
                let reader = tokio_util::io::SyncIoBridge::new(body);
                let url = url.clone();
                blocking(move || {
                    unpack_stream(reader, &dir, &bytes, expected.as_deref(), FileCheck::Sha256)
                        .map(drop)
                        .map_err(|err| match err {
                            Error::Service(msg) => {
                                Error::Service(format!("downloading {url}: {msg}"))
                            }
                            other => other,
                        })
                })
                .await
            }
        }
    }

    /// Creates the collection through consensus if it is absent (or checks that the
    /// snapshot fits the existing one), then installs the snapshot's shards by priority
    /// (`snapshot_install.rs`).
    async fn install_collection(
        &self,
        name: &str,
        unpacked: UnpackedCollection,
        priority: SnapshotPriority,
        requester: Requester,
    ) -> Result<RecoveryReport> {
        let dir = unpacked.dir.clone();
        let outcome = self
            .install_collection_inner(name, unpacked, priority, requester)
            .await;
        remove_dir_quietly(&dir);
        outcome
    }

    async fn install_collection_inner(
        &self,
        name: &str,
        unpacked: UnpackedCollection,
        priority: SnapshotPriority,
        requester: Requester,
    ) -> Result<RecoveryReport> {
        let snapshot_config = unpacked.config.clone();
        let mut existing = self.consensus.state().collections.get(name).cloned();
        if let (Some(_), Requester::StartUp { force: true }) = (&existing, requester) {
            // Start-up `--force-snapshot`: the snapshot's config replaces the collection's.
            self.propose(ClusterOp::DeleteCollection {
                name: name.to_string(),
            })
            .await?;
            existing = None;
        }
        let mut created = false;
        if existing.is_none() {
            let me = self.consensus.peer_id();
            let params = &snapshot_config.params;
            let placement = match requester {
                // Qdrant's start-up rule: the restored shards are registered on this peer.
                Requester::StartUp { .. } => {
                    (0..params.shard_number).map(|s| (s, vec![me])).collect()
                }
                // Like a user's create: replicas spread over every voter.
                Requester::Api => placement::place(
                    params.shard_number,
                    params.replication_factor,
                    &self.consensus.raft_info().voters,
                    me,
                ),
            };
            let create = ClusterOp::CreateCollection {
                name: name.to_string(),
                config: snapshot_config.clone(),
                placement,
            };
            match self.propose(create).await {
                Ok(()) => created = true,
                // Created meanwhile: a start-up flag without force must not replace it.
                Err(Error::AlreadyExists(_))
                    if requester == (Requester::StartUp { force: false }) =>
                {
                    return Err(Error::AlreadyExists(format!(
                        "Collection {name} already exists. Use --force-snapshot to overwrite it."
                    )))
                }
                // Created meanwhile by a recovery on another peer: check it like any other.
                Err(Error::AlreadyExists(_)) => {}
                Err(err) => return Err(err),
            }
        }
        if !created {
            let state = self.consensus.state();
            let current = state
                .collections
                .get(name)
                .ok_or_else(|| Error::collection_not_found(name))?;
            check_compatible(&current.config, &snapshot_config)?;
        }
        let started = std::time::Instant::now();
        let prepared = unpacked.clone();
        blocking(move || prepare_collection_dir(&prepared)).await?;
        let shards = self
            .install_recovered_shards(RecoveredShards {
                collection: name.to_string(),
                shards: unpacked.shards.clone(),
                whole: Some(unpacked.dir.clone()),
                priority,
                scope: RecoveryScope::Collection,
            })
            .await?;
        let note = empty_result_note(created, &shards);
        tracing::info!(
            collection = name,
            created,
            ?priority,
            swap_and_register = ?started.elapsed(),
            shards = %serde_json::to_string(&shards).unwrap_or_default(),
            "collection recovered from snapshot"
        );
        if let Some(note) = &note {
            tracing::warn!(collection = name, "{note}");
        }
        Ok(RecoveryReport {
            collection: name.to_string(),
            created,
            priority,
            shards,
            note,
        })
    }
}

/// Who asked for a recovery: a new collection's shards are placed differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Requester {
    /// The REST API (URL, file or upload).
    Api,
    /// A start-up flag; with `force` an existing collection is replaced, config included.
    StartUp { force: bool },
}

/// Writes a collection snapshot of the local shards into `dir` and publishes it there.
pub fn write_collection_snapshot(
    collection: &Collection,
    store: &SnapshotStore,
    dir: &Path,
    peer: u64,
) -> Result<SnapshotDescription> {
    let name = naming::collection_snapshot(collection.name(), peer, Utc::now());
    let staged = store.staging_path(dir, &name)?;
    let frozen = collection
        .local_shards()
        .iter()
        .map(|(id, shard)| Ok((*id, shard.freeze()?)))
        .collect::<Result<Vec<_>>>()?;
    let config = collection.config();
    let (sha256, _) = archive::write_file(&staged, |writer| {
        for (id, shard) in &frozen {
            layout::write_shard(writer, &format!("{id}/"), shard, peer)?;
        }
        layout::write_collection_meta(writer, &config)
    })?;
    drop(frozen);
    store.publish(&staged, dir, &name, &sha256)
}

/// Unpacks a stream, counting bytes, and verifies every file against the manifest (as
/// `check` says); when `expected` is given, also the sha256 of the whole stream (computed
/// only then). Returns the manifest.
pub fn unpack_stream(
    reader: impl Read,
    dir: &Path,
    bytes: &AtomicU64,
    expected: Option<&str>,
    check: FileCheck,
) -> Result<Manifest> {
    let counted = Counted {
        inner: reader,
        bytes,
    };
    let rest = |e| Error::io("reading the rest of the snapshot", e);
    let Some(expected) = expected else {
        let mut counted = counted;
        let manifest = archive::unpack_checked(&mut counted, dir, check)?;
        std::io::copy(&mut counted, &mut std::io::sink()).map_err(rest)?;
        return Ok(manifest);
    };
    let mut hashing = HashingReader::new(counted);
    let manifest = archive::unpack_checked(&mut hashing, dir, check)?;
    let (actual, _) = hashing.drain_and_finish().map_err(rest)?;
    // Same order as Qdrant's recover message: what the client gave, then what we got.
    checksum::verify(expected, &actual).map_err(|_| {
        Error::BadInput(format!(
            "Snapshot checksum mismatch: expected {expected}, got {actual}"
        ))
    })?;
    Ok(manifest)
}

/// Only shard directories stay: the collection-level files were read already.
fn prepare_collection_dir(unpacked: &UnpackedCollection) -> Result<()> {
    let keep: HashSet<String> = unpacked.shards.keys().map(|s| s.to_string()).collect();
    let entries = std::fs::read_dir(&unpacked.dir)
        .map_err(|e| Error::io(format!("listing {}", unpacked.dir.display()), e))?;
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if keep.contains(&entry.file_name().to_string_lossy().to_string()) {
            layout::strip_shard_metadata(&path)?;
        } else if path.is_dir() {
            std::fs::remove_dir_all(&path)
                .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
        } else {
            std::fs::remove_file(&path)
                .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
        }
    }
    Ok(())
}

/// The existing collection keeps its config; the snapshot must match its vectors and
/// shard count.
fn check_compatible(
    existing: &crate::collection::config::CollectionConfig,
    snapshot: &crate::collection::config::CollectionConfig,
) -> Result<()> {
    if existing.params.vectors != snapshot.params.vectors {
        return Err(Error::BadInput(format!(
            "Snapshot is not compatible with existing collection: vectors differ (collection: {}, snapshot: {})",
            serde_json::to_string(&existing.params.vectors).unwrap_or_default(),
            serde_json::to_string(&snapshot.params.vectors).unwrap_or_default()
        )));
    }
    if existing.params.shard_number != snapshot.params.shard_number {
        return Err(Error::BadInput(format!(
            "Snapshot is not compatible with existing collection: shard_number {} != {}",
            existing.params.shard_number, snapshot.params.shard_number
        )));
    }
    Ok(())
}

/// Counts bytes read through it.
struct Counted<'a, R> {
    inner: R,
    bytes: &'a AtomicU64,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn remove_dir_quietly(dir: &Path) {
    if dir.exists() {
        if let Err(err) = std::fs::remove_dir_all(dir) {
            tracing::warn!(dir = %dir.display(), %err, "could not remove a recovery directory; it is removed at the next start");
        }
    }
}
