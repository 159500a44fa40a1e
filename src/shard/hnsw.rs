//! HNSW approximate nearest neighbour index (Malkov & Yashunin, "Efficient and robust
//! approximate nearest neighbor search using Hierarchical Navigable Small World graphs").
//!
//! # Structure
//!
//! The index is a graph over *offsets* `0..n` into a slice of `n * dim` preprocessed
//! vectors that it does not own: the segment passes the same slice to [`HnswIndex::build`]
//! and [`HnswIndex::search`]. Scores are [`Distance::similarity`] (higher is better).
//!
//! Every node draws a level `floor(-ln(U) * mL)` with `mL = 1 / ln(M)` and lives on
//! layers `0..=level`. A node keeps at most `M0 = 2M` neighbours on layer 0 and `M` on
//! the layers above. Neighbour lists are fixed-size slots `[count, id_0 .. id_cap-1]`
//! in flat `u32` arrays: `layer0` holds `n` slots of `M0 + 1` words; `upper` holds, for
//! each node with level >= 1 in offset order, `level` consecutive slots of `M + 1`
//! words (layer 1 first); `upper_start[i]` is the index of node `i`'s first upper slot.
//! Search descends greedily from the entry point (a node of the highest level) to
//! layer 1 and runs a beam search of width `ef` on layer 0. Neighbours are chosen with
//! the diversity heuristic: a candidate is kept only if it is closer to the new node
//! than to every neighbour kept before it.
//!
//! A filter (`accept`) only decides what enters the result set: rejected nodes are still
//! expanded, so filtering does not disconnect the graph. The beam stops once `ef`
//! accepted results are found and no candidate can improve them; with a very selective
//! filter this degrades towards a scan of the reachable graph.
//!
//! # Concurrency of the build
//!
//! Levels are drawn up front and the node with the highest level becomes the fixed entry
//! point; the others are inserted in order of decreasing level by `threads` workers that
//! take the next node from an atomic counter (inside `std::thread::scope`). During the
//! build neighbour words are `AtomicU32`s and every node has a `parking_lot::Mutex<()>`:
//! a list is only *changed* under its node's lock (one lock held at a time, so no
//! deadlock), while searches read lists without locking. Writers store the ids before
//! publishing the count with `Release`, readers load the count with `Acquire`, so a
//! reader may see a mix of an old and a new list but only ever ids of real neighbours
//! that live on that layer. When the build ends the atomics are turned into plain `u32`s
//! in place (same layout, no copy). A built index is immutable; concurrent searches take
//! scratch space (a visited-epoch array) from a small pool.
//!
//! # File format (version 1, little endian)
//!
//! `b"SHOALHNS"`, `u32 version`, `u32 dim`, `u8 distance`, `u8 max_level`, `u16 0`,
//! `u32 m`, `u32 m0`, `u32 ef_construct`, `u32 n`, `u32 entry`, then `n` level bytes, the
//! `layer0` words, the `upper` words, and a trailing CRC-32 of every preceding byte.
//! [`HnswIndex::read_from`] checks the checksum and every invariant search relies on
//! (counts, ids in range, neighbours present on the layer) and reports bad or truncated
//! input as [`io::ErrorKind::InvalidData`].

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering as AtomicOrdering};

use parking_lot::Mutex;
use rand::{Rng, SeedableRng};

use crate::collection::config::Distance;

const MAGIC: &[u8; 8] = b"SHOALHNS";
const FORMAT_VERSION: u32 = 1;
/// Largest `m` accepted (larger values are clamped by `build`, rejected by `read_from`).
const MAX_M: usize = 1 << 12;
/// Levels are capped here; with `M >= 2` a higher level has probability below 2^-32.
const MAX_LEVEL: usize = 32;
const MAX_DIM: usize = 65_536;
/// The first nodes are inserted by one thread so the early graph is well connected.
const SEQUENTIAL_PREFIX: usize = 256;
/// Build threads poll their stop condition once per this many insertions.
const STOP_POLL: usize = 256;
/// Idle search scratch spaces (each holds `2 * len()` bytes) kept for reuse.
const MAX_POOLED_SCRATCH: usize = 16;
/// Words per buffered write or read chunk.
const IO_CHUNK: usize = 16 * 1024;

/// Build parameters: `m` neighbours per node on upper layers (`2 * m` on layer 0) and the
/// beam width used while inserting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    pub m: usize,
    pub ef_construct: usize,
}

/// An immutable HNSW graph over vectors owned by the caller. `Send + Sync`.
pub struct HnswIndex {
    dim: usize,
    distance: Distance,
    ef_construct: usize,
    entry: u32,
    max_level: usize,
    graph: Graph<u32>,
    scratch_pool: Mutex<Vec<Scratch>>,
}

impl std::fmt::Debug for HnswIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswIndex")
            .field("len", &self.len())
            .field("dim", &self.dim)
            .field("distance", &self.distance)
            .field("m", &self.graph.m)
            .field("max_level", &self.max_level)
            .finish()
    }
}

impl HnswIndex {
    /// Graph over `vectors.len() / dim` contiguous, preprocessed vectors (offset `i` is
    /// `vectors[i*dim..(i+1)*dim]`), scored with `distance.similarity`. `threads` worker
    /// threads insert in parallel (0 is treated as 1). `m` is clamped to `2..=4096` and
    /// `ef_construct` to at least `m`.
    ///
    /// # Panics
    /// If there are `u32::MAX` or more vectors (offsets are `u32`).
    pub fn build(
        vectors: &[f32],
        dim: usize,
        distance: Distance,
        params: &HnswParams,
        threads: usize,
    ) -> HnswIndex {
        match Self::build_until(vectors, dim, distance, params, threads, &|| false) {
            Some(index) => index,
            None => unreachable!("a build that is never stopped completes"),
        }
    }

    /// [`HnswIndex::build`] that gives up (`None`) soon after `stop` returns true; it is
    /// polled every few hundred insertions by each build thread.
    pub fn build_until(
        vectors: &[f32],
        dim: usize,
        distance: Distance,
        params: &HnswParams,
        threads: usize,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Option<HnswIndex> {
        let rows: Vec<&[f32]> = match dim {
            0 => Vec::new(),
            _ => vectors.chunks_exact(dim).collect(),
        };
        Self::build_rows_until(&rows, dim, distance, params, threads, stop)
    }

    /// [`HnswIndex::build_until`] over vectors that need not be contiguous: node `i` is
    /// `rows[i]` (each `dim` floats). A merge builds its graph this way straight over
    /// the segments it merges, before their rows are copied together.
    pub fn build_rows_until(
        rows: &[&[f32]],
        dim: usize,
        distance: Distance,
        params: &HnswParams,
        threads: usize,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Option<HnswIndex> {
        let n = rows.len();
        assert!(
            rows.iter().all(|r| r.len() == dim),
            "HNSW: every row must have {dim} floats"
        );
        assert!(n < u32::MAX as usize, "HNSW: too many vectors ({n})");
        let m = params.m.clamp(2, MAX_M);
        let ef_construct = params.ef_construct.max(m);
        let levels = random_levels(n, m);
        let order = insertion_order(&levels);
        let entry = order.first().copied().unwrap_or(0);
        let max_level = levels.get(entry as usize).map_or(0, |&l| usize::from(l));
        let builder = Builder {
            graph: Graph::<AtomicU32>::new(m, levels),
            locks: (0..n).map(|_| Mutex::new(())).collect(),
            space: Space {
                vectors: Vectors::Rows(rows),
                dim,
                distance,
            },
            entry,
            max_level,
            ef_construct,
        };
        if !builder.insert_all(&order, threads.max(1), stop) {
            return None;
        }
        Some(HnswIndex {
            dim,
            distance,
            ef_construct,
            entry,
            max_level,
            graph: builder.graph.into_plain(),
            scratch_pool: Mutex::new(Vec::new()),
        })
    }

    /// Up to `k` `(offset, similarity)` pairs, best first. Only offsets with
    /// `accept(offset)` are returned, but rejected nodes are still traversed. The beam
    /// width is `max(ef, k)`. Returns nothing if `query.len() != dim` or `vectors` holds
    /// fewer than `len() * dim` floats.
    pub fn search(
        &self,
        vectors: &[f32],
        query: &[f32],
        k: usize,
        ef: usize,
        accept: &dyn Fn(u32) -> bool,
    ) -> Vec<(u32, f32)> {
        let n = self.len();
        if n == 0 || k == 0 || query.len() != self.dim || vectors.len() < n * self.dim {
            return Vec::new();
        }
        let space = Space {
            vectors: Vectors::Flat(vectors),
            dim: self.dim,
            distance: self.distance,
        };
        let mut scratch = self.take_scratch();
        let mut entry = Scored {
            sim: space.sim_to(query, self.entry),
            id: self.entry,
        };
        for layer in (1..=self.max_level).rev() {
            entry = greedy_closest(&self.graph, &space, query, entry, layer, &mut scratch.links);
        }
        let found = search_layer(
            &self.graph,
            &space,
            query,
            &[entry],
            ef.max(k),
            0,
            &mut scratch,
            accept,
        );
        self.return_scratch(scratch);
        found.into_iter().take(k).map(|s| (s.id, s.sim)).collect()
    }

    /// Writes the index in the versioned, checksummed format described in the module doc.
    pub fn write_to(&self, w: &mut dyn Write) -> io::Result<()> {
        let mut out = CrcWriter::new(w);
        out.bytes(MAGIC)?;
        out.u32(FORMAT_VERSION)?;
        out.u32(to_u32(self.dim)?)?;
        out.bytes(&[distance_code(self.distance), self.max_level as u8, 0, 0])?;
        out.u32(to_u32(self.graph.m)?)?;
        out.u32(to_u32(self.graph.m0)?)?;
        out.u32(to_u32(self.ef_construct)?)?;
        out.u32(to_u32(self.len())?)?;
        out.u32(self.entry)?;
        out.bytes(&self.graph.levels)?;
        out.words(&self.graph.layer0)?;
        out.words(&self.graph.upper)?;
        let crc = out.hasher.clone().finalize();
        out.inner.write_all(&crc.to_le_bytes())
    }

    /// Reads an index written by [`HnswIndex::write_to`]. Bad, inconsistent or truncated
    /// input is an [`io::ErrorKind::InvalidData`] error; other I/O errors pass through.
    pub fn read_from(r: &mut dyn Read) -> io::Result<HnswIndex> {
        let mut input = CrcReader::new(r);
        let header = Header::read(&mut input)?;
        let levels = input.byte_vec(header.n)?;
        let graph = read_graph(&mut input, &header, levels)?;
        let expected = input.hasher.clone().finalize();
        let mut stored = [0u8; 4];
        input.bytes(&mut stored)?;
        if u32::from_le_bytes(stored) != expected {
            return Err(invalid("HNSW file checksum mismatch"));
        }
        validate_graph(&graph, &header)?;
        Ok(HnswIndex {
            dim: header.dim,
            distance: header.distance,
            ef_construct: header.ef_construct,
            entry: header.entry,
            max_level: header.max_level,
            graph,
            scratch_pool: Mutex::new(Vec::new()),
        })
    }

    /// Number of indexed vectors.
    pub fn len(&self) -> usize {
        self.graph.levels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Vector dimension the index was built for.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Metric the index was built with.
    pub fn distance(&self) -> Distance {
        self.distance
    }

    /// Bytes of graph memory (neighbour lists, levels, slot table).
    pub fn graph_bytes(&self) -> usize {
        let g = &self.graph;
        4 * (g.layer0.len() + g.upper.len() + g.upper_start.len()) + g.levels.len()
    }

    fn return_scratch(&self, scratch: Scratch) {
        let mut pool = self.scratch_pool.lock();
        if pool.len() < MAX_POOLED_SCRATCH {
            pool.push(scratch);
        }
    }

    fn take_scratch(&self) -> Scratch {
        let pooled = self.scratch_pool.lock().pop();
        pooled.unwrap_or_else(|| Scratch::new(self.len()))
    }
}

// ---------------------------------------------------------------------------------------
// Scoring helpers

/// The vectors and the metric.
struct Space<'a> {
    vectors: Vectors<'a>,
    dim: usize,
    distance: Distance,
}

/// Where node `i`'s vector is: searches see a segment's contiguous column, builds a
/// list of rows (see [`HnswIndex::build_rows_until`]).
enum Vectors<'a> {
    Flat(&'a [f32]),
    Rows(&'a [&'a [f32]]),
}

impl Space<'_> {
    #[inline]
    fn vector(&self, id: u32) -> &[f32] {
        match self.vectors {
            Vectors::Flat(flat) => {
                let start = id as usize * self.dim;
                &flat[start..start + self.dim]
            }
            Vectors::Rows(rows) => rows[id as usize],
        }
    }

    #[inline]
    fn sim_to(&self, query: &[f32], id: u32) -> f32 {
        self.distance.similarity(query, self.vector(id))
    }

    #[inline]
    fn sim(&self, a: u32, b: u32) -> f32 {
        self.distance.similarity(self.vector(a), self.vector(b))
    }
}

/// A node with its similarity to some query; orders by similarity, then lower id first.
#[derive(Debug, Clone, Copy)]
struct Scored {
    sim: f32,
    id: u32,
}

impl Ord for Scored {
    fn cmp(&self, other: &Self) -> Ordering {
        self.sim
            .total_cmp(&other.sim)
            .then_with(|| other.id.cmp(&self.id))
    }
}

impl PartialOrd for Scored {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Scored {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Scored {}

/// Per-search reusable memory: a visited set stamped with an epoch, the heaps and a
/// buffer for one neighbour list.
struct Scratch {
    marks: Vec<u16>,
    epoch: u16,
    links: Vec<u32>,
    candidates: BinaryHeap<Scored>,
    results: BinaryHeap<Reverse<Scored>>,
}

impl Scratch {
    fn new(n: usize) -> Scratch {
        Scratch {
            marks: vec![0; n],
            epoch: 0,
            links: Vec::new(),
            candidates: BinaryHeap::new(),
            results: BinaryHeap::new(),
        }
    }

    fn reset(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.marks.fill(0);
            self.epoch = 1;
        }
        self.candidates.clear();
        self.results.clear();
    }

    /// Marks `id` visited; false if it already was.
    #[inline]
    fn visit(&mut self, id: u32) -> bool {
        let mark = &mut self.marks[id as usize];
        let fresh = *mark != self.epoch;
        *mark = self.epoch;
        fresh
    }
}

// ---------------------------------------------------------------------------------------
// Graph storage

/// One neighbour word: a plain `u32` in a built index, an `AtomicU32` during the build.
trait Word {
    fn get(&self) -> u32;
    /// Loads a list's count (`Acquire` for atomics, pairing with the writer's `Release`).
    fn get_count(&self) -> u32 {
        self.get()
    }
}

impl Word for u32 {
    #[inline]
    fn get(&self) -> u32 {
        *self
    }
}

impl Word for AtomicU32 {
    #[inline]
    fn get(&self) -> u32 {
        self.load(AtomicOrdering::Relaxed)
    }

    #[inline]
    fn get_count(&self) -> u32 {
        self.load(AtomicOrdering::Acquire)
    }
}

/// Flat neighbour lists, see the module doc for the layout.
struct Graph<W> {
    m: usize,
    m0: usize,
    levels: Vec<u8>,
    upper_start: Vec<u32>,
    layer0: Vec<W>,
    upper: Vec<W>,
}

impl<W: Word> Graph<W> {
    /// The word range `(in_layer0, start, capacity)` of a node's slot on `layer`, or
    /// `None` if the node does not live on that layer.
    #[inline]
    fn slot(&self, id: u32, layer: usize) -> Option<(bool, usize, usize)> {
        let level = usize::from(*self.levels.get(id as usize)?);
        if layer == 0 {
            Some((true, id as usize * (self.m0 + 1), self.m0))
        } else if layer <= level {
            let block = self.upper_start[id as usize] as usize + layer - 1;
            Some((false, block * (self.m + 1), self.m))
        } else {
            None
        }
    }

    #[inline]
    fn words(&self, in_layer0: bool) -> &[W] {
        if in_layer0 {
            &self.layer0
        } else {
            &self.upper
        }
    }

    /// Copies the neighbours of `id` on `layer` into `out` (empty if it is not there).
    /// Ids of nodes that do not live on `layer` are skipped, so a torn read during the
    /// build can never lead a search into another node's slot.
    #[inline]
    fn links_into(&self, id: u32, layer: usize, out: &mut Vec<u32>) {
        out.clear();
        let Some((in_layer0, start, cap)) = self.slot(id, layer) else {
            return;
        };
        let words = &self.words(in_layer0)[start..start + cap + 1];
        let count = (words[0].get_count() as usize).min(cap);
        for word in &words[1..=count] {
            let nb = word.get();
            if layer == 0
                || self
                    .levels
                    .get(nb as usize)
                    .is_some_and(|&l| usize::from(l) >= layer)
            {
                out.push(nb);
            }
        }
    }
}

impl Graph<AtomicU32> {
    fn new(m: usize, levels: Vec<u8>) -> Self {
        let m0 = 2 * m;
        let mut upper_start = Vec::with_capacity(levels.len());
        let mut blocks = 0usize;
        for &level in &levels {
            upper_start.push(u32::try_from(blocks).unwrap_or(u32::MAX));
            blocks += usize::from(level);
        }
        assert!(
            blocks < u32::MAX as usize,
            "HNSW: too many upper-layer slots"
        );
        let zeros = |len: usize| (0..len).map(|_| AtomicU32::new(0)).collect::<Vec<_>>();
        let layer0 = zeros(levels.len() * (m0 + 1));
        let upper = zeros(blocks * (m + 1));
        Graph {
            m,
            m0,
            levels,
            upper_start,
            layer0,
            upper,
        }
    }

    /// Replaces the list of `id` on `layer`. Caller holds the node's lock.
    fn store(&self, id: u32, layer: usize, list: &[u32]) {
        let Some((in_layer0, start, cap)) = self.slot(id, layer) else {
            return;
        };
        let words = &self.words(in_layer0)[start..start + cap + 1];
        let len = list.len().min(cap);
        for (word, &nb) in words[1..=len].iter().zip(list) {
            word.store(nb, AtomicOrdering::Relaxed);
        }
        words[0].store(len as u32, AtomicOrdering::Release);
    }

    /// Unwraps the atomics; `into_iter().map().collect()` reuses the allocations.
    fn into_plain(self) -> Graph<u32> {
        let plain = |v: Vec<AtomicU32>| {
            v.into_iter()
                .map(AtomicU32::into_inner)
                .collect::<Vec<u32>>()
        };
        Graph {
            m: self.m,
            m0: self.m0,
            levels: self.levels,
            upper_start: self.upper_start,
            layer0: plain(self.layer0),
            upper: plain(self.upper),
        }
    }
}

/// Levels `floor(-ln(U) / ln(m))`, capped at [`MAX_LEVEL`].
fn random_levels(n: usize, m: usize) -> Vec<u8> {
    let ml = 1.0 / (m as f64).ln();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_4a5f ^ n as u64);
    (0..n)
        .map(|_| {
            let u: f64 = 1.0 - rng.random::<f64>(); // in (0, 1]
            ((-u.ln() * ml).floor() as usize).min(MAX_LEVEL) as u8
        })
        .collect()
}

/// Offsets by decreasing level (ties by offset); the first one is the entry point.
fn insertion_order(levels: &[u8]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..levels.len() as u32).collect();
    order.sort_by_key(|&i| Reverse(levels[i as usize]));
    order
}

// ---------------------------------------------------------------------------------------
// Search primitives shared by build and query

/// Greedy walk on one layer towards `query`, starting at `current`.
fn greedy_closest<W: Word>(
    graph: &Graph<W>,
    space: &Space,
    query: &[f32],
    mut current: Scored,
    layer: usize,
    links: &mut Vec<u32>,
) -> Scored {
    loop {
        graph.links_into(current.id, layer, links);
        let before = current.id;
        for &nb in links.iter() {
            let sim = space.sim_to(query, nb);
            if sim > current.sim {
                current = Scored { sim, id: nb };
            }
        }
        if current.id == before {
            return current;
        }
    }
}

/// Beam search of width `ef` on one layer. Returns up to `ef` accepted nodes, best first.
/// Rejected nodes are expanded like accepted ones but never enter the results.
#[allow(clippy::too_many_arguments)]
fn search_layer<W: Word>(
    graph: &Graph<W>,
    space: &Space,
    query: &[f32],
    entries: &[Scored],
    ef: usize,
    layer: usize,
    scratch: &mut Scratch,
    accept: &dyn Fn(u32) -> bool,
) -> Vec<Scored> {
    scratch.reset();
    for &e in entries {
        if scratch.visit(e.id) {
            scratch.candidates.push(e);
            offer(&mut scratch.results, e, ef, accept);
        }
    }
    let mut links = std::mem::take(&mut scratch.links);
    while let Some(current) = scratch.candidates.pop() {
        if scratch.results.len() >= ef
            && scratch
                .results
                .peek()
                .is_some_and(|w| current.sim < w.0.sim)
        {
            break;
        }
        graph.links_into(current.id, layer, &mut links);
        for &nb in &links {
            if !scratch.visit(nb) {
                continue;
            }
            let sim = space.sim_to(query, nb);
            let full = scratch.results.len() >= ef;
            if full && scratch.results.peek().is_some_and(|w| sim <= w.0.sim) {
                continue;
            }
            let s = Scored { sim, id: nb };
            scratch.candidates.push(s);
            offer(&mut scratch.results, s, ef, accept);
        }
    }
    scratch.links = links;
    let mut found: Vec<Scored> = scratch.results.drain().map(|r| r.0).collect();
    found.sort_unstable_by(|a, b| b.cmp(a));
    found
}

/// Adds an accepted node to the bounded result heap, dropping the worst beyond `ef`.
#[inline]
fn offer(
    results: &mut BinaryHeap<Reverse<Scored>>,
    s: Scored,
    ef: usize,
    accept: &dyn Fn(u32) -> bool,
) {
    if accept(s.id) {
        results.push(Reverse(s));
        if results.len() > ef {
            results.pop();
        }
    }
}

/// The diversity heuristic: walks `candidates` (best first, scored against the base
/// node) and keeps one only if it is not closer to a node kept so far than to the base.
///
/// Exact duplicates of a kept node are set aside and only fill the slots left at the
/// end; otherwise the copies of a repeated vector would take every slot and cut their
/// cluster off from the rest of the graph.
fn select_diverse(
    space: &Space,
    candidates: &[Scored],
    cap: usize,
    out: &mut Vec<Scored>,
    duplicates: &mut Vec<Scored>,
) {
    out.clear();
    duplicates.clear();
    for &c in candidates {
        if out.len() >= cap {
            break;
        }
        match diversity(space, c, out) {
            Diversity::Keep => out.push(c),
            Diversity::Duplicate => duplicates.push(c),
            Diversity::Prune => {}
        }
    }
    let room = cap - out.len();
    out.extend(duplicates.iter().take(room));
}

enum Diversity {
    Keep,
    Duplicate,
    Prune,
}

fn diversity(space: &Space, c: Scored, kept: &[Scored]) -> Diversity {
    for k in kept {
        let sim = space.sim(c.id, k.id);
        if sim > c.sim {
            return Diversity::Prune;
        }
        if sim == c.sim && space.vector(c.id) == space.vector(k.id) {
            return Diversity::Duplicate;
        }
    }
    Diversity::Keep
}

// ---------------------------------------------------------------------------------------
// Parallel build

struct Builder<'a> {
    graph: Graph<AtomicU32>,
    locks: Vec<Mutex<()>>,
    space: Space<'a>,
    entry: u32,
    max_level: usize,
    ef_construct: usize,
}

/// A build worker's reusable memory.
struct Worker {
    scratch: Scratch,
    merged: Vec<Scored>,
    chosen: Vec<Scored>,
    duplicates: Vec<Scored>,
    ids: Vec<u32>,
}

impl Builder<'_> {
    /// Inserts `order[1..]` (`order[0]` is the entry point, which needs no links).
    /// Returns false if `stop` ended the build early.
    fn insert_all(&self, order: &[u32], threads: usize, stop: &(dyn Fn() -> bool + Sync)) -> bool {
        let rest = order.get(1..).unwrap_or(&[]);
        let (head, tail) = rest.split_at(rest.len().min(SEQUENTIAL_PREFIX));
        let mut worker = self.worker();
        for &id in head {
            self.insert(id, &mut worker);
        }
        let stopped = AtomicBool::new(false);
        let should_stop = |i: usize| {
            if i.is_multiple_of(STOP_POLL) && stop() {
                stopped.store(true, AtomicOrdering::Relaxed);
            }
            stopped.load(AtomicOrdering::Relaxed)
        };
        if threads == 1 {
            for (i, &id) in tail.iter().enumerate() {
                if should_stop(i) {
                    return false;
                }
                self.insert(id, &mut worker);
            }
            return true;
        }
        drop(worker);
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    let mut worker = self.worker();
                    loop {
                        let i = next.fetch_add(1, AtomicOrdering::Relaxed);
                        let Some(&id) = tail.get(i) else { break };
                        if should_stop(i) {
                            break;
                        }
                        self.insert(id, &mut worker);
                    }
                });
            }
        });
        !stopped.load(AtomicOrdering::Relaxed)
    }

    fn worker(&self) -> Worker {
        Worker {
            scratch: Scratch::new(self.graph.levels.len()),
            merged: Vec::new(),
            chosen: Vec::new(),
            duplicates: Vec::new(),
            ids: Vec::new(),
        }
    }

    /// Algorithm 1 of the paper with a fixed entry point.
    fn insert(&self, id: u32, worker: &mut Worker) {
        let space = &self.space;
        let query = space.vector(id);
        let level = usize::from(self.graph.levels[id as usize]);
        let mut entry = Scored {
            sim: space.sim_to(query, self.entry),
            id: self.entry,
        };
        for layer in (level + 1..=self.max_level).rev() {
            entry = greedy_closest(
                &self.graph,
                space,
                query,
                entry,
                layer,
                &mut worker.scratch.links,
            );
        }
        let not_self = |other: u32| other != id;
        let mut entries = vec![entry];
        for layer in (0..=level.min(self.max_level)).rev() {
            let found = search_layer(
                &self.graph,
                space,
                query,
                &entries,
                self.ef_construct,
                layer,
                &mut worker.scratch,
                &not_self,
            );
            let cap = if layer == 0 {
                self.graph.m0
            } else {
                self.graph.m
            };
            let mut chosen = std::mem::take(&mut worker.chosen);
            select_diverse(space, &found, cap, &mut chosen, &mut worker.duplicates);
            self.connect(id, layer, &chosen, worker);
            for &nb in &chosen {
                self.connect(nb.id, layer, &[Scored { sim: nb.sim, id }], worker);
            }
            worker.chosen = chosen;
            if !found.is_empty() {
                entries = found;
            }
        }
    }

    /// Adds `new` (scored against `id`) to the list of `id` on `layer`; when the list
    /// overflows, keeps a diverse subset of old and new neighbours.
    fn connect(&self, id: u32, layer: usize, new: &[Scored], worker: &mut Worker) {
        let _guard = self.locks[id as usize].lock();
        self.graph.links_into(id, layer, &mut worker.ids);
        let before = worker.ids.len();
        for s in new {
            if s.id != id && !worker.ids.contains(&s.id) {
                worker.ids.push(s.id);
            }
        }
        let cap = if layer == 0 {
            self.graph.m0
        } else {
            self.graph.m
        };
        if worker.ids.len() == before {
            return;
        }
        if worker.ids.len() <= cap {
            self.graph.store(id, layer, &worker.ids);
            return;
        }
        self.shrink(id, layer, cap, new, worker);
    }

    /// Rescores the overflowing list in `worker.ids` and stores its diverse subset.
    fn shrink(&self, id: u32, layer: usize, cap: usize, new: &[Scored], worker: &mut Worker) {
        let space = &self.space;
        worker.merged.clear();
        for &nb in &worker.ids {
            let known = new.iter().find(|s| s.id == nb).map(|s| s.sim);
            let sim = known.unwrap_or_else(|| space.sim(id, nb));
            worker.merged.push(Scored { sim, id: nb });
        }
        worker.merged.sort_unstable_by(|a, b| b.cmp(a));
        select_diverse(
            space,
            &worker.merged,
            cap,
            &mut worker.chosen,
            &mut worker.duplicates,
        );
        worker.ids.clear();
        worker.ids.extend(worker.chosen.iter().map(|s| s.id));
        self.graph.store(id, layer, &worker.ids);
    }
}

// ---------------------------------------------------------------------------------------
// File format

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn to_u32(v: usize) -> io::Result<u32> {
    u32::try_from(v).map_err(|_| invalid("HNSW value does not fit the file format"))
}

fn distance_code(d: Distance) -> u8 {
    match d {
        Distance::Cosine => 0,
        Distance::Euclid => 1,
        Distance::Dot => 2,
        Distance::Manhattan => 3,
    }
}

fn distance_from_code(code: u8) -> io::Result<Distance> {
    match code {
        0 => Ok(Distance::Cosine),
        1 => Ok(Distance::Euclid),
        2 => Ok(Distance::Dot),
        3 => Ok(Distance::Manhattan),
        _ => Err(invalid("HNSW file has an unknown distance")),
    }
}

/// A writer that checksums what it writes.
struct CrcWriter<'a> {
    inner: &'a mut dyn Write,
    hasher: crc32fast::Hasher,
}

impl<'a> CrcWriter<'a> {
    fn new(inner: &'a mut dyn Write) -> Self {
        CrcWriter {
            inner,
            hasher: crc32fast::Hasher::new(),
        }
    }

    fn bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hasher.update(bytes);
        self.inner.write_all(bytes)
    }

    fn u32(&mut self, v: u32) -> io::Result<()> {
        self.bytes(&v.to_le_bytes())
    }

    fn words(&mut self, words: &[u32]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(IO_CHUNK * 4);
        for chunk in words.chunks(IO_CHUNK) {
            buf.clear();
            chunk
                .iter()
                .for_each(|w| buf.extend_from_slice(&w.to_le_bytes()));
            self.bytes(&buf)?;
        }
        Ok(())
    }
}

/// A reader that checksums what it reads and reports truncation as `InvalidData`.
struct CrcReader<'a> {
    inner: &'a mut dyn Read,
    hasher: crc32fast::Hasher,
}

impl<'a> CrcReader<'a> {
    fn new(inner: &'a mut dyn Read) -> Self {
        CrcReader {
            inner,
            hasher: crc32fast::Hasher::new(),
        }
    }

    /// Fills `buf` exactly; does not checksum (used for the trailing CRC itself).
    fn bytes(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => invalid("HNSW file is truncated"),
            _ => e,
        })
    }

    fn hashed(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.bytes(buf)?;
        self.hasher.update(buf);
        Ok(())
    }

    fn u32(&mut self) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.hashed(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads `len` bytes in chunks, so a lying header cannot make us touch more memory
    /// than the input really holds.
    fn byte_vec(&mut self, len: usize) -> io::Result<Vec<u8>> {
        let mut out = reserve::<u8>(len)?;
        let mut buf = vec![0u8; IO_CHUNK * 4];
        while out.len() < len {
            let part = &mut buf[..(len - out.len()).min(IO_CHUNK * 4)];
            self.hashed(part)?;
            out.extend_from_slice(part);
        }
        Ok(out)
    }

    fn words(&mut self, len: usize) -> io::Result<Vec<u32>> {
        let mut out = reserve::<u32>(len)?;
        let mut buf = vec![0u8; IO_CHUNK * 4];
        while out.len() < len {
            let part = &mut buf[..(len - out.len()).min(IO_CHUNK) * 4];
            self.hashed(part)?;
            out.extend(
                part.chunks_exact(4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            );
        }
        Ok(out)
    }
}

/// An empty vector with room for `len` items, or `InvalidData` if that cannot be had.
fn reserve<T>(len: usize) -> io::Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|_| invalid("HNSW file declares an impossible size"))?;
    Ok(v)
}

/// The fixed-size header after the magic.
struct Header {
    dim: usize,
    distance: Distance,
    max_level: usize,
    m: usize,
    m0: usize,
    ef_construct: usize,
    n: usize,
    entry: u32,
}

impl Header {
    fn read(input: &mut CrcReader) -> io::Result<Header> {
        let mut magic = [0u8; 8];
        input.hashed(&mut magic)?;
        if &magic != MAGIC {
            return Err(invalid("not an HNSW index file (bad magic)"));
        }
        let version = input.u32()?;
        if version != FORMAT_VERSION {
            return Err(invalid("unsupported HNSW file version"));
        }
        let dim = input.u32()? as usize;
        let mut small = [0u8; 4];
        input.hashed(&mut small)?;
        let header = Header {
            dim,
            distance: distance_from_code(small[0])?,
            max_level: usize::from(small[1]),
            m: input.u32()? as usize,
            m0: input.u32()? as usize,
            ef_construct: input.u32()? as usize,
            n: input.u32()? as usize,
            entry: input.u32()?,
        };
        header.validate(small[2..] == [0, 0])?;
        Ok(header)
    }

    fn validate(&self, reserved_zero: bool) -> io::Result<()> {
        let ok = reserved_zero
            && self.dim <= MAX_DIM
            && (self.dim > 0 || self.n == 0)
            && (2..=MAX_M).contains(&self.m)
            && self.m0 == 2 * self.m
            && self.max_level <= MAX_LEVEL
            && self.n < u32::MAX as usize
            && (self.n == 0 || (self.entry as usize) < self.n);
        if ok {
            Ok(())
        } else {
            Err(invalid("HNSW file header is inconsistent"))
        }
    }
}

/// Reads the neighbour arrays that follow the levels.
fn read_graph(input: &mut CrcReader, header: &Header, levels: Vec<u8>) -> io::Result<Graph<u32>> {
    let (m, m0, n) = (header.m, header.m0, header.n);
    let mut upper_start = reserve::<u32>(n)?;
    let mut blocks = 0usize;
    for &level in &levels {
        if usize::from(level) > header.max_level {
            return Err(invalid("HNSW node level above the maximum"));
        }
        upper_start.push(to_u32(blocks)?);
        blocks += usize::from(level);
    }
    to_u32(blocks)?;
    let layer0_len = n
        .checked_mul(m0 + 1)
        .ok_or_else(|| invalid("HNSW file too large"))?;
    let layer0 = input.words(layer0_len)?;
    let upper_len = blocks
        .checked_mul(m + 1)
        .ok_or_else(|| invalid("HNSW file too large"))?;
    let upper = input.words(upper_len)?;
    Ok(Graph {
        m,
        m0,
        levels,
        upper_start,
        layer0,
        upper,
    })
}

/// Checks everything search relies on: the entry point is on the top layer, counts fit
/// their slots, and every neighbour exists and lives on the layer of the list.
fn validate_graph(graph: &Graph<u32>, header: &Header) -> io::Result<()> {
    let n = graph.levels.len();
    if n > 0 && usize::from(graph.levels[header.entry as usize]) != header.max_level {
        return Err(invalid("HNSW entry point is not on the top layer"));
    }
    if n == 0 && header.max_level != 0 {
        return Err(invalid("empty HNSW index with layers"));
    }
    for id in 0..n as u32 {
        for layer in 0..=usize::from(graph.levels[id as usize]) {
            validate_slot(graph, id, layer)?;
        }
    }
    Ok(())
}

fn validate_slot(graph: &Graph<u32>, id: u32, layer: usize) -> io::Result<()> {
    let Some((in_layer0, start, cap)) = graph.slot(id, layer) else {
        return Err(invalid("HNSW slot missing"));
    };
    let words = &graph.words(in_layer0)[start..start + cap + 1];
    let count = words[0] as usize;
    if count > cap {
        return Err(invalid("HNSW neighbour count exceeds the slot"));
    }
    let on_layer = |nb: &u32| {
        graph
            .levels
            .get(*nb as usize)
            .is_some_and(|&l| usize::from(l) >= layer)
    };
    if words[1..=count].iter().all(on_layer) {
        Ok(())
    } else {
        Err(invalid("HNSW neighbour out of range or not on the layer"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use std::time::Instant;

    fn random_vectors(n: usize, dim: usize, distance: Distance, seed: u64) -> Vec<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let v: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            out.extend(distance.preprocess(v));
        }
        out
    }

    fn exact(
        vectors: &[f32],
        dim: usize,
        distance: Distance,
        query: &[f32],
        k: usize,
        accept: &dyn Fn(u32) -> bool,
    ) -> Vec<u32> {
        let mut best = BinaryHeap::new();
        for (i, v) in vectors.chunks_exact(dim).enumerate() {
            let s = Scored {
                sim: distance.similarity(query, v),
                id: i as u32,
            };
            if accept(s.id)
                && (best.len() < k || best.peek().is_some_and(|w: &Reverse<Scored>| s > w.0))
            {
                best.push(Reverse(s));
                if best.len() > k {
                    best.pop();
                }
            }
        }
        best.into_sorted_vec().into_iter().map(|r| r.0.id).collect()
    }

    /// Mean recall@k of `index` over the first `queries` query vectors.
    #[allow(clippy::too_many_arguments)]
    fn recall(
        index: &HnswIndex,
        vectors: &[f32],
        queries: &[f32],
        dim: usize,
        distance: Distance,
        k: usize,
        ef: usize,
        accept: &dyn Fn(u32) -> bool,
    ) -> f64 {
        let mut hits = 0usize;
        let mut total = 0usize;
        for q in queries.chunks(dim) {
            let truth = exact(vectors, dim, distance, q, k, accept);
            let got = index.search(vectors, q, k, ef, accept);
            assert!(
                got.windows(2).all(|w| w[0].1 >= w[1].1),
                "results not sorted"
            );
            hits += got.iter().filter(|(id, _)| truth.contains(id)).count();
            total += truth.len();
        }
        hits as f64 / total.max(1) as f64
    }

    const PARAMS: HnswParams = HnswParams {
        m: 16,
        ef_construct: 100,
    };

    fn check_recall(distance: Distance) {
        let (n, dim) = (3000, 24);
        let vectors = random_vectors(n, dim, distance, 1);
        let queries = random_vectors(50, dim, distance, 2);
        let index = HnswIndex::build(&vectors, dim, distance, &PARAMS, 2);
        assert_eq!(index.len(), n);
        let r = recall(&index, &vectors, &queries, dim, distance, 10, 64, &|_| true);
        assert!(r >= 0.9, "{distance:?}: recall {r}");
    }

    #[test]
    fn recall_cosine() {
        check_recall(Distance::Cosine);
    }

    #[test]
    fn recall_dot() {
        check_recall(Distance::Dot);
    }

    #[test]
    fn recall_euclid() {
        check_recall(Distance::Euclid);
    }

    #[test]
    fn recall_manhattan() {
        check_recall(Distance::Manhattan);
    }

    #[test]
    fn single_threaded_build_works() {
        let (n, dim, distance) = (1500, 16, Distance::Euclid);
        let vectors = random_vectors(n, dim, distance, 3);
        let queries = random_vectors(30, dim, distance, 4);
        let index = HnswIndex::build(&vectors, dim, distance, &PARAMS, 1);
        let r = recall(&index, &vectors, &queries, dim, distance, 10, 64, &|_| true);
        assert!(r >= 0.9, "recall {r}");
    }

    #[test]
    fn filtered_search_returns_only_accepted_and_good_neighbours() {
        let (n, dim, distance) = (3000, 24, Distance::Cosine);
        let vectors = random_vectors(n, dim, distance, 5);
        let queries = random_vectors(40, dim, distance, 6);
        let index = HnswIndex::build(&vectors, dim, distance, &PARAMS, 2);
        let even = |id: u32| id.is_multiple_of(2);
        for q in queries.chunks(dim) {
            let got = index.search(&vectors, q, 10, 64, &even);
            assert_eq!(got.len(), 10);
            assert!(got.iter().all(|(id, _)| even(*id)));
        }
        let r = recall(&index, &vectors, &queries, dim, distance, 10, 64, &even);
        assert!(r >= 0.9, "filtered recall {r}");
        // A filter that accepts a single far-away node still finds it.
        let only = |id: u32| id == 1234;
        let got = index.search(&vectors, &queries[..dim], 10, 16, &only);
        assert_eq!(got.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1234]);
    }

    #[test]
    fn search_edge_cases() {
        let (n, dim, distance) = (200, 8, Distance::Euclid);
        let vectors = random_vectors(n, dim, distance, 7);
        let index = HnswIndex::build(&vectors, dim, distance, &PARAMS, 2);
        let q = &vectors[5 * dim..6 * dim];
        let got = index.search(&vectors, q, 1, 1, &|_| true);
        assert_eq!(got[0].0, 5);
        assert_eq!(index.search(&vectors, q, 500, 10, &|_| true).len(), n);
        assert!(index.search(&vectors, q, 0, 10, &|_| true).is_empty());
        assert!(index.search(&vectors, &q[1..], 3, 10, &|_| true).is_empty());
        assert!(index
            .search(&vectors[..dim], q, 3, 10, &|_| true)
            .is_empty());
        assert!(index.search(&vectors, q, 3, 10, &|_| false).is_empty());
    }

    #[test]
    fn empty_and_single_point_indexes() {
        let empty = HnswIndex::build(&[], 4, Distance::Cosine, &PARAMS, 2);
        assert!(empty.is_empty());
        assert!(empty
            .search(&[], &[1.0, 0.0, 0.0, 0.0], 5, 10, &|_| true)
            .is_empty());
        let back = round_trip(&empty);
        assert!(back.is_empty());
        let zero_dim = HnswIndex::build(&[1.0], 0, Distance::Dot, &PARAMS, 1);
        assert!(zero_dim.is_empty());

        let one = vec![0.6, 0.8, 0.0, 0.0];
        let index = HnswIndex::build(&one, 4, Distance::Cosine, &PARAMS, 3);
        assert_eq!(index.len(), 1);
        let got = index.search(&one, &[1.0, 0.0, 0.0, 0.0], 5, 10, &|_| true);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, 0);
        assert!((got[0].1 - 0.6).abs() < 1e-6);
        let back = round_trip(&index);
        assert_eq!(back.search(&one, &one, 1, 1, &|_| true)[0].0, 0);
    }

    #[test]
    fn duplicate_vectors_do_not_break_the_build() {
        let dim = 4;
        let vectors: Vec<f32> = (0..500)
            .flat_map(|i| [(i % 3) as f32, 1.0, 0.0, 0.0])
            .collect();
        let index = HnswIndex::build(&vectors, dim, Distance::Euclid, &PARAMS, 2);
        let got = index.search(&vectors, &[1.0, 1.0, 0.0, 0.0], 10, 20, &|_| true);
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|(_, s)| *s == 0.0));
    }

    fn serialize(index: &HnswIndex) -> Vec<u8> {
        let mut bytes = Vec::new();
        index.write_to(&mut bytes).expect("write to a Vec");
        bytes
    }

    fn round_trip(index: &HnswIndex) -> HnswIndex {
        let bytes = serialize(index);
        HnswIndex::read_from(&mut bytes.as_slice()).expect("read back")
    }

    #[test]
    fn write_read_round_trip_gives_identical_results() {
        let (n, dim, distance) = (1500, 16, Distance::Dot);
        let vectors = random_vectors(n, dim, distance, 8);
        let queries = random_vectors(20, dim, distance, 9);
        let index = HnswIndex::build(&vectors, dim, distance, &PARAMS, 2);
        let bytes = serialize(&index);
        let back = HnswIndex::read_from(&mut bytes.as_slice()).expect("read back");
        assert_eq!(back.len(), n);
        assert_eq!(back.dim(), dim);
        assert_eq!(back.distance(), distance);
        assert_eq!(serialize(&back), bytes);
        for q in queries.chunks(dim) {
            let odd = |id: u32| !id.is_multiple_of(2);
            assert_eq!(
                index.search(&vectors, q, 10, 40, &|_| true),
                back.search(&vectors, q, 10, 40, &|_| true)
            );
            assert_eq!(
                index.search(&vectors, q, 5, 40, &odd),
                back.search(&vectors, q, 5, 40, &odd)
            );
        }
    }

    fn assert_invalid(bytes: &[u8], what: &str) {
        match HnswIndex::read_from(&mut &bytes[..]) {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}: {e}"),
            Ok(_) => panic!("{what}: accepted"),
        }
    }

    #[test]
    fn truncated_and_corrupt_files_are_errors() {
        let (n, dim, distance) = (300, 8, Distance::Euclid);
        let vectors = random_vectors(n, dim, distance, 10);
        let bytes = serialize(&HnswIndex::build(&vectors, dim, distance, &PARAMS, 2));
        let step = (bytes.len() / 300).max(1);
        for len in (0..bytes.len())
            .step_by(step)
            .chain(bytes.len() - 8..bytes.len())
        {
            assert_invalid(&bytes[..len], &format!("truncated at {len}"));
        }
        for pos in (0..bytes.len())
            .step_by(step)
            .chain(bytes.len() - 4..bytes.len())
        {
            let mut bad = bytes.clone();
            bad[pos] ^= 0x5a;
            assert_invalid(&bad, &format!("flipped byte {pos}"));
        }
        assert_invalid(b"", "empty input");
        assert_invalid(
            b"SHOALHNSxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "garbage header",
        );
    }

    /// Rewrites the checksum so that only the structural validation can catch the damage.
    fn with_fixed_crc(mut bytes: Vec<u8>) -> Vec<u8> {
        let body = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..body]);
        bytes[body..].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn structurally_bad_files_with_valid_checksums_are_errors() {
        let (n, dim, distance) = (300, 8, Distance::Cosine);
        let vectors = random_vectors(n, dim, distance, 11);
        let index = HnswIndex::build(&vectors, dim, distance, &PARAMS, 2);
        let bytes = serialize(&index);
        let header_len = 8 + 4 * 3 + 4 * 5;
        let layer0 = header_len + n;
        let patch = |at: usize, v: u32| {
            let mut b = bytes.clone();
            b[at..at + 4].copy_from_slice(&v.to_le_bytes());
            with_fixed_crc(b)
        };
        assert_invalid(&patch(layer0, 999), "count above the slot");
        assert_invalid(&patch(layer0 + 4, n as u32), "neighbour out of range");
        assert_invalid(&patch(8, 2), "unknown version");
        assert_invalid(&patch(header_len - 4, n as u32), "entry out of range");
        assert_invalid(&patch(header_len - 8, u32::MAX - 1), "huge n");
        assert_invalid(&patch(12, 0), "zero dim");
        let mut b = bytes.clone();
        b[16] = 9; // distance code
        assert_invalid(&with_fixed_crc(b), "unknown distance");
        // A level-0 node named as a neighbour on layer 1.
        let low = (0..n)
            .find(|&i| index.graph.levels[i] == 0)
            .expect("a level-0 node");
        let upper = layer0 + n * (2 * PARAMS.m + 1) * 4;
        let mut b = patch(upper, 1);
        b[upper + 4..upper + 8].copy_from_slice(&(low as u32).to_le_bytes());
        assert_invalid(&with_fixed_crc(b), "neighbour not on the layer");
    }

    #[test]
    fn index_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<HnswIndex>();
    }

    #[test]
    fn concurrent_searches_agree_with_sequential_ones() {
        let (n, dim, distance) = (1000, 16, Distance::Cosine);
        let vectors = random_vectors(n, dim, distance, 12);
        let queries = random_vectors(16, dim, distance, 13);
        let index = HnswIndex::build(&vectors, dim, distance, &PARAMS, 2);
        let expected: Vec<_> = queries
            .chunks(dim)
            .map(|q| index.search(&vectors, q, 10, 32, &|_| true))
            .collect();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for (q, want) in queries.chunks(dim).zip(&expected) {
                        assert_eq!(&index.search(&vectors, q, 10, 32, &|_| true), want);
                    }
                });
            }
        });
    }

    /// The 500k x 128-d target. Run with
    /// `cargo test --release --lib shard::hnsw -- --ignored --nocapture`;
    /// `SHOAL_HNSW_BENCH_N` overrides the point count.
    #[test]
    #[ignore]
    fn bench_recall_and_speed() {
        let n: usize = std::env::var("SHOAL_HNSW_BENCH_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(500_000);
        let (dim, distance, k, n_queries) = (128, Distance::Cosine, 10, 200);
        let threads = std::thread::available_parallelism().map_or(2, |p| p.get());
        let vectors = random_vectors(n, dim, distance, 21);
        let queries = random_vectors(n_queries, dim, distance, 22);
        let started = Instant::now();
        let index = HnswIndex::build(&vectors, dim, distance, &PARAMS, threads);
        println!(
            "n={n} dim={dim} {distance:?} m={} ef_construct={} threads={threads}: build {:.1}s, graph {:.1} MiB",
            PARAMS.m,
            PARAMS.ef_construct,
            started.elapsed().as_secs_f64(),
            index.graph_bytes() as f64 / (1 << 20) as f64
        );
        let started = Instant::now();
        let truth: Vec<Vec<u32>> = queries
            .chunks(dim)
            .map(|q| exact(&vectors, dim, distance, q, k, &|_| true))
            .collect();
        let exact_qps = n_queries as f64 / started.elapsed().as_secs_f64();
        println!("exact scan: {exact_qps:.1} q/s (1 thread)");
        for ef in [32, 64, 128, 256] {
            let started = Instant::now();
            let results: Vec<_> = queries
                .chunks(dim)
                .map(|q| index.search(&vectors, q, k, ef, &|_| true))
                .collect();
            let qps = n_queries as f64 / started.elapsed().as_secs_f64();
            let hits: usize = results
                .iter()
                .zip(&truth)
                .map(|(r, t)| r.iter().filter(|(id, _)| t.contains(id)).count())
                .sum();
            let recall = hits as f64 / (k * n_queries) as f64;
            println!(
                "ef={ef}: recall@{k} {recall:.4}, {qps:.0} q/s (1 thread), {:.0}x exact",
                qps / exact_qps
            );
        }
    }
}
