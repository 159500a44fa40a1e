//! The shared core of a local shard: its locks, opening (recovery) and the write path.
//!
//! Lock order, always taken in this order and never the reverse:
//! `checkpoint_lock` → `disk` → `wal` → `state`. Writers hold `wal` while they log an op
//! and apply it to `state`, so ops reach memory in sequence-number order and a
//! checkpoint that holds `wal` sees a state that matches a WAL position exactly.
//!
//! Recovery: load `manifest.json` (a new directory gets an empty one), delete files it
//! does not name (crash leftovers), load its segments, replay the WAL from `wal_start`,
//! and delete WAL files that lie entirely before it.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::error::{Error, Result};
use crate::shard::checkpoint::DiskFiles;
use crate::shard::index::{self, IndexBuilder};
use crate::shard::manifest::{Manifest, SegmentEntry, MANIFEST, SEGMENTS_DIR};
use crate::shard::ops::ShardOp;
use crate::shard::segment::{self, SegmentData};
use crate::shard::state::{OnDisk, Rows, Segment, ShardState};
use crate::shard::verify;
use crate::shard::wal::{SyncGate, Wal};
use crate::shard::worker::Jobs;
use crate::shard::ShardConfig;

/// Past this many WAL files (each up to 64 MiB) a checkpoint is requested.
const WAL_FILES_BEFORE_CHECKPOINT: usize = 3;

/// Held (with an exclusive `flock`) while a shard is open, so a directory is never
/// opened twice at once.
pub const LOCK_FILE: &str = ".lock";

pub struct Inner {
    pub dir: PathBuf,
    _lock: fs::File,
    pub checkpoint_lock: Mutex<()>,
    pub disk: Arc<Mutex<DiskFiles>>,
    pub wal: Mutex<Wal>,
    pub gate: SyncGate,
    pub state: RwLock<ShardState>,
    pub next_file: AtomicU64,
    pub builder: Arc<dyn IndexBuilder>,
    pub jobs: Jobs,
    /// Ids of the segments the merge in progress takes (see `merge.rs`).
    pub merging: Mutex<Vec<u64>>,
}

impl Inner {
    pub fn open(dir: &Path, config: ShardConfig, builder: Arc<dyn IndexBuilder>) -> Result<Inner> {
        let lock = lock_dir(dir)?;
        let segments_dir = dir.join(SEGMENTS_DIR);
        fs::create_dir_all(&segments_dir)
            .map_err(|e| Error::io(format!("creating {}", segments_dir.display()), e))?;
        let manifest = match Manifest::load(dir)? {
            Some(m) => m,
            None => {
                let m = Manifest::default();
                m.store(dir)?;
                m
            }
        };
        manifest.check_config(&config)?;
        remove_unlisted(dir, &manifest)?;
        let started = std::time::Instant::now();
        let segments = load_segments(dir, &manifest, &config, builder.as_ref())?;
        let loaded = started.elapsed();
        let mut state = ShardState::new(config, segments, manifest.last_seq, manifest.next_segment);
        let mapped = started.elapsed();
        let mut replayed_ops = 0u64;
        let replayed = Wal::open(dir, manifest.wal_start, |seq, op| {
            replayed_ops += 1;
            // An op that `apply` would have refused was never logged by shoal: the WAL
            // came from elsewhere (a snapshot, a transfer) and does not fit the config.
            state.validate(&op)?;
            state.apply(seq, op);
            Ok(())
        })?;
        let replay = started.elapsed() - mapped;
        let mut wal = replayed.wal;
        for f in wal.take_files_before(manifest.wal_start) {
            remove_quietly(&f.path(dir));
        }
        state.last_seq = state.last_seq.max(wal.last_seq());
        tracing::debug!(
            dir = %dir.display(),
            points = state.ids.len(),
            last_seq = state.last_seq,
            segments_loaded = ?loaded,
            id_map_built = ?mapped - loaded,
            wal_replayed = ?replay,
            replayed_ops,
            "shard opened"
        );
        Ok(Inner {
            dir: dir.to_path_buf(),
            _lock: lock,
            checkpoint_lock: Mutex::new(()),
            next_file: AtomicU64::new(manifest.next_file),
            disk: Arc::new(Mutex::new(DiskFiles::new(dir, manifest))),
            wal: Mutex::new(wal),
            gate: SyncGate::default(),
            state: RwLock::new(state),
            builder,
            jobs: Jobs::default(),
            merging: Mutex::new(Vec::new()),
        })
    }

    /// A fresh number for a new file under `segments/`.
    pub fn alloc_file(&self) -> u64 {
        self.next_file.fetch_add(1, Ordering::Relaxed)
    }

    /// Validates, logs and applies one op; see `LocalShard::apply`.
    pub fn apply(&self, op: ShardOp, durable: bool) -> Result<u64> {
        let (seq, applied, wal_files) = {
            let mut wal = self.wal.lock();
            self.state.read().validate(&op)?;
            let seq = wal.last_seq() + 1;
            wal.append(seq, &op)?;
            let applied = self.state.write().apply(seq, op);
            (seq, applied, wal.file_count())
        };
        if applied.sealed || wal_files > WAL_FILES_BEFORE_CHECKPOINT {
            self.jobs.request_checkpoint();
        }
        if durable {
            self.gate.wait_durable(seq, &self.wal)?;
        }
        Ok(seq)
    }
}

fn lock_dir(dir: &Path) -> Result<fs::File> {
    fs::create_dir_all(dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .map_err(|e| Error::io("opening shard lock file", e))?;
    file.try_lock().map_err(|_| {
        Error::Unavailable(format!("shard directory {} is already open", dir.display()))
    })?;
    Ok(file)
}

/// Deletes files under `segments/` that the manifest does not name, and temp files.
fn remove_unlisted(dir: &Path, manifest: &Manifest) -> Result<()> {
    let listed: HashSet<String> = manifest.files().into_iter().map(String::from).collect();
    let segments_dir = dir.join(SEGMENTS_DIR);
    let entries = fs::read_dir(&segments_dir).map_err(|e| Error::io("listing segment files", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing segment files", e))?;
        let rel = format!("{SEGMENTS_DIR}/{}", entry.file_name().to_string_lossy());
        if !listed.contains(&rel) {
            tracing::info!(file = %rel, "removing file not named in the shard manifest");
            remove_quietly(&entry.path());
        }
    }
    remove_quietly(&dir.join(format!("{MANIFEST}{}", crate::shard::files::TMP_SUFFIX)));
    Ok(())
}

pub fn remove_quietly(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(file = %path.display(), error = %e, "could not remove file");
        }
    }
}

/// Loads every segment of the manifest, on as many threads as there are cores (reading
/// and checking files is CPU work once they are in the page cache, as after a snapshot
/// recovery); each thread reuses one read buffer for all its files.
fn load_segments(
    dir: &Path,
    manifest: &Manifest,
    config: &ShardConfig,
    builder: &dyn IndexBuilder,
) -> Result<Vec<Segment>> {
    let entries = &manifest.segments;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(entries.len())
        .max(1);
    let next = AtomicUsize::new(0);
    let loaded: Vec<Mutex<Option<Result<Segment>>>> =
        entries.iter().map(|_| Mutex::new(None)).collect();
    let load_some = || {
        let mut buf = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(entry) = entries.get(i) else { break };
            *loaded[i].lock() = Some(load_segment(dir, entry, config, builder, &mut buf));
        }
    };
    std::thread::scope(|scope| {
        for _ in 1..threads {
            let spawned = std::thread::Builder::new()
                .name("segment-load".into())
                .spawn_scoped(scope, load_some);
            if spawned.is_err() {
                break; // the calling thread still loads everything that is left
            }
        }
        load_some();
    });
    loaded
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(|| Err(Error::Service("a segment was not loaded".into())))
        })
        .collect()
}

fn load_segment(
    dir: &Path,
    entry: &SegmentEntry,
    config: &ShardConfig,
    builder: &dyn IndexBuilder,
    buf: &mut Vec<u8>,
) -> Result<Segment> {
    let dims = config.dims();
    let mut rows = SegmentData::new(&dims);
    for f in &entry.points {
        let chunk = SegmentData::read_file_with(&f.path(dir), buf)
            .map_err(|e| Error::io(format!("reading {f}"), e))?;
        verify::check_columns(f, &chunk, &dims)?;
        rows.append(chunk)
            .map_err(|e| Error::io(format!("loading {f}"), e))?;
    }
    let deleted = match &entry.deleted {
        Some(f) => {
            segment::read_deleted(&f.path(dir)).map_err(|e| Error::io(format!("reading {f}"), e))?
        }
        None => Default::default(),
    };
    let len = rows.len();
    let rows = if entry.sealed {
        Rows::Sealed(Arc::new(rows))
    } else {
        Rows::Appendable(rows)
    };
    let mut seg = Segment::with_rows(entry.id, rows);
    seg.deleted = deleted;
    seg.disk = OnDisk {
        epoch: 0,
        points: entry.points.clone(),
        persisted_len: len,
        deleted: entry.deleted.clone(),
        deletions: 0,
    };
    for (name, f) in &entry.indexes {
        match index::read_index_file(&f.path(dir), builder) {
            Ok(idx) if idx.len() == len => {
                seg.indexes.insert(name.clone(), idx);
                seg.index_files.insert(name.clone(), f.clone());
            }
            Ok(_) => {
                tracing::warn!(file = %f, "index does not match its segment; it will be rebuilt")
            }
            Err(e) => tracing::warn!(file = %f, error = %e, "unreadable index; it will be rebuilt"),
        }
    }
    Ok(seg)
}
