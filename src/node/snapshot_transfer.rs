//! The `snapshot` shard transfer method: the source streams a snapshot of its replica
//! (segments with their built HNSW graphs, so nothing is re-indexed) to the target over
//! the peer service (`Shards.InstallSnapshot`); the target unpacks it as it arrives,
//! verifies every file against the sha256 the archive's manifest lists for it (the source
//! knows those of immutable files without reading them, see `shard/file_digests.rs`, so
//! neither side hashes the archive as a whole), and swaps it in for its replica with the same atomic directory
//! exchange as a shard recovery (`CollectionRegistry::replace_shard`).
//!
//! # Writes during the transfer
//!
//! The target is Partial, so every write to the shard also reaches it while the snapshot
//! is taken, shipped and unpacked; the swap would throw those writes away. They are kept
//! on the target: from the moment it sees itself as the target of a snapshot transfer (it
//! has applied `StartTransfer`; a peer that sends it a write waits until it has), each
//! write it takes for the shard is applied to its current replica *and* recorded
//! ([`WriteRecorders`]). The install holds the shard's recorder while it swaps the new
//! data in and replays the recorded writes on it, so a write lands either before the swap
//! (recorded, replayed) or after it (on the new data), never in between.
//!
//! Recording on the target rather than queueing on the source keeps the source's write
//! path untouched (it has no transfer-specific state to lose when it restarts) and needs
//! no second channel between the two peers: the writes already travel to the target.
//! Replaying a write that the snapshot already holds is harmless: shard ops are
//! idempotent (an upsert, delete or payload change applied twice leaves the same data).
//! The cost is memory on the target for the writes of one transfer.
//!
//! A write applied on the source before the snapshot was taken but sent by a peer that
//! still saw the target Dead reaches only the source, and is in the snapshot: before
//! taking it, the source asks every peer to confirm that such writes have ended
//! (`Shards.Drain`, see `recovery.rs` and `replication/inflight.rs`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::snapshots::unpack_stream;
use super::{blocking, Node};
use crate::collection::registry::CollectionRegistry;
use crate::consensus::transfer::{ShardTransfer, TransferMethod};
use crate::error::{Error, Result};
use crate::shard::ops::ShardOp;
use crate::snapshot::archive::FileCheck;
use crate::snapshot::layout;
use crate::snapshot::upload::ChannelReader;
use crate::transport::proto::SnapshotChunk;
use crate::types::ShardId;

/// The writes taken for one shard since its snapshot transfer started (or since the
/// last install).
type Recorder = Arc<Mutex<Vec<ShardOp>>>;

/// The writes a target took for each shard it receives a snapshot of.
#[derive(Default)]
pub(crate) struct WriteRecorders {
    shards: Mutex<HashMap<(String, ShardId), Recorder>>,
}

impl WriteRecorders {
    fn recorder(&self, collection: &str, shard: ShardId) -> Recorder {
        self.shards
            .lock()
            .entry((collection.to_string(), shard))
            .or_default()
            .clone()
    }

    /// Forgets the recorders of shards for which `receiving` says no snapshot transfer
    /// to this peer is pending any more.
    pub(crate) fn retain(&self, receiving: impl Fn(&str, ShardId) -> bool) {
        self.shards
            .lock()
            .retain(|(collection, shard), _| receiving(collection, *shard));
    }
}

impl Node {
    /// Whether this peer is the target of a pending snapshot transfer of the shard.
    fn receives_snapshot(&self, collection: &str, shard: ShardId) -> bool {
        self.consensus
            .state()
            .transfer_to(collection, shard, self.consensus.peer_id())
            .is_some_and(|t| t.method == TransferMethod::Snapshot)
    }

    /// Applies a write to this peer's replica of a shard; while the replica receives a
    /// snapshot, the write is recorded too (see the module doc).
    pub(crate) async fn apply_here(
        &self,
        collection: &str,
        shard: ShardId,
        op: ShardOp,
        wait: bool,
    ) -> Result<u64> {
        let registry = self.collections.clone();
        let me = self.consensus.peer_id();
        let collection = collection.to_string();
        if !self.receives_snapshot(&collection, shard) {
            let local = local_replica(&registry, &collection, shard, me)?;
            return blocking(move || local.apply(op, wait)).await;
        }
        let recorder = self.write_recorders.recorder(&collection, shard);
        blocking(move || {
            let mut recorded = recorder.lock();
            // Looked up under the recorder: the install may just have swapped it.
            let local = local_replica(&registry, &collection, shard, me)?;
            let id = local.apply(op.clone(), wait)?;
            recorded.push(op);
            Ok(id)
        })
        .await
    }

    /// The source's side: streams a snapshot of this peer's replica to the transfer's
    /// target and returns the target's point count once it is installed there.
    pub(super) async fn send_snapshot(
        &self,
        collection: &str,
        transfer: &ShardTransfer,
    ) -> Result<u64> {
        let set = self.replica_set(collection, transfer.shard)?;
        let target = self.remote_replica(&set, transfer.to)?;
        let (_, mut archive) =
            self.stream_shard_snapshot(collection, transfer.shard, FileCheck::Crc32)?;
        let header = SnapshotChunk {
            collection: collection.to_string(),
            shard_id: transfer.shard,
            min_applied_index: self.consensus.raft_info().applied,
            crc32_files: true,
            ..SnapshotChunk::default()
        };
        let (tx, rx) = mpsc::channel(4);
        let metrics = self.metrics.clone();
        let feeder = tokio::spawn(async move {
            if tx.send(header).await.is_err() {
                return;
            }
            while let Some(piece) = archive.recv().await {
                let Ok(data) = piece else {
                    // Ends the stream without its last message: the target installs nothing.
                    return;
                };
                metrics
                    .operations
                    .shard_transfer
                    .add_bytes(data.len() as u64);
                let chunk = SnapshotChunk {
                    data,
                    ..SnapshotChunk::default()
                };
                if tx.send(chunk).await.is_err() {
                    return;
                }
            }
            let last = SnapshotChunk {
                last: true,
                ..SnapshotChunk::default()
            };
            let _ = tx.send(last).await;
        });
        let installed = self.shard_clients.install_snapshot(&target, rx).await;
        feeder.abort();
        installed
    }

    /// The target's side of `Shards.InstallSnapshot`: unpacks `archive` next to the
    /// collection, verifying every file against the archive's manifest (as `check` says;
    /// a source that sets no crc32 flag is checked by sha256), checks that
    /// `complete` says the stream was not cut short, swaps it in and replays the writes
    /// recorded meanwhile. Refused unless a snapshot transfer of the shard to this peer
    /// is pending.
    pub async fn install_transferred_snapshot(
        &self,
        collection: &str,
        shard: ShardId,
        min_applied_index: u64,
        archive: ChannelReader,
        check: FileCheck,
        complete: impl Future<Output = bool>,
    ) -> Result<u64> {
        self.replica_here(collection, shard, min_applied_index)
            .await?;
        let me = self.consensus.peer_id();
        if !self.receives_snapshot(collection, shard) {
            return Err(Error::BadRequest(format!(
                "no snapshot transfer of shard {shard} of collection `{collection}` to peer {me} is in progress"
            )));
        }
        let recorder = self.write_recorders.recorder(collection, shard);
        let dir = self
            .collections
            .recovery_dir(&format!("{collection}-shard-{shard}"))?;
        let started = std::time::Instant::now();
        let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let outcome = async {
            let (target, counter) = (dir.clone(), received.clone());
            let unpack = blocking(move || {
                unpack_stream(archive, &target, &counter, None, check).map(drop)
            });
            let (unpacked, complete) = tokio::join!(unpack, complete);
            unpacked?;
            if !complete {
                return Err(Error::BadInput(
                    "the snapshot stream ended before its last message (cut short)".into(),
                ));
            }
            let unpacked = started.elapsed().as_secs_f64();
            let bytes = received.load(std::sync::atomic::Ordering::Relaxed);
            let (registry, dir, name) = (self.collections.clone(), dir.clone(), collection.to_string());
            let config = self.collection(collection)?.config();
            blocking(move || {
                layout::read_shard(&dir, &config)?;
                layout::strip_shard_metadata(&dir)?;
                let mut recorded = recorder.lock();
                registry.replace_shard(&name, shard, &dir)?;
                let local = local_replica(&registry, &name, shard, me)?;
                let replayed = recorded.len();
                for op in recorded.drain(..) {
                    match local.apply(op, false) {
                        Ok(_) => {}
                        // It failed the same way when it was first applied.
                        Err(err) if err.is_user_error() => {
                            tracing::debug!(%err, "a replayed write was refused again")
                        }
                        Err(err) => return Err(err),
                    }
                }
                local.flush()?;
                let seconds = started.elapsed().as_secs_f64();
                tracing::info!(collection = %name, shard, bytes, unpacked, seconds, replayed, "installed a transferred shard snapshot");
                Ok(local.count(None) as u64)
            })
            .await
        }
        .await;
        if dir.exists() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        outcome
    }
}

fn local_replica(
    registry: &CollectionRegistry,
    collection: &str,
    shard: ShardId,
    me: u64,
) -> Result<Arc<crate::shard::LocalShard>> {
    registry
        .get(collection)
        .and_then(|c| c.local_shards().get(&shard).cloned())
        .ok_or_else(|| {
            Error::Service(format!(
                "shard {shard} of collection {collection} is not open on peer {me}"
            ))
        })
}
