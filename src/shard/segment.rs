//! The rows of a segment and their file format.
//!
//! Owns [`SegmentData`]: parallel arrays indexed by *offset* (ids, versions, payloads as
//! JSON text, see `payloads.rs`) and one contiguous `Vec<f32>` per vector name (`dim`
//! floats per offset, stored preprocessed: cosine vectors are normalised). A point that lacks a named vector has
//! zeros there and its offset in that column's `missing` set. Rows are only appended;
//! [`SegmentData::retain`] compacts in place when a segment is sealed.
//!
//! Points file (`*.points`, written once, never modified):
//! ```text
//! "SHOALSEG" | format u32 = 1 | rows u64 | columns u32 | per column: name str, dim u32
//! | ids (binio id encoding) × rows | versions u64 × rows
//! | per column: missing bitset, then rows × dim f32
//! | payloads: rows × (len u32, JSON; len 0 = empty) | crc32 of all of the above
//! ```
//! Deletion file (`*.deleted`): `"SHOALDEL" | bitset | crc32`.
//!
//! A points file is read in one piece and its checksum checked over the whole buffer
//! before anything is decoded; payload text is checked to be JSON objects but kept as
//! text (no per-row maps are built).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::ops::Range;
use std::path::Path;

use crate::collection::point::{NamedVectors, Payload};
use crate::shard::binio;
use crate::shard::binio::Dec;
use crate::shard::bitset::BitSet;
use crate::shard::files::{self, CrcReader, CrcWriter};
use crate::shard::payloads::{self, PayloadColumn};
use crate::types::PointId;

const POINTS_MAGIC: &[u8; 8] = b"SHOALSEG";
const DELETED_MAGIC: &[u8; 8] = b"SHOALDEL";
const FORMAT: u32 = 1;

/// One vector name's storage in a segment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VectorColumn {
    pub dim: usize,
    pub data: Vec<f32>,
    pub missing: BitSet,
}

impl VectorColumn {
    pub fn get(&self, offset: usize) -> Option<&[f32]> {
        if self.missing.get(offset) {
            return None;
        }
        self.data.get(offset * self.dim..(offset + 1) * self.dim)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SegmentData {
    pub ids: Vec<PointId>,
    pub versions: Vec<u64>,
    pub columns: BTreeMap<String, VectorColumn>,
    pub payloads: PayloadColumn,
}

impl SegmentData {
    /// An empty segment with one column per `(name, dim)`.
    pub fn new(dims: &BTreeMap<String, usize>) -> SegmentData {
        let columns = dims
            .iter()
            .map(|(n, &dim)| {
                (
                    n.clone(),
                    VectorColumn {
                        dim,
                        ..Default::default()
                    },
                )
            })
            .collect();
        SegmentData {
            columns,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Appends a row. `vectors` must already be preprocessed and of the right sizes;
    /// names without a column are ignored, columns without a vector are marked missing.
    pub fn push(&mut self, id: PointId, version: u64, vectors: &NamedVectors, payload: Payload) {
        let offset = self.ids.len();
        for (name, col) in &mut self.columns {
            match vectors.get(name) {
                Some(v) if v.len() == col.dim => col.data.extend_from_slice(v),
                _ => {
                    col.data.resize(col.data.len() + col.dim, 0.0);
                    col.missing.set(offset);
                }
            }
        }
        self.ids.push(id);
        self.versions.push(version);
        self.payloads.push(&payload);
    }

    pub fn vector(&self, name: &str, offset: usize) -> Option<&[f32]> {
        self.columns.get(name)?.get(offset)
    }

    /// All present vectors of a row.
    pub fn vectors_of(&self, offset: usize) -> NamedVectors {
        self.columns
            .iter()
            .filter_map(|(n, c)| c.get(offset).map(|v| (n.clone(), v.to_vec())))
            .collect()
    }

    /// Bytes of vector data (what the size thresholds are measured in).
    pub fn vector_bytes(&self) -> usize {
        self.columns.values().map(|c| c.data.len() * 4).sum()
    }

    /// Compacts in place, keeping the rows where `keep(offset)` holds.
    pub fn retain(&mut self, keep: impl Fn(usize) -> bool) {
        let len = self.len();
        let kept: Vec<usize> = (0..len).filter(|&i| keep(i)).collect();
        for (j, &i) in kept.iter().enumerate() {
            self.ids[j] = self.ids[i];
            self.versions[j] = self.versions[i];
        }
        self.payloads.retain(&kept);
        self.ids.truncate(kept.len());
        self.versions.truncate(kept.len());
        for col in self.columns.values_mut() {
            let dim = col.dim;
            for (j, &i) in kept.iter().enumerate() {
                col.data.copy_within(i * dim..(i + 1) * dim, j * dim);
            }
            col.data.truncate(kept.len() * dim);
            col.data.shrink_to_fit();
            col.missing = col.missing.compact(len, &keep);
        }
        self.ids.shrink_to_fit();
        self.versions.shrink_to_fit();
        self.payloads.shrink_to_fit();
    }

    /// A copy of the rows in `range` (the part of an appendable segment not yet on disk).
    pub fn copy_range(&self, range: Range<usize>) -> SegmentData {
        let columns = self
            .columns
            .iter()
            .map(|(n, c)| {
                let mut missing = BitSet::default();
                range.clone().filter(|&i| c.missing.get(i)).for_each(|i| {
                    missing.set(i - range.start);
                });
                let data = c.data[range.start * c.dim..range.end * c.dim].to_vec();
                (
                    n.clone(),
                    VectorColumn {
                        dim: c.dim,
                        data,
                        missing,
                    },
                )
            })
            .collect();
        SegmentData {
            ids: self.ids[range.clone()].to_vec(),
            versions: self.versions[range.clone()].to_vec(),
            columns,
            payloads: self.payloads.copy_range(range),
        }
    }

    /// Appends another segment's rows (loading an appendable segment's chunks in order).
    pub fn append(&mut self, other: SegmentData) -> io::Result<()> {
        let base = self.len();
        let same_shape = self.columns.len() == other.columns.len()
            && self
                .columns
                .iter()
                .zip(&other.columns)
                .all(|((a, ca), (b, cb))| a == b && ca.dim == cb.dim);
        if !same_shape && base > 0 {
            return Err(files::corrupt(
                "chunk files of one segment disagree on vector columns",
            ));
        }
        if base == 0 {
            *self = other;
            return Ok(());
        }
        for (name, col) in other.columns {
            if let Some(mine) = self.columns.get_mut(&name) {
                mine.data.extend_from_slice(&col.data);
                (0..other.ids.len())
                    .filter(|&i| col.missing.get(i))
                    .for_each(|i| {
                        mine.missing.set(base + i);
                    });
            }
        }
        self.ids.extend(other.ids);
        self.versions.extend(other.versions);
        self.payloads.append(&other.payloads);
        Ok(())
    }

    /// Writes the points file atomically.
    pub fn write_file(&self, path: &Path) -> io::Result<()> {
        let vectors = self
            .columns
            .iter()
            .map(|(name, col)| {
                (
                    name.clone(),
                    crate::shard::index::rows_of(&col.data, col.dim),
                )
            })
            .collect();
        self.write_file_with(path, &vectors)
    }

    /// Writes the points file atomically with each column's rows taken from `vectors`
    /// (`rows` of them per column, `dim` floats each) instead of the columns' own data:
    /// a merge writes its output before it copies the vectors together.
    pub fn write_file_with(
        &self,
        path: &Path,
        vectors: &BTreeMap<String, Vec<&[f32]>>,
    ) -> io::Result<()> {
        let complete = self.columns.iter().all(|(name, col)| {
            vectors.get(name).is_some_and(|rows| {
                rows.len() == self.len() && rows.iter().all(|r| r.len() == col.dim)
            })
        });
        if !complete {
            return Err(io::Error::other(
                "points file: vector rows do not match the columns",
            ));
        }
        files::write_atomic(path, |w| {
            let mut w = CrcWriter::new(w);
            self.write_body(&mut w, vectors)?;
            w.finish()
        })
    }

    /// Appends row `off` of `other` but its vectors (a merge copying its sources' live
    /// rows; see `merge.rs`): a vector `other` lacks is marked missing here, the others
    /// are appended to the columns later, in row order. Columns must have the same
    /// names and dims.
    pub fn push_row_without_vectors(&mut self, other: &SegmentData, off: usize) {
        let offset = self.ids.len();
        for (name, col) in &mut self.columns {
            match other.columns.get(name).and_then(|c| c.get(off)) {
                Some(v) if v.len() == col.dim => {}
                _ => {
                    col.missing.set(offset);
                }
            }
        }
        self.ids.push(other.ids[off]);
        self.versions.push(other.versions[off]);
        self.payloads.push_text(other.payloads.text(off));
    }

    /// Reserves room for `rows` more rows (with `payload_bytes` of payload text in all).
    pub fn reserve_exact(&mut self, rows: usize, payload_bytes: usize) {
        self.ids.reserve_exact(rows);
        self.versions.reserve_exact(rows);
        self.payloads.reserve(rows, payload_bytes);
        for col in self.columns.values_mut() {
            col.data.reserve_exact(rows * col.dim);
        }
    }

    /// Reads and verifies a points file: one read, the checksum over the whole buffer,
    /// then decoding from memory.
    pub fn read_file(path: &Path) -> io::Result<SegmentData> {
        Self::read_file_with(path, &mut Vec::new())
    }

    /// [`SegmentData::read_file`] reading into `buf` (reused across files: fresh memory
    /// costs a page fault per 4 KiB, which was a good part of loading a segment).
    pub fn read_file_with(path: &Path, buf: &mut Vec<u8>) -> io::Result<SegmentData> {
        buf.clear();
        File::open(path)?.read_to_end(buf)?;
        let body = files::checked_body(buf)?;
        let mut d = Dec::new(body);
        let data = Self::decode(&mut d).map_err(|e| files::corrupt(e.0))?;
        if !d.is_empty() {
            return Err(files::corrupt("trailing bytes in points file"));
        }
        Ok(data)
    }

    fn decode(d: &mut Dec<'_>) -> binio::DecodeResult<SegmentData> {
        let bad = |what: &str| binio::DecodeError(what.to_string());
        if d.take(8)? != POINTS_MAGIC {
            return Err(bad("bad magic, not a points file"));
        }
        let format = d.u32()?;
        if format != FORMAT {
            return Err(binio::DecodeError(format!(
                "unsupported points file format {format}"
            )));
        }
        let rows = d.u64()? as usize;
        let ncols = d.u32()? as usize;
        let mut dims = BTreeMap::new();
        for _ in 0..ncols {
            let name = d.string()?;
            dims.insert(name, d.u32()? as usize);
        }
        // Every row takes at least 9 bytes (id, version): refuse absurd counts before
        // reserving for them.
        if rows > d.remaining() / 9 {
            return Err(bad("points file is truncated"));
        }
        let mut data = SegmentData::new(&dims);
        data.ids.reserve_exact(rows);
        for _ in 0..rows {
            data.ids.push(d.id()?);
        }
        data.versions = d
            .take(rows * 8)?
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        for col in data.columns.values_mut() {
            col.missing = BitSet::decode(d)?;
            let n = rows
                .checked_mul(col.dim)
                .filter(|n| n.saturating_mul(4) <= d.remaining())
                .ok_or_else(|| bad("points file is truncated"))?;
            col.data.reserve_exact(n);
            d.f32s_raw_into(n, &mut col.data)?;
        }
        let mut spans = Vec::with_capacity(rows);
        for _ in 0..rows {
            let text = d.bytes()?;
            if !payloads::is_valid_text(text) {
                return Err(bad("payload is not a JSON object"));
            }
            spans.push(text);
        }
        data.payloads
            .reserve(rows, spans.iter().map(|t| t.len()).sum());
        spans.into_iter().for_each(|t| data.payloads.push_text(t));
        Ok(data)
    }
}

impl SegmentData {
    fn write_body(
        &self,
        w: &mut dyn Write,
        vectors: &BTreeMap<String, Vec<&[f32]>>,
    ) -> io::Result<()> {
        let mut buf = Vec::with_capacity(1 << 16);
        buf.extend_from_slice(POINTS_MAGIC);
        binio::put_u32(&mut buf, FORMAT);
        binio::put_u64(&mut buf, self.ids.len() as u64);
        binio::put_u32(&mut buf, self.columns.len() as u32);
        for (name, col) in &self.columns {
            binio::put_str(&mut buf, name);
            binio::put_u32(&mut buf, col.dim as u32);
        }
        self.ids.iter().for_each(|id| binio::put_id(&mut buf, id));
        self.versions
            .iter()
            .for_each(|&v| binio::put_u64(&mut buf, v));
        w.write_all(&buf)?;
        for (name, col) in &self.columns {
            col.missing.write_to(w)?;
            let rows = vectors.get(name).map_or(&[][..], Vec::as_slice);
            buf.clear();
            for row in rows {
                binio::put_f32s_raw(&mut buf, row);
                if buf.len() >= 1 << 16 {
                    w.write_all(&buf)?;
                    buf.clear();
                }
            }
            w.write_all(&buf)?;
        }
        buf.clear();
        for off in 0..self.ids.len() {
            binio::put_bytes(&mut buf, self.payloads.text(off));
            if buf.len() >= 1 << 16 {
                w.write_all(&buf)?;
                buf.clear();
            }
        }
        w.write_all(&buf)?;
        Ok(())
    }
}

/// Writes a deletion file atomically.
pub fn write_deleted(path: &Path, deleted: &BitSet) -> io::Result<()> {
    files::write_atomic(path, |w| {
        let mut w = CrcWriter::new(w);
        w.write_all(DELETED_MAGIC)?;
        deleted.write_to(&mut w)?;
        w.finish()
    })
}

pub fn read_deleted(path: &Path) -> io::Result<BitSet> {
    let mut r = CrcReader::new(BufReader::new(File::open(path)?));
    files::expect_magic(&mut r, DELETED_MAGIC)?;
    let set = BitSet::read_from(&mut r)?;
    r.verify()?;
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> SegmentData {
        let dims = BTreeMap::from([("".to_string(), 2), ("img".to_string(), 3)]);
        let mut s = SegmentData::new(&dims);
        for i in 0..5u64 {
            let mut v = NamedVectors::from([("".to_string(), vec![i as f32, 1.0])]);
            if i % 2 == 0 {
                v.insert("img".into(), vec![1.0, 2.0, i as f32]);
            }
            let payload = serde_json::from_value(json!({"i": i})).unwrap();
            s.push(
                PointId::Num(i),
                10 + i,
                &v,
                if i == 3 { Payload::new() } else { payload },
            );
        }
        s
    }

    #[test]
    fn points_file_round_trips_and_detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.points");
        let s = sample();
        s.write_file(&path).unwrap();
        let back = SegmentData::read_file(&path).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.vector("img", 1), None);
        assert_eq!(back.vector("img", 2), Some(&[1.0, 2.0, 2.0][..]));
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        assert!(SegmentData::read_file(&path).is_err());
    }

    #[test]
    fn retain_copy_and_append_keep_rows_aligned() {
        let mut s = sample();
        let tail = s.copy_range(2..5);
        let mut head = s.copy_range(0..2);
        head.append(tail).unwrap();
        assert_eq!(head, s);
        s.retain(|i| i != 1 && i != 2);
        assert_eq!(
            s.ids,
            vec![PointId::Num(0), PointId::Num(3), PointId::Num(4)]
        );
        assert_eq!(s.vector("", 2), Some(&[4.0, 1.0][..]));
        assert_eq!(s.vector("img", 1), None);
        assert_eq!(s.vector("img", 2), Some(&[1.0, 2.0, 4.0][..]));
        assert_eq!(s.payloads.get(1), Payload::new());
    }

    #[test]
    fn deletion_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.deleted");
        let mut d = BitSet::default();
        d.set(7);
        write_deleted(&path, &d).unwrap();
        assert_eq!(read_deleted(&path).unwrap(), d);
    }
}
