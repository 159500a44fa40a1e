//! The shard's background threads.
//!
//! The *worker* does checkpoints requested by the write path (after a seal, or when the
//! WAL grows) and builds vector indexes for sealed segments. Index builds run without
//! any lock, over the sealed segment's shared rows; the index is written as its own
//! immutable file, attached to the segment if the segment still has the same layout,
//! and listed in the manifest by the checkpoint that follows. A segment is searched
//! exactly until its index is attached. Segments taken by the merge in progress are not
//! indexed (the merge builds one index over all of them).
//!
//! Index builds run on a thread of their own at a lower CPU priority (nice 5), so that
//! under load writes and searches come first; the worker thread keeps the normal
//! priority for checkpoints. The *merger* runs merges (`merge.rs`) one at a time, at a
//! lower priority still (nice 10), whenever the worker has finished a round of
//! checkpoints and index builds.
//!
//! Stopping wakes both; a build in progress gives up at its next stop poll.

use std::collections::HashSet;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::collection::config::Distance;
use crate::shard::engine::{remove_quietly, Inner};
use crate::shard::index::{self, BuildParams};
use crate::shard::manifest::segment_file;
use crate::shard::merge;
use crate::shard::names::FileKind;
use crate::shard::segment::SegmentData;
use crate::shard::state::ShardState;
use crate::shard::ShardConfig;

#[derive(Default)]
pub struct Jobs {
    flags: Mutex<Flags>,
    wake: Condvar,
    /// (segment id, epoch, vector name) that the builder declined or failed to index;
    /// not retried, and not counted as pending work.
    skipped: Mutex<HashSet<(u64, u64, String)>>,
}

#[derive(Default)]
struct Flags {
    checkpoint: bool,
    index: bool,
    merge: bool,
    stop: bool,
}

impl Jobs {
    pub fn request_checkpoint(&self) {
        self.flags.lock().checkpoint = true;
        self.wake.notify_all();
    }

    pub fn request_indexing(&self) {
        self.flags.lock().index = true;
        self.wake.notify_all();
    }

    pub fn request_merge(&self) {
        self.flags.lock().merge = true;
        self.wake.notify_all();
    }

    pub fn stop(&self) {
        self.flags.lock().stop = true;
        self.wake.notify_all();
    }

    pub fn stopped(&self) -> bool {
        self.flags.lock().stop
    }

    /// Blocks until there is work; `None` when asked to stop. Returns (checkpoint, index).
    fn next(&self) -> Option<(bool, bool)> {
        let mut f = self.flags.lock();
        while !f.stop && !f.checkpoint && !f.index {
            self.wake.wait(&mut f);
        }
        if f.stop {
            return None;
        }
        let job = (f.checkpoint, f.index);
        f.checkpoint = false;
        f.index = false;
        Some(job)
    }

    /// Blocks until a merge is requested; false when asked to stop.
    fn next_merge(&self) -> bool {
        let mut f = self.flags.lock();
        while !f.stop && !f.merge {
            self.wake.wait(&mut f);
        }
        let go = !f.stop;
        f.merge = false;
        go
    }
}

/// Starts the worker and the merger.
pub fn spawn(inner: Arc<Inner>) -> std::io::Result<Vec<JoinHandle<()>>> {
    let merger = inner.clone();
    let worker = std::thread::Builder::new()
        .name("shard-worker".into())
        .spawn(move || run(&inner))?;
    let jobs = merger.clone();
    let merger = std::thread::Builder::new()
        .name("shard-merge".into())
        .spawn(move || run_merges(&merger));
    match merger {
        Ok(merger) => Ok(vec![worker, merger]),
        Err(e) => {
            jobs.jobs.stop();
            let _ = worker.join();
            Err(e)
        }
    }
}

fn run_merges(inner: &Inner) {
    lower_thread_priority(MERGE_NICE);
    while inner.jobs.next_merge() {
        loop {
            match merge::merge_once(inner, &|| {}) {
                Ok(true) if !inner.jobs.stopped() => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(dir = %inner.dir.display(), error = %e, "segment merge failed");
                    break;
                }
            }
        }
    }
}

/// Nice value of index builds: below writes, searches and checkpoints (0), above merges.
const INDEX_NICE: i32 = 5;
/// Nice value of merges.
const MERGE_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority to `nice` (threads it starts inherit it):
/// background work yields the CPU to writes, searches and checkpoints.
fn lower_thread_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on the calling thread; no memory is shared.
        let rc = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS as _, tid as libc::id_t, nice)
        };
        if rc != 0 {
            tracing::debug!(nice, "could not lower a background thread's priority");
        }
    }
}

fn run(inner: &Inner) {
    while let Some((checkpoint, _index)) = inner.jobs.next() {
        if checkpoint {
            if let Err(e) = inner.checkpoint() {
                tracing::warn!(dir = %inner.dir.display(), error = %e, "background checkpoint failed");
            }
        }
        // A checkpoint may have persisted newly sealed segments, so always look for work.
        // Each step may have made segments mergeable; the merger picks them up (and this
        // worker then leaves them to it) without waiting for the index backlog.
        inner.jobs.request_merge();
        while !inner.jobs.stopped() && index_one(inner) {
            inner.jobs.request_merge();
        }
    }
}

struct IndexJob {
    seg_id: u64,
    epoch: u64,
    name: String,
    rows: Arc<SegmentData>,
    distance: Distance,
    params: BuildParams,
}

/// Builds one missing index; returns false when there is nothing left to do.
fn index_one(inner: &Inner) -> bool {
    let Some(job) = find_job(inner, &inner.state.read()) else {
        return false;
    };
    let skip = |key| {
        inner.jobs.skipped.lock().insert(key);
    };
    let key = (job.seg_id, job.epoch, job.name.clone());
    let Some(col) = job.rows.columns.get(&job.name) else {
        skip(key);
        return true;
    };
    // On a thread of its own at a lower priority (the worker itself stays at the normal
    // one, for the checkpoints the write path waits on).
    let built = std::thread::scope(|scope| {
        let build = std::thread::Builder::new()
            .name("index-build".into())
            .spawn_scoped(scope, || {
                lower_thread_priority(INDEX_NICE);
                inner.builder.build(
                    &index::rows_of(&col.data, col.dim),
                    col.dim,
                    job.distance,
                    &job.params,
                    &|| inner.jobs.stopped(),
                )
            });
        match build {
            Ok(handle) => handle.join().ok().flatten(),
            Err(_) => None,
        }
    });
    let Some(built) = built else {
        skip(key);
        return true;
    };
    let file = segment_file(inner.alloc_file(), FileKind::Hnsw);
    let path = file.path(&inner.dir);
    if let Err(e) = index::write_index_file(&path, built.as_ref()) {
        tracing::warn!(file = %file, error = %e, "could not write vector index");
        remove_quietly(&path);
        skip(key);
        return true;
    }
    let attached = {
        let mut state = inner.state.write();
        let seg = state
            .segments
            .iter_mut()
            .find(|s| s.id == job.seg_id && s.epoch == job.epoch);
        let attached = seg.map(|seg| {
            seg.indexes.insert(job.name.clone(), built);
            seg.index_files.insert(job.name.clone(), file.clone());
        });
        state.index_dirty |= attached.is_some();
        attached.is_some()
    };
    if !attached {
        remove_quietly(&path);
        return true;
    }
    if let Err(e) = inner.checkpoint() {
        tracing::warn!(dir = %inner.dir.display(), error = %e, "checkpoint after indexing failed");
    }
    true
}

/// Whether background work is due or running: a sealed segment waiting for its
/// checkpoint, an index to build, or a merge running or worth doing. Collection info
/// reports this as status `yellow` (Qdrant's "optimizations pending").
pub fn optimizations_pending(inner: &Inner) -> bool {
    if !inner.merging.lock().is_empty() {
        return true;
    }
    let state = inner.state.read();
    let unpersisted = state
        .segments
        .iter()
        .any(|s| s.is_sealed() && (s.disk.epoch != s.epoch || s.disk.points.is_empty()));
    unpersisted || find_job(inner, &state).is_some() || merge::has_work(&state)
}

/// The first persisted sealed segment that is big enough and lacks an index (one the
/// merge in progress takes is left to the merge).
fn find_job(inner: &Inner, state: &ShardState) -> Option<IndexJob> {
    let threshold = state.config.indexing_threshold_kb.saturating_mul(1024);
    if threshold == 0 {
        return None;
    }
    let merging = inner.merging.lock().clone();
    let skipped = inner.jobs.skipped.lock();
    for seg in &state.segments {
        let crate::shard::state::Rows::Sealed(rows) = &seg.rows else {
            continue;
        };
        let persisted = seg.disk.epoch == seg.epoch && !seg.disk.points.is_empty();
        if !persisted || rows.is_empty() || rows.vector_bytes() < threshold {
            continue;
        }
        if merging.contains(&seg.id) {
            continue;
        }
        for name in state.config.vectors.keys() {
            if seg.indexes.contains_key(name)
                || skipped.contains(&(seg.id, seg.epoch, name.clone()))
            {
                continue;
            }
            let Some((distance, params)) = build_params(&state.config, name) else {
                continue;
            };
            return Some(IndexJob {
                seg_id: seg.id,
                epoch: seg.epoch,
                name: name.clone(),
                rows: rows.clone(),
                distance,
                params,
            });
        }
    }
    None
}

/// The metric and build parameters of vector `name` (its HNSW diff applied).
pub fn build_params(config: &ShardConfig, name: &str) -> Option<(Distance, BuildParams)> {
    let params = config.vectors.get(name)?;
    let mut hnsw = config.hnsw.clone();
    if let Some(diff) = &params.hnsw_config {
        diff.apply_to(&mut hnsw);
    }
    let threads = match hnsw.max_indexing_threads {
        0 => std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .saturating_sub(1)
            .max(1),
        n => n,
    };
    let build = BuildParams {
        m: hnsw.m,
        ef_construct: hnsw.ef_construct,
        threads,
    };
    Some((params.distance, build))
}
