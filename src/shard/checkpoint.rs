//! Checkpoints (persisting the in-memory state so the WAL can be dropped) and freezing
//! (pinning a file set that reproduces the shard, for snapshots).
//!
//! A checkpoint runs in three steps so that writers wait only for step 1:
//! 1. *capture*, holding `wal` and `state`: rotate the WAL, note the sequence number N,
//!    and collect what is not on disk yet: the appendable segment's new rows (copied; they
//!    are at most one flush interval's worth), sealed segments never written (shared
//!    `Arc`, no copy), and stale deletion bitsets (small copies);
//! 2. *write* those files (temp + fsync + rename), without locks;
//! 3. *install*: write `manifest.json` (N, `wal_start = N + 1`), then retire the files it
//!    no longer names and the WAL files before N + 1.
//!
//! Retiring deletes a file unless a [`FrozenShard`] pins it; then the deletion waits
//! until the last guard pinning it drops.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::shard::bitset::BitSet;
use crate::shard::engine::{remove_quietly, Inner};
use crate::shard::file_digests;
use crate::shard::manifest::{segment_file, Manifest, SegmentEntry, MANIFEST};
use crate::shard::names::{FileKind, ShardFileName};
use crate::shard::segment::{self, SegmentData};
use crate::shard::state::{OnDisk, Rows, ShardState};

/// The manifest in force and the files pinned by frozen guards.
pub struct DiskFiles {
    dir: PathBuf,
    pub manifest: Manifest,
    pins: HashMap<ShardFileName, usize>,
    pending: HashSet<ShardFileName>,
}

impl DiskFiles {
    pub fn new(dir: &Path, manifest: Manifest) -> DiskFiles {
        DiskFiles {
            dir: dir.to_path_buf(),
            manifest,
            pins: HashMap::new(),
            pending: HashSet::new(),
        }
    }

    /// Deletes files no longer needed, or defers that while they are pinned.
    fn retire(&mut self, files: impl IntoIterator<Item = ShardFileName>) {
        for f in files {
            if self.pins.get(&f).is_some_and(|&n| n > 0) {
                self.pending.insert(f);
            } else {
                remove_quietly(&f.path(&self.dir));
            }
        }
    }

    fn pin(&mut self, files: &[ShardFileName]) {
        files
            .iter()
            .for_each(|f| *self.pins.entry(f.clone()).or_default() += 1);
    }

    fn unpin(&mut self, files: &[ShardFileName]) {
        for f in files {
            if let Some(n) = self.pins.get_mut(f) {
                *n -= 1;
                if *n == 0 {
                    self.pins.remove(f);
                    if self.pending.remove(f) {
                        remove_quietly(&f.path(&self.dir));
                    }
                }
            }
        }
    }
}

/// Where a captured segment's rows come from.
enum Source {
    Shared(Arc<SegmentData>),
    Copied(SegmentData),
}

impl Source {
    fn data(&self) -> &SegmentData {
        match self {
            Source::Shared(d) => d,
            Source::Copied(d) => d,
        }
    }
}

/// One segment as of the capture.
struct SegCapture {
    id: u64,
    epoch: u64,
    sealed: bool,
    existing: Vec<ShardFileName>,
    new_points: Option<(ShardFileName, Source)>,
    persisted_len: usize,
    deleted: Option<ShardFileName>,
    new_deleted: Option<BitSet>,
    deletions: u64,
    indexes: BTreeMap<String, ShardFileName>,
}

impl SegCapture {
    fn entry(&self) -> SegmentEntry {
        let mut points = self.existing.clone();
        points.extend(self.new_points.as_ref().map(|(f, _)| f.clone()));
        SegmentEntry {
            id: self.id,
            sealed: self.sealed,
            points,
            deleted: self.deleted.clone(),
            indexes: self.indexes.clone(),
        }
    }
}

struct Capture {
    last_seq: u64,
    next_segment: u64,
    segments: Vec<SegCapture>,
}

impl Inner {
    /// Persists the current state and drops the WAL before it. A no-op when nothing
    /// changed since the last checkpoint.
    pub fn checkpoint(&self) -> Result<()> {
        self.checkpoint_with(None)
    }

    /// A checkpoint that first lets `swap` change the state, in the capture step (under
    /// `wal` and `state`, so the change lands exactly between two ops). A swap that
    /// reports `true` forces a new manifest; this is how a merge switches segments.
    pub fn checkpoint_with(
        &self,
        swap: Option<&mut dyn FnMut(&mut ShardState) -> bool>,
    ) -> Result<()> {
        let _one_at_a_time = self.checkpoint_lock.lock();
        let base_seq = self.disk.lock().manifest.last_seq;
        let Some(capture) = self.capture(base_seq, swap)? else {
            return Ok(());
        };
        let written = self
            .write_files(&capture)
            .inspect_err(|_| self.forget_new_files(&capture))?;
        let manifest = Manifest {
            last_seq: capture.last_seq,
            wal_start: capture.last_seq + 1,
            next_file: self.next_file.load(std::sync::atomic::Ordering::Relaxed),
            next_segment: capture.next_segment,
            segments: capture.segments.iter().map(SegCapture::entry).collect(),
            ..Manifest::default()
        };
        self.install(manifest)
            .inspect_err(|_| self.forget_new_files(&capture))?;
        self.mark_persisted(capture);
        tracing::debug!(dir = %self.dir.display(), files = written, "checkpoint written");
        Ok(())
    }

    fn capture(
        &self,
        base_seq: u64,
        swap: Option<&mut dyn FnMut(&mut ShardState) -> bool>,
    ) -> Result<Option<Capture>> {
        let mut wal = self.wal.lock();
        let mut state = self.state.write();
        if swap.is_some_and(|swap| swap(&mut state)) {
            state.index_dirty = true;
        }
        if state.last_seq == base_seq && !state.index_dirty {
            return Ok(None);
        }
        wal.rotate()?;
        state.index_dirty = false;
        let segments = self.capture_segments(&mut state);
        Ok(Some(Capture {
            last_seq: state.last_seq,
            next_segment: state.next_segment,
            segments,
        }))
    }

    fn capture_segments(&self, state: &mut ShardState) -> Vec<SegCapture> {
        let mut out = Vec::with_capacity(state.segments.len());
        for seg in &mut state.segments {
            let len = seg.data().len();
            let disk = if seg.disk.epoch == seg.epoch {
                seg.disk.clone()
            } else {
                OnDisk::default()
            };
            let new_points = match &seg.rows {
                Rows::Sealed(rows) if disk.points.is_empty() => Some(Source::Shared(rows.clone())),
                Rows::Appendable(rows) if len > disk.persisted_len => {
                    Some(Source::Copied(rows.copy_range(disk.persisted_len..len)))
                }
                _ => None,
            };
            seg.frozen_len = len;
            let stale_deleted =
                seg.deletions != disk.deletions || (seg.is_sealed() && new_points.is_some());
            let (deleted, new_deleted) = match stale_deleted {
                true if seg.deleted.is_empty() => (None, None),
                true => (
                    Some(segment_file(self.alloc_file(), FileKind::Deleted)),
                    Some(seg.deleted.clone()),
                ),
                false => (disk.deleted.clone(), None),
            };
            out.push(SegCapture {
                id: seg.id,
                epoch: seg.epoch,
                sealed: seg.is_sealed(),
                existing: if seg.is_sealed() && new_points.is_some() {
                    Vec::new()
                } else {
                    disk.points
                },
                new_points: new_points
                    .map(|src| (segment_file(self.alloc_file(), FileKind::Points), src)),
                persisted_len: len,
                deleted,
                new_deleted,
                deletions: seg.deletions,
                indexes: seg.index_files.clone(),
            });
        }
        out
    }

    /// Writes the captured files; returns how many.
    fn write_files(&self, capture: &Capture) -> Result<usize> {
        let mut written = 0;
        for seg in &capture.segments {
            if let Some((name, src)) = &seg.new_points {
                src.data()
                    .write_file(&name.path(&self.dir))
                    .map_err(|e| Error::io(format!("writing {name}"), e))?;
                written += 1;
            }
            if let (Some(name), Some(bits)) = (&seg.deleted, &seg.new_deleted) {
                segment::write_deleted(&name.path(&self.dir), bits)
                    .map_err(|e| Error::io(format!("writing {name}"), e))?;
                written += 1;
            }
        }
        Ok(written)
    }

    /// After a failed checkpoint: remove what it wrote (no manifest names those files).
    fn forget_new_files(&self, capture: &Capture) {
        for seg in &capture.segments {
            if let Some((name, _)) = &seg.new_points {
                remove_quietly(&name.path(&self.dir));
            }
            if let (Some(name), Some(_)) = (&seg.deleted, &seg.new_deleted) {
                remove_quietly(&name.path(&self.dir));
            }
        }
    }

    /// Makes `manifest` the one in force and retires what it superseded.
    fn install(&self, manifest: Manifest) -> Result<()> {
        let mut disk = self.disk.lock();
        manifest.store(&self.dir)?;
        let keep: HashSet<ShardFileName> = manifest.files().into_iter().collect();
        let mut superseded: Vec<ShardFileName> = disk
            .manifest
            .files()
            .into_iter()
            .filter(|f| !keep.contains(f))
            .collect();
        superseded.extend(self.wal.lock().take_files_before(manifest.wal_start));
        disk.manifest = manifest;
        disk.retire(superseded);
        Ok(())
    }

    /// Retires those of `files` that the manifest in force does not name (deleted now,
    /// or when no frozen shard pins them any more).
    pub fn retire_unnamed(&self, files: &[ShardFileName]) {
        let mut disk = self.disk.lock();
        let named: HashSet<ShardFileName> = disk.manifest.files().into_iter().collect();
        let unnamed: Vec<ShardFileName> = files
            .iter()
            .filter(|f| !named.contains(*f))
            .cloned()
            .collect();
        disk.retire(unnamed);
    }

    fn mark_persisted(&self, capture: Capture) {
        let mut state = self.state.write();
        for cap in capture.segments {
            let Some(seg) = state
                .segments
                .iter_mut()
                .find(|s| s.id == cap.id && s.epoch == cap.epoch)
            else {
                continue;
            };
            let entry = cap.entry();
            seg.disk = OnDisk {
                epoch: cap.epoch,
                points: entry.points,
                persisted_len: cap.persisted_len,
                deleted: entry.deleted,
                deletions: cap.deletions,
            };
        }
    }

    /// See `LocalShard::freeze`.
    pub fn freeze(&self) -> Result<FrozenShard> {
        let mut disk = self.disk.lock();
        let (wal_files, last_seq) = {
            let mut wal = self.wal.lock();
            wal.rotate()?;
            (
                wal.closed_files_from(disk.manifest.wal_start),
                wal.last_seq(),
            )
        };
        let mut files = disk.manifest.files();
        files.extend(wal_files);
        disk.pin(&files);
        Ok(FrozenShard {
            dir: self.dir.clone(),
            manifest: disk.manifest.to_bytes(),
            files,
            last_seq,
            disk: self.disk.clone(),
        })
    }
}

/// A set of files that reproduces a shard as of one instant, pinned against deletion
/// while this guard lives. Read the files through [`FrozenShard::open_file`]: the live
/// `manifest.json` may be replaced by later checkpoints, so the frozen manifest is held
/// in memory and served from there.
pub struct FrozenShard {
    dir: PathBuf,
    manifest: Vec<u8>,
    /// Files relative to the shard directory, excluding `manifest.json`.
    files: Vec<ShardFileName>,
    last_seq: u64,
    disk: Arc<Mutex<DiskFiles>>,
}

impl FrozenShard {
    /// Every file of the frozen shard, relative to the shard directory, `manifest.json` first.
    pub fn files(&self) -> Vec<String> {
        std::iter::once(MANIFEST.to_string())
            .chain(self.files.iter().map(|f| f.as_str().to_string()))
            .collect()
    }

    /// The last sequence number the frozen files contain.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub fn manifest_bytes(&self) -> &[u8] {
        &self.manifest
    }

    /// Opens one of [`FrozenShard::files`] for reading, with its size and, when known
    /// already, its sha256.
    pub fn open(&self, rel: &str) -> io::Result<FrozenFile> {
        if rel == MANIFEST {
            return Ok(FrozenFile {
                reader: Box::new(io::Cursor::new(self.manifest.clone())),
                size: self.manifest.len() as u64,
                sha256: None,
                meta: None,
            });
        }
        let Some(name) = self.files.iter().find(|f| f.as_str() == rel) else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{rel} is not part of the frozen shard"),
            ));
        };
        let file = File::open(name.path(&self.dir))?;
        let meta = file.metadata()?;
        Ok(FrozenFile {
            reader: Box::new(file),
            size: meta.len(),
            sha256: file_digests::lookup(&meta),
            meta: Some(meta),
        })
    }

    /// Copies the frozen files into `target` (created if missing), which then opens as
    /// the shard did at the freeze.
    pub fn copy_to(&self, target: &Path) -> io::Result<()> {
        for rel in self.files() {
            let dest = target.join(&rel);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut out = File::create(&dest)?;
            io::copy(&mut self.open(&rel)?.reader, &mut out)?;
            out.sync_all()?;
        }
        Ok(())
    }
}

/// One file of a [`FrozenShard`], opened.
pub struct FrozenFile {
    pub reader: Box<dyn Read + Send>,
    pub size: u64,
    /// The file's sha256, when it is known without reading the file (`file_digests.rs`).
    pub sha256: Option<String>,
    meta: Option<std::fs::Metadata>,
}

impl FrozenFile {
    /// Remembers the digest a reader computed, for the next snapshot of this file.
    pub fn remember(&self, sha256: &str) {
        if let Some(meta) = &self.meta {
            file_digests::remember(meta, sha256.to_string());
        }
    }
}

impl Drop for FrozenShard {
    fn drop(&mut self) {
        self.disk.lock().unpin(&self.files);
    }
}
