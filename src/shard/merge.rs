//! The merge optimizer: rewrites neighbouring small sealed segments as one segment,
//! dropping their deleted rows (vacuum), so a search visits a few large HNSW graphs
//! instead of many small ones.
//!
//! Sealing still happens at `segment_max_kb` (the indexing threshold), so fresh data is
//! indexed quickly; merging then grows segments up to `merge_max_kb` of live vectors.
//!
//! **Choosing.** Candidates are sealed segments that are persisted and hold less than
//! the cap. Among runs of adjacent candidates whose live vectors sum to at most the cap,
//! the run with the most segments wins (ties: the smaller one), provided its largest
//! segment is at most [`MAX_SIZE_RATIO`] times the rest (so a big segment is not
//! rewritten to absorb a sliver). Failing that, a lone candidate with at least
//! [`VACUUM_RATIO`] of its rows deleted is rewritten on its own. Only neighbours are
//! merged, so segment order (creation order) is kept.
//!
//! **Steps**, one merge at a time on the shard's merge thread:
//! 1. *plan*, under the state read lock: note each source's `(id, epoch)`, share its
//!    rows (`Arc`) and list its live offsets as of now; the index worker leaves these
//!    segments alone from now on (`Inner::merging`);
//! 2. *copy and build*, without locks: copy the live rows' ids, versions, payload text
//!    and missing-vector bits into the merged rows; write the points file and build an
//!    HNSW per vector name straight from the sources' vectors (a list of row slices, in
//!    merged order), and write it; every file is a fresh name from the manifest's
//!    counter, written temp + fsync + rename. Searches meanwhile use the sources and
//!    their own indexes;
//! 3. *swap*, inside a checkpoint's capture step (holding `wal` and `state`): the
//!    sources must still be in place; rows deleted in a source since step 1 (deletes,
//!    and updates, which delete the old row) are marked deleted in the merged segment,
//!    the sources are taken out, their live vectors are copied into the merged columns
//!    one source at a time (each source released once copied), the merged segment
//!    takes their place and every id's location is remapped. The checkpoint then writes the merged segment's
//!    deletion file and a new manifest: that manifest is the switch point. Files it
//!    no longer names are retired as usual (kept while a frozen shard pins them).
//!
//! Crash safety: before the manifest is replaced the merged files are unnamed and
//! opening deletes them; after, the sources' files are the unnamed ones. The manifest's
//! `last_seq` and every deletion bitmap in it describe the same instant, so replaying
//! the WAL from there is exact. A failed swap (sources gone) deletes the merged files.
//!
//! Memory: until the swap the merge holds, next to its sources, only the graph being
//! built (~0.28x the merged vectors for 128-d, m = 16), ids, versions and payload text
//! (JSON, a few bytes a row). Copying the merged vectors before the swap (as the first
//! version did) held a second copy of up to the cap: ~1.35x the cap in all, which put
//! the 500k bench 70 MiB over its memory budget. At the swap the vectors move over one
//! source at a time, so the transient is one source (~10 MiB at the default sizes).
//! The price: that copy runs under the state lock (~60 MiB of memcpy at the cap, tens
//! of milliseconds once per merge, logged at debug). After the swap the freed heap is
//! handed back to the OS (`malloc_trim`).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::shard::bitset::BitSet;
use crate::shard::engine::{remove_quietly, Inner};
use crate::shard::index::{self, VectorIndex};
use crate::shard::manifest::segment_file;
use crate::shard::names::{FileKind, ShardFileName};
use crate::shard::segment::SegmentData;
use crate::shard::state::{OnDisk, Rows, Segment, ShardState};
use crate::shard::worker::build_params;
use crate::shard::ShardConfig;

/// A lone segment is rewritten once at least this fraction of its rows is deleted.
pub const VACUUM_RATIO: f64 = 0.2;
/// A run is not merged if its largest segment exceeds this many times the others.
pub const MAX_SIZE_RATIO: usize = 4;
/// Offset map entry of a row that was not copied.
const DROPPED: u32 = u32::MAX;

/// One segment taken into a merge.
struct Source {
    id: u64,
    epoch: u64,
    rows: Arc<SegmentData>,
    /// Offsets live at the plan, ascending; the k-th lands at `base + k`.
    copied: Vec<u32>,
}

/// A merged segment, written and indexed, waiting for its swap.
struct Merged {
    sources: Vec<Source>,
    /// The merged rows without their vectors (`missing` bits are set): those are
    /// copied from the sources at the swap, see [`assemble_vectors`].
    data: SegmentData,
    points_file: Option<ShardFileName>,
    indexes: BTreeMap<String, (Arc<dyn VectorIndex>, ShardFileName)>,
}

impl Merged {
    fn files(&self) -> Vec<ShardFileName> {
        let indexes = self.indexes.values().map(|(_, f)| f.clone());
        self.points_file.iter().cloned().chain(indexes).collect()
    }
}

/// Runs one merge if one is worth doing under the configured cap; true if a merged
/// segment was swapped in. `before_swap` runs between building and swapping (a hook
/// for tests that race writes against a merge).
pub fn merge_once(inner: &Inner, before_swap: &dyn Fn()) -> Result<bool> {
    let cap_kb = inner.state.read().config.merge_max_kb;
    merge_with_cap(inner, cap_kb, before_swap)
}

/// [`merge_once`] with an explicit cap in KB (0: nothing to do).
pub fn merge_with_cap(inner: &Inner, cap_kb: usize, before_swap: &dyn Fn()) -> Result<bool> {
    let Some(sources) = plan(inner, cap_kb.saturating_mul(1024)) else {
        return Ok(false);
    };
    {
        let mut merging = inner.merging.lock();
        if !merging.is_empty() {
            return Ok(false); // another merge is running
        }
        merging.extend(sources.iter().map(|s| s.id));
    }
    let result = build_and_swap(inner, sources, before_swap);
    inner.merging.lock().clear();
    result
}

fn build_and_swap(inner: &Inner, sources: Vec<Source>, before_swap: &dyn Fn()) -> Result<bool> {
    let segments = sources.len();
    let Some(merged) = prepare(inner, sources)? else {
        return Ok(false);
    };
    let rows = merged.data.len();
    before_swap();
    let started = std::time::Instant::now();
    let swapped = swap_in(inner, merged)?;
    if swapped {
        tracing::debug!(dir = %inner.dir.display(), segments, rows, swap = ?started.elapsed(), "segments merged");
    }
    Ok(swapped)
}

// ------------------------------------------------------------------ choosing

/// Size facts of a segment that may be merged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub live_bytes: usize,
    pub deleted_ratio: f64,
}

/// Whether a merge under the configured cap would find something to do.
pub fn has_work(state: &ShardState) -> bool {
    let cap = state.config.merge_max_kb.saturating_mul(1024);
    let candidates: Vec<Option<Candidate>> =
        state.segments.iter().map(|s| candidate(s, cap)).collect();
    cap > 0 && pick(&candidates, cap).is_some()
}

fn plan(inner: &Inner, cap: usize) -> Option<Vec<Source>> {
    if cap == 0 {
        return None;
    }
    let state = inner.state.read();
    let candidates: Vec<Option<Candidate>> =
        state.segments.iter().map(|s| candidate(s, cap)).collect();
    let range = pick(&candidates, cap)?;
    state.segments[range].iter().map(source).collect()
}

/// The segment's sizes if it may be merged: sealed, persisted, below the cap.
fn candidate(seg: &Segment, cap: usize) -> Option<Candidate> {
    let Rows::Sealed(rows) = &seg.rows else {
        return None;
    };
    if seg.disk.epoch != seg.epoch || seg.disk.points.is_empty() {
        return None;
    }
    let len = rows.len();
    let deleted = seg.deleted.count_ones().min(len);
    let live_bytes = match len {
        0 => 0,
        _ => rows.vector_bytes() / len * (len - deleted),
    };
    let deleted_ratio = match len {
        0 => 1.0,
        _ => deleted as f64 / len as f64,
    };
    (live_bytes < cap).then_some(Candidate {
        live_bytes,
        deleted_ratio,
    })
}

/// The positions to merge (see the module doc), or `None`.
pub fn pick(candidates: &[Option<Candidate>], cap: usize) -> Option<std::ops::Range<usize>> {
    let mut best: Option<(std::ops::Range<usize>, usize)> = None;
    for start in 0..candidates.len() {
        let (mut sum, mut largest) = (0usize, 0usize);
        for (end, c) in candidates.iter().enumerate().skip(start) {
            let Some(c) = c else { break };
            sum += c.live_bytes;
            largest = largest.max(c.live_bytes);
            if sum > cap {
                break;
            }
            let count = end + 1 - start;
            let balanced = largest <= MAX_SIZE_RATIO.saturating_mul(sum - largest);
            let better = best.as_ref().is_none_or(|(r, best_sum)| {
                count > r.len() || (count == r.len() && sum < *best_sum)
            });
            if count >= 2 && balanced && better {
                best = Some((start..end + 1, sum));
            }
        }
    }
    best.map(|(r, _)| r).or_else(|| {
        let lone = candidates
            .iter()
            .position(|c| c.is_some_and(|c| c.deleted_ratio >= VACUUM_RATIO))?;
        Some(lone..lone + 1)
    })
}

fn source(seg: &Segment) -> Option<Source> {
    let Rows::Sealed(rows) = &seg.rows else {
        return None;
    };
    let copied = (0..rows.len() as u32)
        .filter(|&off| !seg.deleted.get(off as usize))
        .collect();
    Some(Source {
        id: seg.id,
        epoch: seg.epoch,
        rows: rows.clone(),
        copied,
    })
}

// ------------------------------------------------------------------ copying and building

/// Copies, writes and indexes the merged segment; `None` if the shard is stopping.
/// Files written by a merge that does not get that far are removed.
fn prepare(inner: &Inner, sources: Vec<Source>) -> Result<Option<Merged>> {
    let config = inner.state.read().config.clone();
    let data = copy_rows_without_vectors(&sources, &config);
    let mut merged = Merged {
        sources,
        data,
        points_file: None,
        indexes: BTreeMap::new(),
    };
    match write_and_index(inner, &config, &mut merged) {
        Ok(true) => Ok(Some(merged)),
        Ok(false) => {
            remove_files(inner, &merged.files());
            Ok(None)
        }
        Err(e) => {
            remove_files(inner, &merged.files());
            Err(e)
        }
    }
}

fn copy_rows_without_vectors(sources: &[Source], config: &ShardConfig) -> SegmentData {
    let mut data = SegmentData::new(&config.dims());
    let rows = sources.iter().map(|s| s.copied.len()).sum();
    let payload_bytes = sources
        .iter()
        .flat_map(|s| {
            s.copied
                .iter()
                .map(|&o| s.rows.payloads.text(o as usize).len())
        })
        .sum();
    data.reserve_exact(rows, payload_bytes);
    for col in data.columns.values_mut() {
        col.data = Vec::new(); // filled at the swap
    }
    for src in sources {
        for &off in &src.copied {
            data.push_row_without_vectors(&src.rows, off as usize);
        }
    }
    data
}

/// The merged rows' vectors of column `name`, still where the sources keep them (a
/// missing vector reads as `zeros`, as the merged column will hold it).
fn vector_rows<'a>(sources: &'a [Source], name: &str, zeros: &'a [f32]) -> Vec<&'a [f32]> {
    sources
        .iter()
        .flat_map(|src| {
            src.copied
                .iter()
                .map(move |&off| match src.rows.vector(name, off as usize) {
                    Some(v) if v.len() == zeros.len() => v,
                    _ => zeros,
                })
        })
        .collect()
}

/// Copies the live rows' vectors into the merged columns, one source at a time, and
/// releases each source as soon as it is copied (unless something else still shares
/// it, e.g. a frozen shard). So the merged vectors never sit next to a full second
/// copy: the transient is one source, not the whole merge.
fn assemble_vectors(data: &mut SegmentData, sources: Vec<Source>, removed: Vec<Segment>) {
    let rows = data.len();
    for col in data.columns.values_mut() {
        col.data.reserve_exact(rows * col.dim);
    }
    for (src, seg) in sources.into_iter().zip(removed) {
        drop(seg); // the state's share, with the source's own indexes
        for (name, col) in data.columns.iter_mut() {
            for &off in &src.copied {
                match src.rows.vector(name, off as usize) {
                    Some(v) if v.len() == col.dim => col.data.extend_from_slice(v),
                    _ => col.data.resize(col.data.len() + col.dim, 0.0),
                }
            }
        }
    }
}

/// Writes the points file and builds and writes the indexes; false if stopped.
fn write_and_index(inner: &Inner, config: &ShardConfig, merged: &mut Merged) -> Result<bool> {
    if merged.data.is_empty() {
        return Ok(true);
    }
    let zeros: BTreeMap<String, Vec<f32>> = merged
        .data
        .columns
        .iter()
        .map(|(name, col)| (name.clone(), vec![0.0; col.dim]))
        .collect();
    let vectors: BTreeMap<String, Vec<&[f32]>> = zeros
        .iter()
        .map(|(name, zeros)| (name.clone(), vector_rows(&merged.sources, name, zeros)))
        .collect();
    let file = segment_file(inner.alloc_file(), FileKind::Points);
    merged.points_file = Some(file.clone());
    merged
        .data
        .write_file_with(&file.path(&inner.dir), &vectors)
        .map_err(|e| Error::io(format!("writing {file}"), e))?;
    let threshold = config.indexing_threshold_kb.saturating_mul(1024);
    let vector_bytes: usize =
        zeros.values().map(|z| z.len() * 4).sum::<usize>() * merged.data.len();
    if threshold == 0 || vector_bytes < threshold {
        return Ok(true);
    }
    for (name, rows) in &vectors {
        let Some(built) = build_index(inner, config, name, rows)? else {
            return Ok(false);
        };
        if let Some(built) = built {
            merged.indexes.insert(name.clone(), built);
        }
    }
    Ok(true)
}

/// An index and its file.
type BuiltIndex = (Arc<dyn VectorIndex>, ShardFileName);

/// Builds and writes the index of one vector name over the merged rows; `None` if
/// stopped, `Some(None)` if the builder declines (the index worker then tries later).
fn build_index(
    inner: &Inner,
    config: &ShardConfig,
    name: &str,
    rows: &[&[f32]],
) -> Result<Option<Option<BuiltIndex>>> {
    let (Some((distance, params)), Some(dim)) = (
        build_params(config, name),
        config.vectors.get(name).map(|p| p.size),
    ) else {
        return Ok(Some(None));
    };
    let stop = || inner.jobs.stopped();
    let Some(built) = inner.builder.build(rows, dim, distance, &params, &stop) else {
        return Ok((!inner.jobs.stopped()).then_some(None));
    };
    let file = segment_file(inner.alloc_file(), FileKind::Hnsw);
    let path = file.path(&inner.dir);
    if let Err(e) = index::write_index_file(&path, built.as_ref()) {
        remove_quietly(&path);
        return Err(Error::io(format!("writing {file}"), e));
    }
    Ok(Some(Some((built, file))))
}

/// Merged offset of each source's first copied row.
fn bases(sources: &[Source]) -> Vec<usize> {
    let mut next = 0;
    sources
        .iter()
        .map(|s| {
            let base = next;
            next += s.copied.len();
            base
        })
        .collect()
}

fn remove_files(inner: &Inner, files: &[ShardFileName]) {
    files
        .iter()
        .for_each(|f| remove_quietly(&f.path(&inner.dir)));
}

// ------------------------------------------------------------------ swapping

/// Swaps the merged segment in through a checkpoint; false (and its files removed) if
/// the sources changed. If the checkpoint fails after the swap, the swap stands in
/// memory and the next checkpoint writes it.
fn swap_in(inner: &Inner, merged: Merged) -> Result<bool> {
    let files = merged.files();
    let mut pending = Some(merged);
    let mut swapped: Option<Vec<ShardFileName>> = None;
    let result = {
        let mut swap = |state: &mut ShardState| {
            swapped = pending.take().and_then(|m| apply_swap(state, m));
            swapped.is_some()
        };
        inner.checkpoint_with(Some(&mut swap))
    };
    let done = swapped.is_some();
    match swapped {
        None => remove_files(inner, &files),
        Some(source_indexes) => {
            // An index the worker attached to a source after the last checkpoint was
            // never listed, so no manifest change retires it; retire it here (a file
            // an older manifest named may still be pinned by a frozen shard). No later
            // manifest can name these: their segments are gone.
            inner.retire_unnamed(&source_indexes);
            return_freed_memory();
        }
    }
    result.map(|()| done)
}

/// The sources' rows were many mid-sized allocations that glibc keeps as free heap
/// after the swap; hand those pages back so the next merge's output does not come on
/// top of them.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator's own heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Replaces the sources with the merged segment in `state` and returns the sources'
/// index files; `None` if they are not where the plan found them (nothing changes).
fn apply_swap(state: &mut ShardState, merged: Merged) -> Option<Vec<ShardFileName>> {
    let Merged {
        sources,
        mut data,
        points_file,
        indexes,
    } = merged;
    let Some(start) = locate(state, &sources) else {
        tracing::warn!("merge sources changed before the swap; merge dropped");
        return None;
    };
    let count = sources.len();
    let maps = offset_maps(&sources);
    if !all_live_copied(state, start, &maps) {
        tracing::error!("a live row of a merge source was not copied; merge dropped");
        return None;
    }
    let deleted = deleted_since_plan(state, start, &sources);
    let removed: Vec<Segment> = state.segments.drain(start..start + count).collect();
    let source_indexes = removed
        .iter()
        .flat_map(|s| s.index_files.values().cloned())
        .collect();
    assemble_vectors(&mut data, sources, removed);
    let kept = !data.is_empty();
    if kept {
        let seg = merged_segment(state.next_segment, data, deleted, points_file, indexes);
        state.segments.insert(start, seg);
        state.next_segment += 1;
    }
    remap_ids(state, start, count, usize::from(kept), &maps);
    Some(source_indexes)
}

/// Position of the first source, if the sources are still adjacent and unchanged.
fn locate(state: &ShardState, sources: &[Source]) -> Option<usize> {
    let first = sources.first()?;
    let start = state
        .segments
        .iter()
        .position(|s| s.id == first.id && s.epoch == first.epoch)?;
    let same = |(seg, src): (&Segment, &Source)| {
        seg.id == src.id && seg.epoch == src.epoch && seg.is_sealed()
    };
    let in_place = state.segments.get(start..start + sources.len())?;
    in_place.iter().zip(sources).all(same).then_some(start)
}

/// Per source, old offset → merged offset ([`DROPPED`] for rows not copied).
fn offset_maps(sources: &[Source]) -> Vec<Vec<u32>> {
    let bases = bases(sources);
    sources
        .iter()
        .zip(bases)
        .map(|(src, base)| {
            let mut map = vec![DROPPED; src.rows.len()];
            for (k, &off) in src.copied.iter().enumerate() {
                map[off as usize] = (base + k) as u32;
            }
            map
        })
        .collect()
}

/// Every live id in the sources points at a copied row (rows not copied were deleted
/// at the plan, and deletions are permanent, so this always holds; checked anyway
/// because a miss would lose the point).
fn all_live_copied(state: &ShardState, start: usize, maps: &[Vec<u32>]) -> bool {
    state.ids.values().all(|loc| {
        let seg = loc.seg as usize;
        match seg.checked_sub(start).and_then(|s| maps.get(s)) {
            Some(map) => map.get(loc.off as usize).is_some_and(|&o| o != DROPPED),
            None => true,
        }
    })
}

/// Merged offsets of copied rows that their source has deleted since the plan.
fn deleted_since_plan(state: &ShardState, start: usize, sources: &[Source]) -> BitSet {
    let mut deleted = BitSet::default();
    for ((src, base), seg) in sources
        .iter()
        .zip(bases(sources))
        .zip(&state.segments[start..])
    {
        for (k, &off) in src.copied.iter().enumerate() {
            if seg.deleted.get(off as usize) {
                deleted.set(base + k);
            }
        }
    }
    deleted
}

fn merged_segment(
    id: u64,
    data: SegmentData,
    deleted: BitSet,
    points_file: Option<ShardFileName>,
    indexes: BTreeMap<String, (Arc<dyn VectorIndex>, ShardFileName)>,
) -> Segment {
    let len = data.len();
    let mut seg = Segment::with_rows(id, Rows::Sealed(Arc::new(data)));
    seg.deletions = deleted.count_ones() as u64;
    seg.deleted = deleted;
    seg.frozen_len = len;
    seg.disk = OnDisk {
        epoch: seg.epoch,
        points: points_file.into_iter().collect(),
        persisted_len: len,
        deleted: None,
        deletions: 0,
    };
    for (name, (index, file)) in indexes {
        seg.indexes.insert(name.clone(), index);
        seg.index_files.insert(name, file);
    }
    seg
}

/// Points ids into the merged segment, and shifts the segments after the sources.
fn remap_ids(state: &mut ShardState, start: usize, count: usize, kept: usize, maps: &[Vec<u32>]) {
    for loc in state.ids.values_mut() {
        let seg = loc.seg as usize;
        if seg < start {
            continue;
        }
        if seg < start + count {
            loc.off = maps[seg - start][loc.off as usize];
            loc.seg = start as u32;
        } else {
            loc.seg = (seg - count + kept) as u32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(mb: usize) -> Option<Candidate> {
        Some(Candidate {
            live_bytes: mb << 20,
            deleted_ratio: 0.0,
        })
    }

    #[test]
    fn pick_takes_the_longest_run_that_fits() {
        let cap = 128 << 20;
        let ten = vec![c(10); 25];
        assert_eq!(pick(&ten, cap), Some(0..12), "12 x 10 MiB fit, 13 do not");
        let gap = vec![c(10), c(10), None, c(10), c(10), c(10)];
        assert_eq!(
            pick(&gap, cap),
            Some(3..6),
            "the appendable or a big segment splits runs"
        );
        let big = vec![c(10), None, c(90), c(10), c(10), c(10)];
        assert_eq!(
            pick(&big, cap),
            Some(2..6),
            "90 + 3 x 10: the big one absorbs its neighbours"
        );
        assert_eq!(pick(&[c(100), c(10), None], cap), None, "too lopsided");
        assert_eq!(pick(&[c(10)], cap), None);
    }

    #[test]
    fn pick_vacuums_a_lone_segment_with_many_deletions() {
        let cap = 128 << 20;
        let holey = Some(Candidate {
            live_bytes: 8 << 20,
            deleted_ratio: 0.25,
        });
        assert_eq!(pick(&[c(100), holey, None], cap), Some(1..2));
        assert_eq!(pick(&[c(100), c(8), None], cap), None);
    }
}
