//! Shard snapshots: one local shard's data as an archive (`<c>/shards/<id>/` in the
//! snapshots directory), a snapshot streamed on the fly, and recovery of one shard from
//! a URL, a stored file name, or an upload. The swap-in is the same atomic exchange as
//! for collections, per shard directory.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use tokio::sync::mpsc;

use super::snapshot_install::RecoveredShards;
use super::snapshots::{RecoverRequest, RecoveryReport, SnapshotPriority, Source};
use super::tasks::TaskHandle;
use super::{blocking, Node};
use crate::collection::Collection;
use crate::consensus::recovery::RecoveryScope;
use crate::error::{Error, Result};
use crate::shard::LocalShard;
use crate::snapshot::archive::{self, ArchiveWriter, FileCheck};
use crate::snapshot::checksum;
use crate::snapshot::layout;
use crate::snapshot::naming;
use crate::snapshot::source::{self, Location};
use crate::snapshot::store::SnapshotDescription;
use crate::snapshot::upload::ChannelReader;
use crate::types::ShardId;

/// Where a shard recovery reads from: a URL, or a file name in the shard's snapshot dir.
pub fn parse_shard_location(location: &str) -> ShardLocation {
    match reqwest::Url::parse(location) {
        Ok(url) => ShardLocation::Url(url.to_string()),
        Err(_) => ShardLocation::FileName(location.to_string()),
    }
}

#[derive(Debug, Clone)]
pub enum ShardLocation {
    Url(String),
    FileName(String),
}

impl Node {
    /// The collection and its local shard, or the errors Qdrant gives.
    fn local_shard(
        &self,
        name: &str,
        shard: ShardId,
    ) -> Result<(Arc<Collection>, Arc<LocalShard>)> {
        let collection = self.collection(name)?;
        if shard >= collection.config().params.shard_number {
            return Err(Error::NotFound(format!("shard {shard} not found")));
        }
        let local = collection
            .local_shards()
            .get(&shard)
            .cloned()
            .ok_or_else(|| Error::BadInput(format!("Shard {shard} is not a local shard")))?;
        Ok((collection, local))
    }

    fn shard_snapshot_dir(&self, collection: &Collection, shard: ShardId) -> PathBuf {
        self.snapshot_store().shard_dir(collection.name(), shard)
    }

    pub async fn create_shard_snapshot(
        &self,
        name: &str,
        shard: ShardId,
        task: &TaskHandle,
    ) -> Result<SnapshotDescription> {
        let (collection, local) = self.local_shard(name, shard)?;
        let (store, peer, bytes) = (
            self.snapshot_store(),
            self.consensus.peer_id(),
            task.bytes(),
        );
        let dir = self.shard_snapshot_dir(&collection, shard);
        blocking(move || {
            let snapshot = naming::shard_snapshot(collection.name(), shard, Utc::now());
            let staged = store.staging_path(&dir, &snapshot)?;
            let frozen = local.freeze()?;
            let (sha256, size) =
                archive::write_file(&staged, |writer| write_shard_archive(writer, &frozen, peer))?;
            drop(frozen);
            bytes.store(size, Ordering::Relaxed);
            store.publish(&staged, &dir, &snapshot, &sha256)
        })
        .await
    }

    pub fn list_shard_snapshots(
        &self,
        name: &str,
        shard: ShardId,
    ) -> Result<Vec<SnapshotDescription>> {
        let (collection, _) = self.local_shard(name, shard)?;
        self.snapshot_store()
            .list(&self.shard_snapshot_dir(&collection, shard))
    }

    pub fn delete_shard_snapshot(&self, name: &str, shard: ShardId, snapshot: &str) -> Result<()> {
        let (collection, _) = self.local_shard(name, shard)?;
        self.snapshot_store()
            .delete(&self.shard_snapshot_dir(&collection, shard), snapshot)
    }

    pub fn shard_snapshot_path(
        &self,
        name: &str,
        shard: ShardId,
        snapshot: &str,
    ) -> Result<PathBuf> {
        let (collection, _) = self.local_shard(name, shard)?;
        self.snapshot_store()
            .existing(&self.shard_snapshot_dir(&collection, shard), snapshot)
    }

    /// A fresh shard snapshot streamed as it is written; never stored. Returns the file
    /// name to announce and the stream of archive bytes (an error ends the stream early).
    /// `check` says what its manifest lists: sha256 for users, crc32 for a transfer.
    pub fn stream_shard_snapshot(
        &self,
        name: &str,
        shard: ShardId,
        check: FileCheck,
    ) -> Result<(String, mpsc::Receiver<std::io::Result<Bytes>>)> {
        let (collection, local) = self.local_shard(name, shard)?;
        let peer = self.consensus.peer_id();
        let file_name = naming::shard_snapshot(collection.name(), shard, Utc::now());
        let (tx, rx) = mpsc::channel(8);
        tokio::task::spawn_blocking(move || {
            let sink = ChannelWriter { tx: tx.clone() };
            let outcome = local.freeze().and_then(|frozen| {
                let buffered = std::io::BufWriter::with_capacity(1 << 20, sink);
                let writer = match check {
                    FileCheck::Sha256 => ArchiveWriter::without_checksum(buffered),
                    FileCheck::Crc32 => ArchiveWriter::for_transfer(buffered),
                };
                let (mut buffered, _, _) =
                    writer.write_indexed(|w| write_shard_archive(w, &frozen, peer))?;
                buffered
                    .flush()
                    .map_err(|e| Error::io("streaming the shard snapshot", e))
            });
            if let Err(err) = outcome {
                tracing::warn!(%err, "streaming a shard snapshot failed");
                let _ = tx.blocking_send(Err(std::io::Error::other(err.to_string())));
            }
        });
        Ok((file_name, rx))
    }

    /// `PUT /collections/{c}/shards/{id}/snapshots/recover`.
    pub async fn recover_shard(
        &self,
        name: &str,
        shard: ShardId,
        location: &str,
        request: RecoverRequest,
        task: &TaskHandle,
    ) -> Result<RecoveryReport> {
        // Only the name is kept: holding the collection would keep its files open.
        let real = self.recoverable_shard(name, shard)?;
        let expected = request
            .checksum
            .as_deref()
            .map(checksum::parse_expected)
            .transpose()?;
        let location = match parse_shard_location(location) {
            ShardLocation::Url(url) => match source::parse_location(
                &url,
                &self.settings.storage.snapshots_path,
                self.settings.service.enable_snapshot_url_recovery,
            )? {
                Location::File(_) => {
                    return Err(Error::BadInput(format!(
                        "Invalid snapshot URL {url}: URLs with file scheme are not supported"
                    )))
                }
                url => url,
            },
            ShardLocation::FileName(file) => Location::File(
                self.snapshot_store()
                    .existing(&self.snapshot_store().shard_dir(&real, shard), &file)?,
            ),
        };
        self.recover_shard_from(
            name,
            shard,
            Source::At(&location),
            request.api_key.as_deref(),
            expected,
            request.priority,
            task,
        )
        .await
    }

    /// `POST /collections/{c}/shards/{id}/snapshots/upload`: the body is unpacked as it
    /// arrives; `expected` is checked against its sha256 before anything is swapped in.
    pub async fn recover_uploaded_shard(
        &self,
        name: &str,
        shard: ShardId,
        body: ChannelReader,
        expected: Option<String>,
        priority: SnapshotPriority,
        task: &TaskHandle,
    ) -> Result<RecoveryReport> {
        self.recover_shard_from(
            name,
            shard,
            Source::Stream(body),
            None,
            expected,
            priority,
            task,
        )
        .await
    }

    /// Unpacks and verifies a shard snapshot, then installs it by priority with Qdrant's
    /// shard-level rules (`snapshot` marks every other replica Dead, none is dropped).
    #[allow(clippy::too_many_arguments)]
    async fn recover_shard_from(
        &self,
        name: &str,
        shard: ShardId,
        location: Source<'_>,
        api_key: Option<&str>,
        expected: Option<String>,
        priority: SnapshotPriority,
        task: &TaskHandle,
    ) -> Result<RecoveryReport> {
        let real = self.recoverable_shard(name, shard)?;
        let _guard = self.recovery_locks.acquire(&real)?;
        let dir = self
            .collections
            .recovery_dir(&format!("{real}-shard-{shard}"))?;
        let outcome = async {
            self.unpack_into(&dir, location, api_key, task.bytes(), expected)
                .await?;
            let dir_owned = dir.clone();
            let config = self.collection(&real)?.config();
            blocking(move || {
                layout::read_shard(&dir_owned, &config)?;
                layout::strip_shard_metadata(&dir_owned)
            })
            .await?;
            let shards = self
                .install_recovered_shards(RecoveredShards {
                    collection: real.clone(),
                    shards: [(shard, dir.clone())].into(),
                    whole: None,
                    priority,
                    scope: RecoveryScope::Shard,
                })
                .await?;
            Ok(RecoveryReport {
                collection: real.clone(),
                created: false,
                priority,
                shards,
                note: None,
            })
        }
        .await;
        if dir.exists() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        outcome
    }

    /// The real name of the collection whose shard a recovery targets: the shard must
    /// exist in the collection; this peer need not hold it yet (it becomes a replica).
    pub fn recoverable_shard(&self, name: &str, shard: ShardId) -> Result<String> {
        let collection = self.collection(name)?;
        if shard >= collection.config().params.shard_number {
            return Err(Error::NotFound(format!("shard {shard} not found")));
        }
        Ok(collection.name().to_string())
    }
}

fn write_shard_archive<W: Write>(
    writer: &mut ArchiveWriter<W>,
    frozen: &crate::shard::FrozenShard,
    peer: u64,
) -> Result<()> {
    layout::write_shard(writer, "", frozen, peer)?;
    layout::write_shard_meta(writer)
}

/// A blocking writer that hands its bytes to an async receiver.
struct ChannelWriter {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "the client stopped reading the snapshot",
                )
            })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
