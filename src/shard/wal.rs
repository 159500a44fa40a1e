//! The shard's write-ahead log: numbered append-only files of CRC-checked records.
//!
//! On disk: `wal/<first seq, 12 digits>.log`, each a sequence of records
//! `[len u32][crc32 u32][payload]` where payload is [`ops::encode`] of `(seq, op)` and the
//! CRC covers the payload. Sequence numbers strictly increase across files. A file's
//! name is a lower bound of the sequence numbers it holds, so file `i` holds only
//! numbers below the name of file `i + 1`.
//!
//! Invariants:
//! - only the newest file is written to; a file is fsynced before the next is created
//!   ("rotation"), so every older file is complete and durable;
//! - a failed append is rolled back (the file is truncated to its previous length), so
//!   the log never holds a half record it did not crash in the middle of; if even the
//!   rollback fails the log refuses further appends until reopened;
//! - a failed `fsync` also makes the log refuse appends (and every durable write waiting
//!   for a sync fails) until reopened: Linux may drop the unwritten pages and report the
//!   next `fsync` as a success, so nothing written since the last good sync can be
//!   acknowledged as durable any more. Reopening replays what really is on disk;
//! - on open, a torn or corrupt tail of the newest file (a crash mid-write) is truncated
//!   away; damage in an older file is an error, because records after it would be lost.
//!
//! Durability: [`SyncGate`] lets concurrent durable writers share one `fsync` (group commit).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::shard::names::ShardFileName;
use crate::shard::ops::{self, ShardOp};
use crate::shard::{file_digests, files};

pub use crate::shard::names::WAL_DIR;
/// A file grows to about this size before appends move to a new one.
const MAX_FILE_BYTES: u64 = 64 << 20;
/// Larger records are treated as corruption when reading.
const MAX_RECORD_BYTES: usize = 1 << 30;
const HEADER: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
struct WalFile {
    first_seq: u64,
    name: ShardFileName,
    path: PathBuf,
}

impl WalFile {
    fn new(shard_dir: &Path, name: ShardFileName) -> WalFile {
        WalFile {
            first_seq: name.number(),
            path: name.path(shard_dir),
            name,
        }
    }
}

pub struct Wal {
    /// The shard directory.
    shard_dir: PathBuf,
    dir: PathBuf,
    /// Every file on disk, oldest first; the last is the one appended to.
    files: Vec<WalFile>,
    current: Arc<File>,
    current_len: u64,
    last_seq: u64,
    broken: Option<String>,
    scratch: Vec<u8>,
    /// sha256 of the current file, when this process wrote all of it; remembered for
    /// snapshots when the file is closed (`file_digests.rs`).
    current_sha256: Option<Sha256>,
}

/// What [`Wal::open`] found.
pub struct Replayed {
    pub wal: Wal,
    /// Highest sequence number in the log (0 if none).
    pub last_seq: u64,
}

/// The bare name (inside `wal/`) of the file whose first sequence number is `first_seq`.
pub fn file_name(first_seq: u64) -> String {
    ShardFileName::wal(first_seq)
        .as_str()
        .trim_start_matches("wal/")
        .to_string()
}

impl Wal {
    /// Opens (or creates) the WAL under `shard_dir`, hands every record with
    /// `seq >= start` to `replay` in order, and truncates a torn tail. An error from
    /// `replay` (an op that fails validation) ends the replay with that error.
    pub fn open(
        shard_dir: &Path,
        start: u64,
        mut replay: impl FnMut(u64, ShardOp) -> Result<()>,
    ) -> Result<Replayed> {
        let dir = shard_dir.join(WAL_DIR);
        fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let mut files = list_files(shard_dir, &dir)?;
        let mut last_seq = 0;
        let count = files.len();
        for (i, f) in files.iter().enumerate() {
            let is_last = i + 1 == count;
            last_seq = read_file(f, is_last, last_seq, &mut |seq, op| {
                if seq >= start {
                    replay(seq, op)
                } else {
                    Ok(())
                }
            })?;
        }
        let next = last_seq.max(start.saturating_sub(1)) + 1;
        if files.is_empty() {
            files.push(WalFile::new(shard_dir, ShardFileName::wal(next)));
        }
        let current_path = files.last().map(|f| f.path.clone()).unwrap_or_default();
        let current = open_append(&current_path)?;
        let current_len = current
            .metadata()
            .map_err(|e| Error::io("reading WAL file size", e))?
            .len();
        files::fsync_dir(&dir).map_err(|e| Error::io("syncing WAL directory", e))?;
        let wal = Wal {
            shard_dir: shard_dir.to_path_buf(),
            dir,
            files,
            current: Arc::new(current),
            current_len,
            last_seq: next - 1,
            broken: None,
            scratch: Vec::new(),
            current_sha256: (current_len == 0).then(Sha256::new),
        };
        Ok(Replayed { wal, last_seq })
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Files on disk, including the one appended to.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Appends one record. On error nothing of it stays in the log.
    pub fn append(&mut self, seq: u64, op: &ShardOp) -> Result<()> {
        if let Some(why) = &self.broken {
            return Err(Error::Service(format!(
                "WAL is unusable until the shard is reopened: {why}"
            )));
        }
        debug_assert!(seq > self.last_seq, "sequence numbers must increase");
        if self.current_len >= MAX_FILE_BYTES {
            self.rotate()?;
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(&[0u8; HEADER]);
        ops::encode(seq, op, &mut self.scratch);
        let len = (self.scratch.len() - HEADER) as u32;
        let crc = crc32fast::hash(&self.scratch[HEADER..]);
        self.scratch[..4].copy_from_slice(&len.to_le_bytes());
        self.scratch[4..8].copy_from_slice(&crc.to_le_bytes());
        if let Err(e) = (&*self.current).write_all(&self.scratch) {
            self.roll_back();
            return Err(Error::io("writing WAL record", e));
        }
        self.current_len += self.scratch.len() as u64;
        if let Some(hasher) = &mut self.current_sha256 {
            hasher.update(&self.scratch);
        }
        self.last_seq = seq;
        if self.scratch.capacity() > 4 << 20 {
            self.scratch = Vec::new();
        }
        Ok(())
    }

    /// Refuses appends from now on: see the module doc on failed syncs.
    fn mark_sync_failed(&mut self, err: &io::Error) {
        self.broken
            .get_or_insert_with(|| format!("an fsync of the log failed ({err}); records since the last good sync may not be on disk"));
    }

    fn roll_back(&mut self) {
        if let Err(e) = self.current.set_len(self.current_len) {
            self.broken = Some(format!("could not roll back a failed write: {e}"));
        }
    }

    /// Closes the current file (fsync) and starts a new one, unless the current file is
    /// empty. Afterwards every record so far is in a closed, durable file.
    pub fn rotate(&mut self) -> Result<()> {
        if self.current_len == 0 {
            return Ok(());
        }
        if let Err(e) = self.current.sync_data() {
            self.mark_sync_failed(&e);
            return Err(Error::io("syncing WAL file", e));
        }
        if let Some(hasher) = self.current_sha256.take() {
            file_digests::remember_file(&self.current, file_digests::hex(hasher));
        }
        let next = WalFile::new(&self.shard_dir, ShardFileName::wal(self.last_seq + 1));
        let path = next.path.clone();
        let file = open_append(&path)?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("reading WAL file size", e))?
            .len();
        if len != 0 {
            return Err(Error::Service(format!(
                "WAL file {} exists already and is not empty",
                path.display()
            )));
        }
        files::fsync_dir(&self.dir).map_err(|e| Error::io("syncing WAL directory", e))?;
        self.files.push(next);
        self.current = Arc::new(file);
        self.current_len = 0;
        self.current_sha256 = Some(Sha256::new());
        Ok(())
    }

    /// Makes appends go to `file` (tests use `/dev/full` to simulate a full disk).
    #[cfg(test)]
    fn redirect_for_test(&mut self, file: File) {
        self.current = Arc::new(file);
        self.current_sha256 = None;
    }

    /// The file to fsync to make everything up to the returned sequence number durable.
    pub fn sync_target(&self) -> (Arc<File>, u64) {
        (self.current.clone(), self.last_seq)
    }

    /// Closed files that hold records with `seq >= start`, as paths relative to the
    /// shard directory.
    pub fn closed_files_from(&self, start: u64) -> Vec<ShardFileName> {
        let closed = &self.files[..self.files.len() - 1];
        closed
            .iter()
            .enumerate()
            .filter(|(i, _)| self.files[i + 1].first_seq > start)
            .map(|(_, f)| f.name.clone())
            .collect()
    }

    /// Forgets the closed files whose records all have `seq < start` and returns them
    /// (relative paths) for the caller to delete.
    pub fn take_files_before(&mut self, start: u64) -> Vec<ShardFileName> {
        let mut gone = Vec::new();
        while self.files.len() > 1 && self.files[1].first_seq <= start {
            gone.push(self.files.remove(0).name);
        }
        gone
    }
}

fn open_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening WAL file {}", path.display()), e))
}

/// Reads every record of the WAL under `shard_dir` without changing anything (no file is
/// created or truncated), handing those with `seq >= start` to `visit`. Used to check
/// received shard data before it is opened: a torn or corrupt record anywhere is an
/// error, as is a sequence number at or beyond [`crate::shard::manifest::MAX_COUNTER`].
/// Returns the highest sequence number (0 if none).
pub fn scan(
    shard_dir: &Path,
    start: u64,
    mut visit: impl FnMut(u64, ShardOp) -> Result<()>,
) -> Result<u64> {
    let dir = shard_dir.join(WAL_DIR);
    if !dir.exists() {
        return Ok(0);
    }
    let mut last_seq = 0;
    for f in list_files(shard_dir, &dir)? {
        last_seq = read_file(&f, false, last_seq, &mut |seq, op| {
            if seq >= crate::shard::manifest::MAX_COUNTER {
                return Err(Error::BadInput(format!(
                    "sequence number {seq} is out of range"
                )));
            }
            if seq >= start {
                visit(seq, op)
            } else {
                Ok(())
            }
        })?;
    }
    Ok(last_seq)
}

/// The WAL files in `dir`; entries that are not WAL file names are left alone.
fn list_files(shard_dir: &Path, dir: &Path) -> Result<Vec<WalFile>> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io("listing WAL directory", e))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| Error::io("listing WAL directory", e))?
            .path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if let Ok(name) = ShardFileName::wal_entry(name) {
            files.push(WalFile::new(shard_dir, name));
        }
    }
    files.sort_by_key(|f| f.first_seq);
    Ok(files)
}

/// Reads one file's records; returns the last sequence number seen. A bad tail is
/// truncated in the newest file and an error in any other.
fn read_file(
    f: &WalFile,
    is_last: bool,
    mut last_seq: u64,
    apply: &mut dyn FnMut(u64, ShardOp) -> Result<()>,
) -> Result<u64> {
    let file =
        File::open(&f.path).map_err(|e| Error::io(format!("opening {}", f.path.display()), e))?;
    let mut r = BufReader::with_capacity(1 << 20, file);
    let mut pos: u64 = 0;
    loop {
        match read_record(&mut r) {
            Ok(None) => return Ok(last_seq),
            Ok(Some((payload, size))) => {
                let (seq, op) = ops::decode(&payload).map_err(|e| {
                    Error::Service(format!(
                        "undecodable WAL record in {} at {pos}: {e}",
                        f.name
                    ))
                })?;
                if seq <= last_seq {
                    return Err(Error::Service(format!(
                        "WAL record {seq} in {} does not follow {last_seq}",
                        f.name
                    )));
                }
                apply(seq, op).map_err(|e| {
                    Error::BadInput(format!(
                        "Invalid shard data: WAL record {seq} in {}: {e}",
                        f.name
                    ))
                })?;
                last_seq = seq;
                pos += size;
            }
            Err(why) if is_last => {
                tracing::warn!(file = %f.path.display(), offset = pos, %why, "truncating torn WAL tail");
                truncate(&f.path, pos)?;
                return Ok(last_seq);
            }
            Err(why) => {
                return Err(Error::Service(format!(
                    "corrupt WAL file {} at offset {pos}: {why}",
                    f.name
                )))
            }
        }
    }
}

/// `Ok(None)` at a clean end of file; `Err` for a torn or corrupt record.
fn read_record(r: &mut dyn Read) -> std::result::Result<Option<(Vec<u8>, u64)>, String> {
    let mut header = [0u8; HEADER];
    let got = read_full(r, &mut header).map_err(|e| e.to_string())?;
    if got == 0 {
        return Ok(None);
    }
    if got < HEADER {
        return Err("partial record header".into());
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_RECORD_BYTES {
        return Err(format!("record length {len} is implausible"));
    }
    let payload = files::read_vec(r, len).map_err(|e| format!("partial record: {e}"))?;
    if crc32fast::hash(&payload) != crc {
        return Err("record checksum mismatch".into());
    }
    Ok(Some((payload, (HEADER + len) as u64)))
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn truncate(path: &Path, len: u64) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io("opening WAL to truncate", e))?;
    file.set_len(len)
        .map_err(|e| Error::io("truncating torn WAL tail", e))?;
    file.sync_all()
        .map_err(|e| Error::io("syncing truncated WAL", e))
}

/// Group commit: the first durable writer to arrive fsyncs for everyone queued behind it.
#[derive(Default)]
pub struct SyncGate {
    state: Mutex<GateState>,
    done: Condvar,
}

#[derive(Default)]
struct GateState {
    synced: u64,
    syncing: bool,
    /// Set by a failed sync; what was not synced before it never will be by this log.
    failed: Option<String>,
}

impl SyncGate {
    /// Returns once every record up to `seq` is on stable storage.
    pub fn wait_durable(&self, seq: u64, wal: &Mutex<Wal>) -> Result<()> {
        let mut g = self.state.lock();
        loop {
            if g.synced >= seq {
                return Ok(());
            }
            if let Some(why) = &g.failed {
                return Err(Error::Service(format!(
                    "the write may not be durable; the WAL is unusable until the shard is reopened: {why}"
                )));
            }
            if g.syncing {
                self.done.wait(&mut g);
                continue;
            }
            g.syncing = true;
            let (file, upto) =
                parking_lot::MutexGuard::unlocked(&mut g, || wal.lock().sync_target());
            let result = parking_lot::MutexGuard::unlocked(&mut g, || file.sync_data());
            g.syncing = false;
            match &result {
                Ok(()) => g.synced = g.synced.max(upto),
                Err(e) => {
                    g.failed = Some(format!("an fsync of the log failed ({e})"));
                    parking_lot::MutexGuard::unlocked(&mut g, || wal.lock().mark_sync_failed(e));
                }
            }
            self.done.notify_all();
            result.map_err(|e| Error::io("syncing WAL", e))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::ops::PointSelector;
    use crate::types::PointId;

    fn op(i: u64) -> ShardOp {
        ShardOp::Delete(PointSelector::Ids(vec![PointId::Num(i)]))
    }

    fn replay_all(dir: &Path, start: u64) -> (Vec<u64>, Wal) {
        let mut seen = Vec::new();
        let r = Wal::open(dir, start, |seq, o| {
            assert_eq!(o, op(seq));
            seen.push(seq);
            Ok(())
        })
        .unwrap();
        (seen, r.wal)
    }

    #[test]
    fn records_survive_reopen_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut wal) = replay_all(dir.path(), 1);
        for seq in 1..=3 {
            wal.append(seq, &op(seq)).unwrap();
        }
        wal.rotate().unwrap();
        wal.append(4, &op(4)).unwrap();
        assert_eq!(wal.closed_files_from(1), vec![ShardFileName::wal(1)]);
        assert!(wal.closed_files_from(4).is_empty());
        drop(wal);
        let (seen, mut wal) = replay_all(dir.path(), 2);
        assert_eq!(seen, vec![2, 3, 4]);
        assert_eq!(wal.last_seq(), 4);
        assert_eq!(wal.take_files_before(4), vec![ShardFileName::wal(1)]);
    }

    #[test]
    fn torn_tail_is_truncated_and_earlier_records_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut wal) = replay_all(dir.path(), 1);
        for seq in 1..=3 {
            wal.append(seq, &op(seq)).unwrap();
        }
        drop(wal);
        let path = dir.path().join(WAL_DIR).join(file_name(1));
        let full = fs::metadata(&path).unwrap().len();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(full - 3).unwrap();
        drop(file);
        let (seen, mut wal) = replay_all(dir.path(), 1);
        assert_eq!(seen, vec![1, 2]);
        wal.append(3, &op(3)).unwrap();
        drop(wal);
        let (seen, _) = replay_all(dir.path(), 1);
        assert_eq!(
            seen,
            vec![1, 2, 3],
            "appends after a truncated tail are readable"
        );
    }

    #[test]
    fn garbage_tail_is_truncated_but_damage_in_closed_files_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut wal) = replay_all(dir.path(), 1);
        wal.append(1, &op(1)).unwrap();
        wal.rotate().unwrap();
        wal.append(2, &op(2)).unwrap();
        drop(wal);
        let newest = dir.path().join(WAL_DIR).join(file_name(2));
        let mut f = OpenOptions::new().append(true).open(&newest).unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2, 3, 4, 5]).unwrap();
        drop(f);
        let (seen, wal) = replay_all(dir.path(), 1);
        assert_eq!(seen, vec![1, 2]);
        drop(wal);
        let oldest = dir.path().join(WAL_DIR).join(file_name(1));
        let mut bytes = fs::read(&oldest).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&oldest, bytes).unwrap();
        let err = Wal::open(dir.path(), 1, |_, _| Ok(())).err().unwrap();
        assert!(err.to_string().contains("corrupt WAL file"), "{err}");
    }

    #[test]
    fn a_full_disk_is_507_and_leaves_the_log_readable() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut wal) = replay_all(dir.path(), 1);
        wal.append(1, &op(1)).unwrap();
        let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
        wal.redirect_for_test(full);
        let err = wal.append(2, &op(2)).unwrap_err();
        assert!(matches!(err, Error::InsufficientStorage(_)), "{err}");
        // /dev/full cannot be truncated, so the rollback fails and the log refuses further
        // appends until reopened rather than risk leaving a half record.
        let again = wal.append(2, &op(2)).unwrap_err();
        assert!(
            again
                .to_string()
                .contains("unusable until the shard is reopened"),
            "{again}"
        );
        drop(wal);
        let (seen, mut wal) = replay_all(dir.path(), 1);
        assert_eq!(seen, vec![1]);
        wal.append(2, &op(2)).unwrap();
    }

    #[test]
    fn a_failed_fsync_refuses_every_later_write_until_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut wal) = replay_all(dir.path(), 1);
        wal.append(1, &op(1)).unwrap();
        let gate = SyncGate::default();
        let wal = Mutex::new(wal);
        gate.wait_durable(1, &wal).unwrap();
        wal.lock().append(2, &op(2)).unwrap();
        // fsync of /dev/null fails (EINVAL), as it can fail on a disk that lost a write.
        let null = OpenOptions::new().write(true).open("/dev/null").unwrap();
        wal.lock().redirect_for_test(null);
        assert!(gate.wait_durable(2, &wal).is_err());
        // Already durable before the failure: still answered as durable.
        gate.wait_durable(1, &wal).unwrap();
        // Neither a retry of the same sync nor a new append can be acknowledged now.
        let retried = gate.wait_durable(2, &wal).unwrap_err();
        assert!(
            retried.to_string().contains("may not be durable"),
            "{retried}"
        );
        let refused = wal.lock().append(3, &op(3)).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("unusable until the shard is reopened"),
            "{refused}"
        );
        drop(wal);
        let (seen, _) = replay_all(dir.path(), 1);
        assert_eq!(seen, vec![1, 2]);
    }

    #[test]
    fn group_commit_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut wal) = replay_all(dir.path(), 1);
        wal.append(1, &op(1)).unwrap();
        let wal = Mutex::new(wal);
        let gate = SyncGate::default();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| gate.wait_durable(1, &wal).unwrap());
            }
        });
        assert_eq!(gate.state.lock().synced, 1);
    }
}
