//! The durable half of Raft: log entries, hard state, membership, and the applied cluster state,
//! all in one redb file (`<storage_path>/raft.redb`).
//!
//! [`LogStore`] implements [`raft::Storage`] for the `RawNode` that owns it, and offers the few
//! write operations the driver needs. Every write operation is ONE durable redb transaction
//! (redb's default durability fsyncs on commit), so the file never holds half of a Ready:
//!
//! - [`LogStore::persist_ready`]: install a received snapshot, append entries (dropping any
//!   conflicting tail), store the hard state;
//! - [`LogStore::persist_applied`]: the new commit index, the new applied index, the serialized
//!   cluster state, the membership and the address book after a batch of committed entries;
//! - [`LogStore::compact`]: record the snapshot point (index, term, membership) at the applied
//!   index and delete the entries it covers.
//!
//! The in-memory copies (hard state, membership, first/last index, applied index) are updated
//! only after a commit succeeds, so `Storage` reads never see a write that failed.
//!
//! # On-disk tables
//!
//! | table | key → value | content |
//! |---|---|---|
//! | `raft_log` | `u64` index → bytes | prost-0.11 `eraftpb::Entry`; contiguous from `first_index` |
//! | `raft_meta` | `&str` → bytes | `peer_id` (u64 LE), `first_voter` (u64 LE: the group's founding voter, see [`LogStore::first_voter`]), `hard_state` (prost `HardState`), `conf_state` (prost `ConfState`, as of the applied index), `snapshot_meta` (prost `SnapshotMetadata`: the compaction point), `applied` (u64 LE), `cluster_state` (JSON of the applied state) |
//! | `peer_uris` | `u64` peer id → `&str` | the address book, learned from membership changes |
//!
//! # Snapshots
//!
//! Raft asks for a snapshot when a follower is behind the first stored entry. The snapshot is
//! built on demand from what is stored for the applied index: `SnapshotMetadata { index:
//! applied, term: term(applied), conf_state }` with [`SnapshotPayload`] (the cluster state and
//! the address book) as JSON data. It is therefore never older than the compaction point, and
//! always consistent, because applied index, state, membership and addresses are written in
//! the same transaction.
//!
//! Invariants kept on disk: `first_index == snapshot_meta.index + 1`; entries are contiguous;
//! `applied ≤ hard_state.commit ≤ last_index` (the driver stores the hard state before it
//! applies, and the commit index in the same transaction as the applied index).

use std::collections::BTreeMap;
use std::path::Path;

use prost_for_raft::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::types::PeerId;

/// The log: index → prost-encoded `Entry`.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// Small named records; see the module doc.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
/// The address book: peer id → URI.
const PEERS: TableDefinition<u64, &str> = TableDefinition::new("peer_uris");

const KEY_PEER_ID: &str = "peer_id";
const KEY_HARD_STATE: &str = "hard_state";
const KEY_CONF_STATE: &str = "conf_state";
const KEY_SNAPSHOT_META: &str = "snapshot_meta";
const KEY_APPLIED: &str = "applied";
const KEY_CLUSTER_STATE: &str = "cluster_state";
const KEY_FIRST_VOTER: &str = "first_voter";

/// The file name inside the storage directory.
pub const FILE_NAME: &str = "raft.redb";

/// The data of a Raft snapshot: everything a peer needs to replace its applied state.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct SnapshotPayload {
    /// The address book at the snapshot's index.
    pub peers: BTreeMap<PeerId, String>,
    /// The serialized cluster state at the snapshot's index (the state machine's own JSON).
    pub state: serde_json::Value,
}

/// A received snapshot, decoded and checked by the driver, ready to be made durable.
#[derive(Debug, Clone)]
pub struct SnapshotInstall {
    /// Index, term and membership of the snapshot.
    pub metadata: SnapshotMetadata,
    /// JSON of the cluster state it carries.
    pub state_json: Vec<u8>,
    /// The address book it carries.
    pub peers: BTreeMap<PeerId, String>,
}

/// What one batch of applied entries changed; written in one transaction.
#[derive(Debug, Default, Clone)]
pub struct ApplyBatch {
    /// A newer commit index (from a `LightReady`), stored together with the applied index so
    /// that applied ≤ commit holds on disk at every instant.
    pub commit: Option<u64>,
    /// The index of the last entry applied in this batch, if any entry was.
    pub applied: Option<u64>,
    /// The serialized state after the batch, if a normal entry was applied.
    pub state_json: Option<Vec<u8>>,
    /// The membership after the batch, if a conf change was applied.
    pub conf_state: Option<ConfState>,
    /// Address book changes in order: `Some(uri)` sets, `None` removes.
    pub peer_changes: Vec<(PeerId, Option<String>)>,
}

impl ApplyBatch {
    fn is_empty(&self) -> bool {
        self.commit.is_none()
            && self.applied.is_none()
            && self.state_json.is_none()
            && self.conf_state.is_none()
            && self.peer_changes.is_empty()
    }
}

/// Raft storage over redb. Owned by the driver's `RawNode`; see the module doc.
pub struct LogStore {
    db: Database,
    peer_id: PeerId,
    hard_state: HardState,
    conf_state: ConfState,
    /// The compaction point: entries up to `snapshot.index` are gone.
    snapshot: SnapshotMetadata,
    /// Index of the last stored entry, or `snapshot.index` when the log is empty.
    last_index: u64,
    applied: u64,
}

impl LogStore {
    /// Opens `<dir>/raft.redb`, creating the directory, the file and its tables when missing.
    /// A new file gets a random non-zero peer id, persisted before anything else.
    pub fn open(dir: &Path) -> Result<LogStore> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path)
            .map_err(|e| db_error(format!("opening {}", path.display()), e))?;

        // Create the tables and the peer id in one transaction: a crash leaves both or neither.
        let txn = begin_write(&db)?;
        let peer_id = {
            txn.open_table(LOG)
                .map_err(|e| db_error("creating raft_log", e))?;
            txn.open_table(PEERS)
                .map_err(|e| db_error("creating peer_uris", e))?;
            let mut meta = txn
                .open_table(META)
                .map_err(|e| db_error("creating raft_meta", e))?;
            let stored = meta
                .get(KEY_PEER_ID)
                .map_err(|e| db_error("reading peer id", e))?
                .map(|v| decode_u64(v.value()));
            match stored {
                Some(id) => id?,
                None => {
                    let id = new_peer_id();
                    meta.insert(KEY_PEER_ID, id.to_le_bytes().as_slice())
                        .map_err(|e| db_error("storing peer id", e))?;
                    id
                }
            }
        };
        commit(txn, "initializing raft storage")?;

        let mut store = LogStore {
            db,
            peer_id,
            hard_state: HardState::default(),
            conf_state: ConfState::default(),
            snapshot: SnapshotMetadata::default(),
            last_index: 0,
            applied: 0,
        };
        store.load()?;
        Ok(store)
    }

    /// Reads the small records and the log's last index into memory.
    fn load(&mut self) -> Result<()> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| db_error("reading raft storage", e))?;
        let meta = txn
            .open_table(META)
            .map_err(|e| db_error("opening raft_meta", e))?;
        let get = |key: &str| -> Result<Option<Vec<u8>>> {
            let value = meta
                .get(key)
                .map_err(|e| db_error(format!("reading {key}"), e))?;
            Ok(value.map(|v| v.value().to_vec()))
        };
        if let Some(bytes) = get(KEY_HARD_STATE)? {
            self.hard_state = decode_proto(&bytes, KEY_HARD_STATE)?;
        }
        if let Some(bytes) = get(KEY_CONF_STATE)? {
            self.conf_state = decode_proto(&bytes, KEY_CONF_STATE)?;
        }
        if let Some(bytes) = get(KEY_SNAPSHOT_META)? {
            self.snapshot = decode_proto(&bytes, KEY_SNAPSHOT_META)?;
        }
        if let Some(bytes) = get(KEY_APPLIED)? {
            self.applied = decode_u64(&bytes)?;
        }
        let log = txn
            .open_table(LOG)
            .map_err(|e| db_error("opening raft_log", e))?;
        let last = log
            .last()
            .map_err(|e| db_error("reading the last log entry", e))?;
        self.last_index = last.map_or(self.snapshot.index, |(k, _)| k.value());
        Ok(())
    }

    /// This peer's id, chosen at the first start.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The index of the last applied entry (or installed snapshot).
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The stored hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The membership as of the applied index.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// The compaction point: index and term of the last entry the log no longer holds.
    pub fn snapshot_metadata(&self) -> &SnapshotMetadata {
        &self.snapshot
    }

    /// Whether the storage already belongs to a Raft group (has a membership).
    pub fn is_initialized(&self) -> bool {
        self.conf_state != ConfState::default()
    }

    /// Makes a new storage the start of a group with the given voters. Must run before the
    /// `RawNode` is created; refuses to touch an initialized storage.
    pub fn bootstrap(&mut self, voters: Vec<PeerId>) -> Result<()> {
        self.bootstrap_with_peers(voters, &BTreeMap::new())
    }

    /// [`bootstrap`](Self::bootstrap) that also seeds the address book, as a joining peer
    /// does with what the cluster told it: it can answer the leader before its log has
    /// caught up, also after a restart. Entries and snapshots replace the seeds later.
    /// The first of `voters` is recorded as the group's [first voter](Self::first_voter).
    pub fn bootstrap_with_peers(
        &mut self,
        voters: Vec<PeerId>,
        peers: &BTreeMap<PeerId, String>,
    ) -> Result<()> {
        if self.is_initialized() {
            return Err(Error::service(
                "raft storage already belongs to a group; refusing to bootstrap it again",
            ));
        }
        let first_voter = voters.first().copied().unwrap_or(self.peer_id);
        let conf_state = ConfState {
            voters,
            ..Default::default()
        };
        let txn = begin_write(&self.db)?;
        {
            let mut meta = txn
                .open_table(META)
                .map_err(|e| db_error("opening raft_meta", e))?;
            put_proto(&mut meta, KEY_CONF_STATE, &conf_state)?;
            put(&mut meta, KEY_FIRST_VOTER, &first_voter.to_le_bytes())?;
            let mut table = txn
                .open_table(PEERS)
                .map_err(|e| db_error("opening peer_uris", e))?;
            for (id, uri) in peers {
                table
                    .insert(*id, uri.as_str())
                    .map_err(|e| db_error("seeding peer_uris", e))?;
            }
        }
        commit(txn, "storing the initial membership")?;
        self.conf_state = conf_state;
        Ok(())
    }

    /// The voter the group started with: every peer's log begins from a membership of this
    /// one voter, so a joining peer starts from it too. Storages bootstrapped before this was
    /// recorded were all founded by their own peer.
    pub fn first_voter(&self) -> Result<PeerId> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| db_error("reading raft storage", e))?;
        let meta = txn
            .open_table(META)
            .map_err(|e| db_error("opening raft_meta", e))?;
        let value = meta
            .get(KEY_FIRST_VOTER)
            .map_err(|e| db_error("reading the first voter", e))?;
        match value {
            Some(bytes) => decode_u64(bytes.value()),
            None => Ok(self.peer_id),
        }
    }

    /// The applied cluster state as stored (JSON), or `None` before anything was applied.
    pub fn cluster_state_json(&self) -> Result<Option<Vec<u8>>> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| db_error("reading raft storage", e))?;
        let meta = txn
            .open_table(META)
            .map_err(|e| db_error("opening raft_meta", e))?;
        let value = meta
            .get(KEY_CLUSTER_STATE)
            .map_err(|e| db_error("reading the cluster state", e))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// The address book.
    pub fn peers(&self) -> Result<BTreeMap<PeerId, String>> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| db_error("reading raft storage", e))?;
        let table = txn
            .open_table(PEERS)
            .map_err(|e| db_error("opening peer_uris", e))?;
        let mut peers = BTreeMap::new();
        for row in table
            .range::<u64>(..)
            .map_err(|e| db_error("reading peer_uris", e))?
        {
            let (id, uri) = row.map_err(|e| db_error("reading peer_uris", e))?;
            peers.insert(id.value(), uri.value().to_string());
        }
        Ok(peers)
    }

    /// Makes one `Ready` durable: a received snapshot (replacing state, membership, address
    /// book and the whole log), the new entries (replacing any stored entries from the first
    /// new index on), and the hard state. One transaction.
    pub fn persist_ready(
        &mut self,
        snapshot: Option<&SnapshotInstall>,
        entries: &[Entry],
        hard_state: Option<&HardState>,
    ) -> Result<()> {
        if snapshot.is_none() && entries.is_empty() && hard_state.is_none() {
            return Ok(());
        }
        let mut next = Cached::of(self);
        let txn = begin_write(&self.db)?;
        {
            let mut log = txn
                .open_table(LOG)
                .map_err(|e| db_error("opening raft_log", e))?;
            let mut meta = txn
                .open_table(META)
                .map_err(|e| db_error("opening raft_meta", e))?;
            if let Some(install) = snapshot {
                let index = install.metadata.index;
                if index < next.applied {
                    return Err(Error::service(format!(
                        "refusing snapshot at index {index}: index {} is already applied",
                        next.applied
                    )));
                }
                log.retain(|_, _| false)
                    .map_err(|e| db_error("clearing raft_log for a snapshot", e))?;
                let mut peers = txn
                    .open_table(PEERS)
                    .map_err(|e| db_error("opening peer_uris", e))?;
                peers
                    .retain(|_, _| false)
                    .map_err(|e| db_error("clearing peer_uris", e))?;
                for (id, uri) in &install.peers {
                    peers
                        .insert(*id, uri.as_str())
                        .map_err(|e| db_error("storing a peer uri", e))?;
                }
                let conf_state = install.metadata.conf_state.clone().unwrap_or_default();
                put_proto(&mut meta, KEY_SNAPSHOT_META, &install.metadata)?;
                put_proto(&mut meta, KEY_CONF_STATE, &conf_state)?;
                put(&mut meta, KEY_APPLIED, &index.to_le_bytes())?;
                put(&mut meta, KEY_CLUSTER_STATE, &install.state_json)?;
                next.snapshot = install.metadata.clone();
                next.conf_state = conf_state;
                next.applied = index;
                next.last_index = index;
                // As raft's MemStorage does: the snapshot is committed by definition.
                next.hard_state.term = next.hard_state.term.max(install.metadata.term);
                next.hard_state.commit = next.hard_state.commit.max(index);
            }
            if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
                let first_allowed = next.snapshot.index + 1;
                if first.index < first_allowed || first.index > next.last_index + 1 {
                    return Err(Error::service(format!(
                        "appending entries {}..={} would leave a gap or overwrite compacted entries (log holds {}..={})",
                        first.index, last.index, first_allowed, next.last_index
                    )));
                }
                // Entries from the first new index on conflict with the new ones: drop them.
                log.retain_in(first.index.., |_, _| false)
                    .map_err(|e| db_error("truncating raft_log", e))?;
                for entry in entries {
                    log.insert(entry.index, entry.encode_to_vec().as_slice())
                        .map_err(|e| db_error("appending to raft_log", e))?;
                }
                next.last_index = last.index;
            }
            if let Some(hs) = hard_state {
                next.hard_state = hs.clone();
            }
            if hard_state.is_some() || snapshot.is_some() {
                put_proto(&mut meta, KEY_HARD_STATE, &next.hard_state)?;
            }
        }
        commit(txn, "persisting raft log and hard state")?;
        next.store_into(self);
        Ok(())
    }

    /// Makes the outcome of a batch of applied entries durable in one transaction.
    pub fn persist_applied(&mut self, batch: ApplyBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut next = Cached::of(self);
        if let Some(commit) = batch.commit {
            next.hard_state.commit = next.hard_state.commit.max(commit);
        }
        if let Some(applied) = batch.applied {
            if applied > next.hard_state.commit {
                return Err(Error::service(format!(
                    "refusing to store applied index {applied} above the commit index {}",
                    next.hard_state.commit
                )));
            }
            next.applied = applied;
        }
        let txn = begin_write(&self.db)?;
        {
            let mut meta = txn
                .open_table(META)
                .map_err(|e| db_error("opening raft_meta", e))?;
            if batch.commit.is_some() {
                put_proto(&mut meta, KEY_HARD_STATE, &next.hard_state)?;
            }
            if batch.applied.is_some() {
                put(&mut meta, KEY_APPLIED, &next.applied.to_le_bytes())?;
            }
            if let Some(state) = &batch.state_json {
                put(&mut meta, KEY_CLUSTER_STATE, state)?;
            }
            if let Some(conf_state) = batch.conf_state {
                put_proto(&mut meta, KEY_CONF_STATE, &conf_state)?;
                next.conf_state = conf_state;
            }
            let mut peers = txn
                .open_table(PEERS)
                .map_err(|e| db_error("opening peer_uris", e))?;
            for (id, uri) in &batch.peer_changes {
                match uri {
                    Some(uri) => peers.insert(*id, uri.as_str()).map(drop),
                    None => peers.remove(*id).map(drop),
                }
                .map_err(|e| db_error("updating peer_uris", e))?;
            }
        }
        commit(txn, "persisting applied state")?;
        next.store_into(self);
        Ok(())
    }

    /// Compacts the log up to the applied index: records the snapshot point (applied index, its
    /// term, the current membership) and deletes every entry it covers. One transaction.
    /// Returns the new first index.
    pub fn compact(&mut self) -> Result<u64> {
        let index = self.applied;
        if index <= self.snapshot.index {
            return Ok(self.snapshot.index + 1);
        }
        let term = self
            .term(index)
            .map_err(|e| Error::service(format!("compacting to {index}: {e}")))?;
        let metadata = SnapshotMetadata {
            conf_state: Some(self.conf_state.clone()),
            index,
            term,
        };
        let txn = begin_write(&self.db)?;
        {
            let mut log = txn
                .open_table(LOG)
                .map_err(|e| db_error("opening raft_log", e))?;
            log.retain_in(..=index, |_, _| false)
                .map_err(|e| db_error("compacting raft_log", e))?;
            let mut meta = txn
                .open_table(META)
                .map_err(|e| db_error("opening raft_meta", e))?;
            put_proto(&mut meta, KEY_SNAPSHOT_META, &metadata)?;
        }
        commit(txn, "compacting the raft log")?;
        self.snapshot = metadata;
        self.last_index = self.last_index.max(index);
        Ok(index + 1)
    }

    fn read_entries(&self, low: u64, high: u64, max_size: Option<u64>) -> Result<Vec<Entry>> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| db_error("reading raft storage", e))?;
        let log = txn
            .open_table(LOG)
            .map_err(|e| db_error("opening raft_log", e))?;
        let mut entries = Vec::with_capacity((high - low).min(1024) as usize);
        let mut size = 0u64;
        for row in log
            .range(low..high)
            .map_err(|e| db_error("reading raft_log", e))?
        {
            let (index, bytes) = row.map_err(|e| db_error("reading raft_log", e))?;
            let bytes = bytes.value();
            size += bytes.len() as u64;
            // Honour max_size, but always return at least one entry.
            if !entries.is_empty() && max_size.is_some_and(|max| size > max) {
                break;
            }
            let entry: Entry = decode_proto(bytes, "raft_log entry")?;
            if entry.index != index.value() || entry.index != low + entries.len() as u64 {
                return Err(Error::service(format!(
                    "raft_log is not contiguous at index {}",
                    index.value()
                )));
            }
            entries.push(entry);
        }
        if entries.is_empty() && low < high {
            return Err(Error::service(format!(
                "raft_log has no entry at index {low}"
            )));
        }
        Ok(entries)
    }

    fn read_term(&self, index: u64) -> Result<Option<u64>> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| db_error("reading raft storage", e))?;
        let log = txn
            .open_table(LOG)
            .map_err(|e| db_error("opening raft_log", e))?;
        let value = log
            .get(index)
            .map_err(|e| db_error("reading raft_log", e))?;
        match value {
            Some(bytes) => Ok(Some(
                decode_proto::<Entry>(bytes.value(), "raft_log entry")?.term,
            )),
            None => Ok(None),
        }
    }

    /// Builds the snapshot at the applied index from stored data (see the module doc).
    fn build_snapshot(&self) -> Result<Snapshot> {
        let index = self.applied;
        let term = self
            .term(index)
            .map_err(|e| Error::service(format!("term of applied index {index}: {e}")))?;
        let state = match self.cluster_state_json()? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| Error::service(format!("stored cluster state is not JSON: {e}")))?,
            None => serde_json::Value::Null,
        };
        let payload = SnapshotPayload {
            peers: self.peers()?,
            state,
        };
        let data = serde_json::to_vec(&payload)
            .map_err(|e| Error::service(format!("encoding a snapshot: {e}")))?;
        let metadata = SnapshotMetadata {
            conf_state: Some(self.conf_state.clone()),
            index,
            term,
        };
        Ok(Snapshot {
            data,
            metadata: Some(metadata),
        })
    }
}

impl Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.snapshot.index + 1 {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        self.read_entries(low, high, max_size.into())
            .map_err(into_raft)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snapshot.index {
            return Ok(self.snapshot.term);
        }
        if idx < self.snapshot.index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last_index {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        match self.read_term(idx).map_err(into_raft)? {
            Some(term) => Ok(term),
            None => Err(raft::Error::Store(StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.snapshot.index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index)
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.applied < request_index {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        self.build_snapshot().map_err(into_raft)
    }
}

/// The in-memory copies, staged while a transaction is built and stored after it commits.
struct Cached {
    hard_state: HardState,
    conf_state: ConfState,
    snapshot: SnapshotMetadata,
    last_index: u64,
    applied: u64,
}

impl Cached {
    fn of(store: &LogStore) -> Cached {
        Cached {
            hard_state: store.hard_state.clone(),
            conf_state: store.conf_state.clone(),
            snapshot: store.snapshot.clone(),
            last_index: store.last_index,
            applied: store.applied,
        }
    }

    fn store_into(self, store: &mut LogStore) {
        store.hard_state = self.hard_state;
        store.conf_state = self.conf_state;
        store.snapshot = self.snapshot;
        store.last_index = self.last_index;
        store.applied = self.applied;
    }
}

fn new_peer_id() -> PeerId {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return id;
        }
    }
}

fn begin_write(db: &Database) -> Result<WriteTransaction> {
    db.begin_write()
        .map_err(|e| db_error("starting a raft storage transaction", e))
}

fn commit(txn: WriteTransaction, what: &str) -> Result<()> {
    txn.commit().map_err(|e| db_error(what, e))
}

fn put(table: &mut redb::Table<'_, &str, &[u8]>, key: &str, value: &[u8]) -> Result<()> {
    table
        .insert(key, value)
        .map_err(|e| db_error(format!("storing {key}"), e))?;
    Ok(())
}

fn put_proto(
    table: &mut redb::Table<'_, &str, &[u8]>,
    key: &str,
    value: &impl prost_for_raft::Message,
) -> Result<()> {
    put(table, key, &value.encode_to_vec())
}

fn decode_proto<M: prost_for_raft::Message + Default>(bytes: &[u8], what: &str) -> Result<M> {
    M::decode(bytes).map_err(|e| Error::service(format!("corrupt {what} in raft storage: {e}")))
}

fn decode_u64(bytes: &[u8]) -> Result<u64> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| {
        Error::service(format!(
            "corrupt integer in raft storage ({} bytes)",
            bytes.len()
        ))
    })?;
    Ok(u64::from_le_bytes(array))
}

/// Maps any redb error to shoal's error, keeping a full disk visible as such.
fn db_error(context: impl std::fmt::Display, err: impl Into<redb::Error>) -> Error {
    match err.into() {
        redb::Error::Io(io) => Error::io(format!("raft storage: {context}"), io),
        other => Error::Service(format!("raft storage: {context}: {other}")),
    }
}

fn into_raft(err: Error) -> raft::Error {
    raft::Error::Store(StorageError::Other(Box::new(err)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: format!("e{index}").into_bytes(),
            ..Default::default()
        }
    }

    fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
        range.map(|i| entry(i, term)).collect()
    }

    fn ctx() -> GetEntriesContext {
        GetEntriesContext::empty(false)
    }

    fn hs(term: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote: 0,
            commit,
        }
    }

    fn is_compacted<T: std::fmt::Debug>(r: raft::Result<T>) -> bool {
        matches!(r, Err(raft::Error::Store(StorageError::Compacted)))
    }

    #[test]
    fn new_storage_is_empty_and_keeps_its_peer_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        let id = store.peer_id();
        assert_ne!(id, 0);
        assert!(!store.is_initialized());
        assert_eq!(store.first_index().unwrap(), 1);
        assert_eq!(store.last_index().unwrap(), 0);
        assert_eq!(store.term(0).unwrap(), 0);
        drop(store);
        assert_eq!(LogStore::open(dir.path()).unwrap().peer_id(), id);
    }

    #[test]
    fn a_joining_peer_is_seeded_with_the_first_voter_and_the_addresses() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        let me = store.peer_id();
        // Before any bootstrap, and for storages from before it was recorded: itself.
        assert_eq!(store.first_voter().unwrap(), me);
        let first = me.wrapping_add(1).max(1);
        let peers = BTreeMap::from([
            (first, "http://a:6335".to_string()),
            (me, "http://b:6335".to_string()),
        ]);
        store.bootstrap_with_peers(vec![first], &peers).unwrap();
        assert!(store.bootstrap(vec![me]).is_err(), "bootstraps once");
        drop(store);

        let store = LogStore::open(dir.path()).unwrap();
        assert!(store.is_initialized());
        assert_eq!(store.conf_state().voters, vec![first]);
        assert_eq!(store.first_voter().unwrap(), first);
        assert_eq!(store.peers().unwrap(), peers);
        assert_eq!(store.last_index().unwrap(), 0, "the log starts empty");
    }

    #[test]
    fn storage_contract_before_and_after_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        store.bootstrap(vec![store.peer_id()]).unwrap();
        store
            .persist_ready(None, &entries(1..=5, 1), Some(&hs(1, 5)))
            .unwrap();
        store
            .persist_ready(None, &entries(6..=10, 2), Some(&hs(2, 10)))
            .unwrap();

        assert_eq!(store.first_index().unwrap(), 1);
        assert_eq!(store.last_index().unwrap(), 10);
        assert_eq!(store.term(5).unwrap(), 1);
        assert_eq!(store.term(6).unwrap(), 2);
        assert!(store.term(11).is_err());
        let got = store.entries(3, 7, None, ctx()).unwrap();
        assert_eq!(
            got.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![3, 4, 5, 6]
        );
        // max_size is honoured, but at least one entry comes back.
        assert_eq!(store.entries(3, 7, 0, ctx()).unwrap().len(), 1);
        let two = (got[0].encode_to_vec().len() + got[1].encode_to_vec().len()) as u64;
        assert_eq!(store.entries(3, 7, two, ctx()).unwrap().len(), 2);
        assert!(store.entries(3, 12, None, ctx()).is_err());

        store
            .persist_applied(ApplyBatch {
                applied: Some(7),
                state_json: Some(b"{}".to_vec()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(store.compact().unwrap(), 8);
        assert_eq!(store.first_index().unwrap(), 8);
        assert_eq!(store.last_index().unwrap(), 10);
        assert_eq!(
            store.term(7).unwrap(),
            2,
            "the snapshot's term answers for its index"
        );
        assert!(is_compacted(store.term(6)));
        assert!(is_compacted(store.entries(7, 9, None, ctx())));
        assert_eq!(store.entries(8, 11, None, ctx()).unwrap().len(), 3);

        // Everything survives a reopen.
        drop(store);
        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(store.first_index().unwrap(), 8);
        assert_eq!(store.last_index().unwrap(), 10);
        assert_eq!(store.term(7).unwrap(), 2);
        assert_eq!(store.applied(), 7);
        assert_eq!(store.initial_state().unwrap().hard_state, hs(2, 10));
        assert_eq!(
            store.initial_state().unwrap().conf_state.voters,
            vec![store.peer_id()]
        );
    }

    #[test]
    fn compacting_everything_leaves_an_empty_log_at_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        store.bootstrap(vec![1]).unwrap();
        store
            .persist_ready(None, &entries(1..=4, 3), Some(&hs(3, 4)))
            .unwrap();
        store
            .persist_applied(ApplyBatch {
                applied: Some(4),
                ..Default::default()
            })
            .unwrap();
        store.compact().unwrap();
        assert_eq!(store.first_index().unwrap(), 5);
        assert_eq!(store.last_index().unwrap(), 4);
        assert_eq!(store.term(4).unwrap(), 3);
        drop(store);
        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(
            (store.first_index().unwrap(), store.last_index().unwrap()),
            (5, 4)
        );
    }

    #[test]
    fn appending_replaces_a_conflicting_tail_and_refuses_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        store.persist_ready(None, &entries(1..=5, 1), None).unwrap();
        store.persist_ready(None, &entries(3..=3, 2), None).unwrap();
        assert_eq!(store.last_index().unwrap(), 3);
        assert_eq!(store.term(3).unwrap(), 2);
        assert!(store.persist_ready(None, &entries(5..=6, 2), None).is_err());
        assert_eq!(
            store.last_index().unwrap(),
            3,
            "a refused append changes nothing"
        );
    }

    #[test]
    fn applied_index_never_passes_the_commit_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        store
            .persist_ready(None, &entries(1..=3, 1), Some(&hs(1, 2)))
            .unwrap();
        assert!(store
            .persist_applied(ApplyBatch {
                applied: Some(3),
                ..Default::default()
            })
            .is_err());
        store
            .persist_applied(ApplyBatch {
                commit: Some(3),
                applied: Some(3),
                ..Default::default()
            })
            .unwrap();
        assert_eq!((store.hard_state().commit, store.applied()), (3, 3));
    }

    #[test]
    fn snapshots_carry_the_applied_state_and_install_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        store.bootstrap(vec![7]).unwrap();
        store
            .persist_ready(None, &entries(1..=3, 1), Some(&hs(1, 3)))
            .unwrap();
        assert!(matches!(
            store.snapshot(1, 2),
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        ));
        store
            .persist_applied(ApplyBatch {
                applied: Some(2),
                state_json: Some(br#"{"a":1}"#.to_vec()),
                peer_changes: vec![(7, Some("http://a:6335".into()))],
                ..Default::default()
            })
            .unwrap();
        let snap = store.snapshot(2, 2).unwrap();
        let meta = snap.metadata.clone().unwrap();
        assert_eq!((meta.index, meta.term), (2, 1));
        assert_eq!(meta.conf_state.unwrap().voters, vec![7]);
        let payload: SnapshotPayload = serde_json::from_slice(&snap.data).unwrap();
        assert_eq!(payload.state, serde_json::json!({"a": 1}));
        assert_eq!(
            payload.peers.get(&7).map(String::as_str),
            Some("http://a:6335")
        );

        // Install it on a peer that has an unrelated log.
        let other_dir = tempfile::tempdir().unwrap();
        let mut other = LogStore::open(other_dir.path()).unwrap();
        other
            .persist_ready(None, &entries(1..=1, 1), Some(&hs(1, 1)))
            .unwrap();
        let install = SnapshotInstall {
            metadata: snap.metadata.clone().unwrap(),
            state_json: serde_json::to_vec(&payload.state).unwrap(),
            peers: payload.peers.clone(),
        };
        other
            .persist_ready(Some(&install), &entries(3..=3, 1), None)
            .unwrap();
        assert_eq!(
            (other.first_index().unwrap(), other.last_index().unwrap()),
            (3, 3)
        );
        assert_eq!(other.applied(), 2);
        assert_eq!(other.hard_state().commit, 2);
        assert_eq!(other.conf_state().voters, vec![7]);
        assert_eq!(other.peers().unwrap(), payload.peers);
        assert_eq!(
            other.cluster_state_json().unwrap().unwrap(),
            br#"{"a":1}"#.to_vec()
        );
        assert!(is_compacted(other.entries(2, 3, None, ctx())));
    }
}
