//! The shard's background thread: checkpoints requested by the write path (after a
//! seal, or when the WAL grows) and building vector indexes for sealed segments.
//!
//! Index builds run without any lock, over the sealed segment's shared rows; the index
//! is written as its own immutable file, attached to the segment if the segment still
//! has the same layout, and listed in the manifest by the checkpoint that follows.
//! A segment is searched exactly until its index is attached. Stopping waits for the
//! build in progress, if any, to finish.

use std::collections::HashSet;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

use crate::collection::config::Distance;
use crate::shard::engine::{remove_quietly, Inner};
use crate::shard::index::{self, BuildParams};
use crate::shard::manifest::segment_file;
use crate::shard::segment::SegmentData;

#[derive(Default)]
pub struct Jobs {
    flags: Mutex<Flags>,
    wake: Condvar,
}

#[derive(Default)]
struct Flags {
    checkpoint: bool,
    index: bool,
    stop: bool,
}

impl Jobs {
    pub fn request_checkpoint(&self) {
        self.flags.lock().checkpoint = true;
        self.wake.notify_one();
    }

    pub fn request_indexing(&self) {
        self.flags.lock().index = true;
        self.wake.notify_one();
    }

    pub fn stop(&self) {
        self.flags.lock().stop = true;
        self.wake.notify_one();
    }

    fn stopped(&self) -> bool {
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
}

pub fn spawn(inner: Arc<Inner>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("shard-worker".into())
        .spawn(move || run(&inner))
}

fn run(inner: &Inner) {
    // (segment id, epoch, vector name) that the builder declined or failed to index.
    let mut skipped: HashSet<(u64, u64, String)> = HashSet::new();
    while let Some((checkpoint, _index)) = inner.jobs.next() {
        if checkpoint {
            if let Err(e) = inner.checkpoint() {
                tracing::warn!(dir = %inner.dir.display(), error = %e, "background checkpoint failed");
            }
        }
        // A checkpoint may have persisted newly sealed segments, so always look for work.
        while !inner.jobs.stopped() && index_one(inner, &mut skipped) {}
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
fn index_one(inner: &Inner, skipped: &mut HashSet<(u64, u64, String)>) -> bool {
    let Some(job) = find_job(inner, skipped) else {
        return false;
    };
    let key = (job.seg_id, job.epoch, job.name.clone());
    let Some(col) = job.rows.columns.get(&job.name) else {
        skipped.insert(key);
        return true;
    };
    let Some(built) = inner
        .builder
        .build(&col.data, col.dim, job.distance, &job.params)
    else {
        skipped.insert(key);
        return true;
    };
    let file = segment_file(inner.alloc_file(), "hnsw");
    let path = inner.dir.join(&file);
    if let Err(e) = index::write_index_file(&path, built.as_ref()) {
        tracing::warn!(file = %file, error = %e, "could not write vector index");
        remove_quietly(&path);
        skipped.insert(key);
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

/// The first persisted sealed segment that is big enough and lacks an index.
fn find_job(inner: &Inner, skipped: &HashSet<(u64, u64, String)>) -> Option<IndexJob> {
    let state = inner.state.read();
    let threshold = state.config.indexing_threshold_kb.saturating_mul(1024);
    if threshold == 0 {
        return None;
    }
    for seg in &state.segments {
        let crate::shard::state::Rows::Sealed(rows) = &seg.rows else {
            continue;
        };
        let persisted = seg.disk.epoch == seg.epoch && !seg.disk.points.is_empty();
        if !persisted || rows.is_empty() || rows.vector_bytes() < threshold {
            continue;
        }
        for (name, params) in &state.config.vectors {
            if seg.indexes.contains_key(name)
                || skipped.contains(&(seg.id, seg.epoch, name.clone()))
            {
                continue;
            }
            let mut hnsw = state.config.hnsw.clone();
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
            return Some(IndexJob {
                seg_id: seg.id,
                epoch: seg.epoch,
                name: name.clone(),
                rows: rows.clone(),
                distance: params.distance,
                params: BuildParams {
                    m: hnsw.m,
                    ef_construct: hnsw.ef_construct,
                    threads,
                },
            });
        }
    }
    None
}
