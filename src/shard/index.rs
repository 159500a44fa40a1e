//! The seam between segments and an approximate vector index.
//!
//! Owns the [`VectorIndex`] trait that a sealed segment's search uses, the
//! [`IndexBuilder`] that the background indexer calls, and the index file wrapper
//! (`"SHOALIDX" | body written by the index | crc32`). The index itself (HNSW) lives in
//! `hnsw.rs`; [`default_builder`] is the one place that names it.
//!
//! An index is over one vector column of one sealed segment: node `i` is offset `i`.
//! It never sees deletions or filters; search passes an `accept` predicate for those.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;
use std::sync::Arc;

use crate::collection::config::Distance;
use crate::shard::files::{self, CrcReader, CrcWriter};
use crate::shard::hnsw::{HnswIndex, HnswParams};

const INDEX_MAGIC: &[u8; 8] = b"SHOALIDX";

/// A built, immutable index over a segment's vector column.
pub trait VectorIndex: Send + Sync {
    /// Up to `k` `(offset, similarity)` best first, only offsets where `accept` holds.
    fn search(
        &self,
        vectors: &[f32],
        query: &[f32],
        k: usize,
        ef: usize,
        accept: &dyn Fn(u32) -> bool,
    ) -> Vec<(u32, f32)>;
    fn write_to(&self, w: &mut dyn Write) -> io::Result<()>;
    /// Number of indexed vectors.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Parameters for one build.
#[derive(Debug, Clone)]
pub struct BuildParams {
    pub m: usize,
    pub ef_construct: usize,
    pub threads: usize,
}

/// Builds and loads indexes; swapped out in tests.
pub trait IndexBuilder: Send + Sync {
    /// An index over `rows` (node `i` is `rows[i]`, `dim` floats each; see
    /// [`rows_of`] for a contiguous column). `None` when this builder cannot index (no
    /// implementation available) or gave up because `stop` returned true (polled now
    /// and then during long builds).
    fn build(
        &self,
        rows: &[&[f32]],
        dim: usize,
        distance: Distance,
        params: &BuildParams,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Option<Arc<dyn VectorIndex>>;
    fn read(&self, r: &mut dyn Read) -> io::Result<Arc<dyn VectorIndex>>;
}

/// The rows of a contiguous vector column (`dim` floats each), as builders take them.
pub fn rows_of(vectors: &[f32], dim: usize) -> Vec<&[f32]> {
    match dim {
        0 => Vec::new(),
        _ => vectors.chunks_exact(dim).collect(),
    }
}

/// The builder used in production: HNSW.
pub fn default_builder() -> Arc<dyn IndexBuilder> {
    Arc::new(HnswBuilder)
}

struct HnswBuilder;

impl IndexBuilder for HnswBuilder {
    fn build(
        &self,
        rows: &[&[f32]],
        dim: usize,
        distance: Distance,
        params: &BuildParams,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Option<Arc<dyn VectorIndex>> {
        let hnsw = HnswParams {
            m: params.m,
            ef_construct: params.ef_construct,
        };
        let index = HnswIndex::build_rows_until(rows, dim, distance, &hnsw, params.threads, stop)?;
        Some(Arc::new(index))
    }

    fn read(&self, r: &mut dyn Read) -> io::Result<Arc<dyn VectorIndex>> {
        Ok(Arc::new(HnswIndex::read_from(r)?))
    }
}

impl VectorIndex for HnswIndex {
    fn search(
        &self,
        vectors: &[f32],
        query: &[f32],
        k: usize,
        ef: usize,
        accept: &dyn Fn(u32) -> bool,
    ) -> Vec<(u32, f32)> {
        HnswIndex::search(self, vectors, query, k, ef, accept)
    }

    fn write_to(&self, w: &mut dyn Write) -> io::Result<()> {
        HnswIndex::write_to(self, w)
    }

    fn len(&self) -> usize {
        HnswIndex::len(self)
    }
}

/// Writes an index file atomically.
pub fn write_index_file(path: &Path, index: &dyn VectorIndex) -> io::Result<()> {
    files::write_atomic(path, |w| {
        let mut w = CrcWriter::new(w);
        w.write_all(INDEX_MAGIC)?;
        index.write_to(&mut w)?;
        w.finish()
    })
}

/// Reads and verifies an index file. The body is read into memory first so the checksum
/// is verified before the index parses it.
pub fn read_index_file(
    path: &Path,
    builder: &dyn IndexBuilder,
) -> io::Result<Arc<dyn VectorIndex>> {
    let mut r = CrcReader::new(BufReader::new(File::open(path)?));
    files::expect_magic(&mut r, INDEX_MAGIC)?;
    let len = std::fs::metadata(path)?.len() as usize;
    let body = files::read_vec(&mut r, len.saturating_sub(INDEX_MAGIC.len() + 4))?;
    r.verify()?;
    builder.read(&mut &body[..])
}

/// A brute-force "index" for tests of the indexing plumbing (build in the background,
/// persist, reload, search through `accept`), independent of any real graph.
#[cfg(test)]
pub mod testing {
    use super::*;

    pub struct FlatIndex {
        pub len: usize,
        pub dim: usize,
        pub distance: Distance,
    }

    impl VectorIndex for FlatIndex {
        fn search(
            &self,
            vectors: &[f32],
            query: &[f32],
            k: usize,
            _ef: usize,
            accept: &dyn Fn(u32) -> bool,
        ) -> Vec<(u32, f32)> {
            let mut all: Vec<(u32, f32)> = (0..self.len as u32)
                .filter(|&i| accept(i))
                .map(|i| {
                    let v = &vectors[i as usize * self.dim..(i as usize + 1) * self.dim];
                    (i, self.distance.similarity(v, query))
                })
                .collect();
            all.sort_by(|a, b| b.1.total_cmp(&a.1));
            all.truncate(k);
            all
        }

        fn write_to(&self, w: &mut dyn Write) -> io::Result<()> {
            let distance = serde_json::to_vec(&self.distance).map_err(files::corrupt)?;
            w.write_all(&(self.len as u64).to_le_bytes())?;
            w.write_all(&(self.dim as u64).to_le_bytes())?;
            w.write_all(&distance)
        }

        fn len(&self) -> usize {
            self.len
        }
    }

    pub struct FlatBuilder;

    impl IndexBuilder for FlatBuilder {
        fn build(
            &self,
            rows: &[&[f32]],
            dim: usize,
            distance: Distance,
            _: &BuildParams,
            _: &(dyn Fn() -> bool + Sync),
        ) -> Option<Arc<dyn VectorIndex>> {
            Some(Arc::new(FlatIndex {
                len: rows.len(),
                dim,
                distance,
            }))
        }

        fn read(&self, r: &mut dyn Read) -> io::Result<Arc<dyn VectorIndex>> {
            let len = files::read_u64(r)? as usize;
            let dim = files::read_u64(r)? as usize;
            let mut rest = Vec::new();
            r.read_to_end(&mut rest)?;
            let distance = serde_json::from_slice(&rest).map_err(files::corrupt)?;
            Ok(Arc::new(FlatIndex { len, dim, distance }))
        }
    }
}
