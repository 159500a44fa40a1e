//! Nearest-neighbour search over a shard's segments.
//!
//! Owns the choice per segment between its vector index and an exact scan, and the
//! merge of per-segment top-k lists. A segment uses its index when it has one for the
//! vector, the request is not `exact`, and the filter is not too selective: if fewer
//! points than `full_scan_threshold` KB worth of vectors match in that segment, a scan
//! is both exact and cheap. Exact scan is one linear pass over the contiguous vectors,
//! skipping deleted rows, rows without the vector, and rows the filter rejects.
//! All scores here are internal similarities (higher is better).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::error::{Error, Result};
use crate::shard::filter::Filter;
use crate::shard::index::VectorIndex;
use crate::shard::state::{Loc, Segment, ShardState};
use crate::shard::SearchRequest;

/// One candidate: a row and its similarity to the query.
#[derive(Debug, Clone, Copy)]
pub struct Hit {
    pub sim: f32,
    pub loc: Loc,
}

impl PartialEq for Hit {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Hit {}

impl PartialOrd for Hit {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Greater = better: higher similarity, then the earlier location (deterministic ties).
impl Ord for Hit {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sim
            .total_cmp(&other.sim)
            .then_with(|| (other.loc.seg, other.loc.off).cmp(&(self.loc.seg, self.loc.off)))
    }
}

/// Keeps the best `k` hits seen.
struct TopK {
    k: usize,
    heap: BinaryHeap<std::cmp::Reverse<Hit>>,
}

impl TopK {
    /// A top-`k` of a scan over at most `rows` rows: its memory is sized by what can
    /// really be pushed (`min(k, rows)`), never by the requested `k` alone.
    fn new(k: usize, rows: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.min(rows).saturating_add(1)),
        }
    }

    /// Room reserved for hits (tests check it follows the rows, not `k`).
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.heap.capacity()
    }

    fn push(&mut self, hit: Hit) {
        if self.heap.len() < self.k {
            self.heap.push(std::cmp::Reverse(hit));
        } else if self.heap.peek().is_some_and(|worst| hit > worst.0) {
            self.heap.pop();
            self.heap.push(std::cmp::Reverse(hit));
        }
    }

    /// Takes in the hits of another top-k (of a part of the same scan).
    fn merge(&mut self, other: TopK) {
        other.heap.into_iter().for_each(|hit| self.push(hit.0));
    }

    fn into_sorted(self) -> Vec<Hit> {
        let mut v: Vec<Hit> = self.heap.into_iter().map(|r| r.0).collect();
        v.sort_by(|a, b| b.cmp(a));
        v
    }
}

/// The best `req.limit` rows for the request across all segments, best first, with the
/// score threshold applied.
pub fn search(state: &ShardState, req: &SearchRequest) -> Result<Vec<Hit>> {
    let params = state.config.vectors.get(&req.vector_name).ok_or_else(|| {
        Error::BadInput(format!(
            "Not existing vector name error: {}",
            req.vector_name
        ))
    })?;
    if req.vector.len() != params.size {
        return Err(Error::BadInput(format!(
            "Vector dimension error: expected dim: {}, got {}",
            params.size,
            req.vector.len()
        )));
    }
    if req.limit == 0 {
        return Ok(Vec::new());
    }
    let distance = params.distance;
    let query = distance.preprocess(req.vector.clone());
    let full_scan_points =
        state.config.hnsw.full_scan_threshold.saturating_mul(1024) / (params.size * 4).max(1);
    let rows = state.segments.iter().map(|seg| seg.data().len()).sum();
    let mut top = TopK::new(req.limit, rows);
    for (si, seg) in state.segments.iter().enumerate() {
        let index = seg.indexes.get(&req.vector_name).filter(|_| !req.exact);
        let use_index =
            index.filter(|_| !too_selective(seg, req.filter.as_ref(), full_scan_points));
        let scan = SegmentScan {
            seg,
            seg_index: si as u32,
            req,
            query: &query,
            distance,
        };
        match use_index {
            Some(index) => scan.with_index(index.as_ref(), &mut top),
            None => scan.exact(&mut top),
        }
    }
    let hits = top.into_sorted();
    if hits.iter().any(|h| !h.sim.is_finite()) {
        return Err(crate::collection::score_overflow());
    }
    Ok(match req.score_threshold {
        Some(t) => hits
            .into_iter()
            .filter(|h| distance.passes_threshold(distance.to_user_score(h.sim), t))
            .collect(),
        None => hits,
    })
}

/// True when fewer than `threshold` live rows of the segment pass the filter.
fn too_selective(seg: &Segment, filter: Option<&Filter>, threshold: usize) -> bool {
    let Some(filter) = filter else { return false };
    let data = seg.data();
    let matching = (0..data.len())
        .filter(|&off| {
            !seg.deleted.get(off) && filter.matches(data.ids[off], &data.payloads.get(off))
        })
        .take(threshold)
        .count();
    matching < threshold
}

/// Segments with at least this many rows are scanned by several threads in an exact search.
const PARALLEL_SCAN_ROWS: usize = 32 * 1024;

/// Rows `t * per_thread ..` of a `rows`-row segment (empty past the end).
fn range_of(t: usize, per_thread: usize, rows: usize) -> std::ops::Range<usize> {
    (t * per_thread).min(rows)..((t + 1) * per_thread).min(rows)
}

struct SegmentScan<'a> {
    seg: &'a Segment,
    seg_index: u32,
    req: &'a SearchRequest,
    query: &'a [f32],
    distance: crate::collection::config::Distance,
}

impl SegmentScan<'_> {
    /// Whether row `off` may be returned: live, has the vector, passes the filter.
    fn accept(&self, off: usize) -> bool {
        let data = self.seg.data();
        if self.seg.deleted.get(off) {
            return false;
        }
        let Some(col) = data.columns.get(&self.req.vector_name) else {
            return false;
        };
        if col.missing.get(off) {
            return false;
        }
        self.req
            .filter
            .as_ref()
            .is_none_or(|f| f.matches(data.ids[off], &data.payloads.get(off)))
    }

    /// Scores every accepted row. A large segment is split between the cores (a query
    /// from one client then uses all of them; the scan is bound by memory bandwidth,
    /// which one core does not exhaust).
    fn exact(&self, top: &mut TopK) {
        let data = self.seg.data();
        let Some(col) = data.columns.get(&self.req.vector_name) else {
            return;
        };
        if col.dim == 0 {
            return;
        }
        let rows = col.data.len() / col.dim;
        let threads = if rows >= PARALLEL_SCAN_ROWS {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            1
        };
        let per_thread = rows.div_ceil(threads.max(1));
        let k = top.k;
        let parts: Vec<TopK> = std::thread::scope(|scope| {
            let mut helpers = Vec::new();
            for t in 1..threads {
                let range = range_of(t, per_thread, rows);
                let spawned = std::thread::Builder::new()
                    .name("exact-scan".into())
                    .spawn_scoped(scope, {
                        let range = range.clone();
                        move || {
                            let mut part = TopK::new(k, range.len());
                            self.exact_rows(col, range, &mut part);
                            part
                        }
                    });
                match spawned {
                    Ok(handle) => helpers.push(handle),
                    // No thread to be had: this one scans that part too.
                    Err(_) => self.exact_rows(col, range, top),
                }
            }
            self.exact_rows(col, range_of(0, per_thread, rows), top);
            helpers
                .into_iter()
                .map(|handle| match handle.join() {
                    Ok(part) => part,
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        });
        parts.into_iter().for_each(|part| top.merge(part));
    }

    /// [`Self::exact`] over rows `range` of the segment.
    fn exact_rows(
        &self,
        col: &crate::shard::segment::VectorColumn,
        range: std::ops::Range<usize>,
        top: &mut TopK,
    ) {
        let data = self.seg.data();
        // The same checks as `accept`, with the lookups hoisted out of the hot loop.
        let filter = self.req.filter.as_ref();
        let first = range.start;
        let vectors = &col.data[range.start * col.dim..range.end * col.dim];
        for (i, v) in vectors.chunks_exact(col.dim).enumerate() {
            let off = first + i;
            if self.seg.deleted.get(off) || col.missing.get(off) {
                continue;
            }
            if filter.is_some_and(|f| !f.matches(data.ids[off], &data.payloads.get(off))) {
                continue;
            }
            let sim = self.distance.similarity(v, self.query);
            top.push(Hit {
                sim,
                loc: Loc {
                    seg: self.seg_index,
                    off: off as u32,
                },
            });
        }
    }

    fn with_index(&self, index: &dyn VectorIndex, top: &mut TopK) {
        let data = self.seg.data();
        let Some(col) = data.columns.get(&self.req.vector_name) else {
            return;
        };
        // Neither the result count nor the beam can usefully exceed the indexed rows.
        let k = self.req.limit.min(index.len());
        let ef = self.req.hnsw_ef.unwrap_or(64).min(index.len()).max(k);
        let accept = |off: u32| self.accept(off as usize);
        for (off, sim) in index.search(&col.data, self.query, k, ef, &accept) {
            top.push(Hit {
                sim,
                loc: Loc {
                    seg: self.seg_index,
                    off,
                },
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(sim: f32, off: u32) -> Hit {
        Hit {
            sim,
            loc: Loc { seg: 0, off },
        }
    }

    #[test]
    fn top_k_room_follows_the_rows_not_the_requested_k() {
        let top = TopK::new(usize::MAX, 10);
        assert!(top.capacity() < 64, "{}", top.capacity());
        let top = TopK::new(1 << 63, 0);
        assert!(top.capacity() < 64, "{}", top.capacity());
        let top = TopK::new(5, 1_000_000);
        assert!(top.capacity() < 64, "{}", top.capacity());
    }

    #[test]
    fn top_k_with_a_huge_k_keeps_every_hit_in_order() {
        let mut top = TopK::new(usize::MAX, 3);
        for (i, sim) in [0.5, 0.9, 0.1, 0.7].into_iter().enumerate() {
            top.push(hit(sim, i as u32));
        }
        let sims: Vec<f32> = top.into_sorted().iter().map(|h| h.sim).collect();
        assert_eq!(sims, vec![0.9, 0.7, 0.5, 0.1]);
        let mut top = TopK::new(2, 100);
        for (i, sim) in [0.5, 0.9, 0.1, 0.7].into_iter().enumerate() {
            top.push(hit(sim, i as u32));
        }
        let sims: Vec<f32> = top.into_sorted().iter().map(|h| h.sim).collect();
        assert_eq!(sims, vec![0.9, 0.7]);
    }
}
