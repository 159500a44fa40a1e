//! The rows of a segment and their file format.
//!
//! Owns [`SegmentData`]: parallel arrays indexed by *offset* (ids, versions, payloads) and
//! one contiguous `Vec<f32>` per vector name (`dim` floats per offset, stored
//! preprocessed: cosine vectors are normalised). A point that lacks a named vector has
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

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::ops::Range;
use std::path::Path;

use crate::collection::point::{NamedVectors, Payload};
use crate::shard::bitset::BitSet;
use crate::shard::files::{self, CrcReader, CrcWriter};
use crate::shard::{binio, ops};
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
    pub payloads: Vec<Payload>,
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
        self.payloads.push(payload);
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
            self.payloads.swap(j, i);
        }
        self.ids.truncate(kept.len());
        self.versions.truncate(kept.len());
        self.payloads.truncate(kept.len());
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
            payloads: self.payloads[range].to_vec(),
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
        self.payloads.extend(other.payloads);
        Ok(())
    }

    /// Writes the points file atomically.
    pub fn write_file(&self, path: &Path) -> io::Result<()> {
        let payload = |off: usize| &self.payloads[off];
        self.view(&payload).write_file(path)
    }

    /// The rows as a [`PointsView`], each row's payload taken from `payload`.
    pub fn view<'a>(&'a self, payload: &'a dyn Fn(usize) -> &'a Payload) -> PointsView<'a> {
        PointsView {
            ids: &self.ids,
            versions: &self.versions,
            columns: &self.columns,
            payload,
        }
    }

    /// Appends row `off` of `other` except its payload (a merge moves payloads in
    /// later, see `merge.rs`); columns must have the same names and dims.
    pub fn push_row_without_payload(&mut self, other: &SegmentData, off: usize) {
        let offset = self.ids.len();
        for (name, col) in &mut self.columns {
            match other.columns.get(name).and_then(|c| c.get(off)) {
                Some(v) if v.len() == col.dim => col.data.extend_from_slice(v),
                _ => {
                    col.data.resize(col.data.len() + col.dim, 0.0);
                    col.missing.set(offset);
                }
            }
        }
        self.ids.push(other.ids[off]);
        self.versions.push(other.versions[off]);
    }

    /// Reserves room for `rows` more rows in ids, versions and vector columns.
    pub fn reserve_exact(&mut self, rows: usize) {
        self.ids.reserve_exact(rows);
        self.versions.reserve_exact(rows);
        for col in self.columns.values_mut() {
            col.data.reserve_exact(rows * col.dim);
        }
    }

    /// Reads and verifies a points file.
    pub fn read_file(path: &Path) -> io::Result<SegmentData> {
        let file = File::open(path)?;
        let mut r = CrcReader::new(BufReader::with_capacity(1 << 20, file));
        let data = Self::read_body(&mut r)?;
        r.verify()?;
        Ok(data)
    }

    fn read_body(r: &mut dyn Read) -> io::Result<SegmentData> {
        files::expect_magic(r, POINTS_MAGIC)?;
        let format = files::read_u32(r)?;
        if format != FORMAT {
            return Err(files::corrupt(format!(
                "unsupported points file format {format}"
            )));
        }
        let rows = files::read_u64(r)? as usize;
        let ncols = files::read_u32(r)? as usize;
        let mut dims = BTreeMap::new();
        for _ in 0..ncols {
            let len = files::read_u32(r)? as usize;
            let name = String::from_utf8(files::read_vec(r, len)?)
                .map_err(|_| files::corrupt("column name"))?;
            dims.insert(name, files::read_u32(r)? as usize);
        }
        let mut data = SegmentData::new(&dims);
        data.ids = read_ids(r, rows)?;
        let versions = files::read_vec(r, rows * 8)?;
        data.versions = versions
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        for col in data.columns.values_mut() {
            col.missing = BitSet::read_from(r)?;
            col.data = read_f32s(r, rows * col.dim)?;
        }
        data.payloads.reserve_exact(rows);
        for _ in 0..rows {
            let len = files::read_u32(r)? as usize;
            let bytes = files::read_vec(r, len)?;
            let payload = if bytes.is_empty() {
                Payload::new()
            } else {
                serde_json::from_slice(&bytes).map_err(files::corrupt)?
            };
            data.payloads.push(payload);
        }
        Ok(data)
    }
}

/// Borrowed rows in the points file layout, with payloads looked up per offset: lets a
/// merge write its output while the payloads still live in the segments it merges.
pub struct PointsView<'a> {
    pub ids: &'a [PointId],
    pub versions: &'a [u64],
    pub columns: &'a BTreeMap<String, VectorColumn>,
    pub payload: &'a dyn Fn(usize) -> &'a Payload,
}

impl PointsView<'_> {
    /// Writes the points file atomically.
    pub fn write_file(&self, path: &Path) -> io::Result<()> {
        files::write_atomic(path, |w| {
            let mut w = CrcWriter::new(w);
            self.write_body(&mut w)?;
            w.finish()
        })
    }

    fn write_body(&self, w: &mut dyn Write) -> io::Result<()> {
        let mut buf = Vec::with_capacity(1 << 16);
        buf.extend_from_slice(POINTS_MAGIC);
        binio::put_u32(&mut buf, FORMAT);
        binio::put_u64(&mut buf, self.ids.len() as u64);
        binio::put_u32(&mut buf, self.columns.len() as u32);
        for (name, col) in self.columns {
            binio::put_str(&mut buf, name);
            binio::put_u32(&mut buf, col.dim as u32);
        }
        self.ids.iter().for_each(|id| binio::put_id(&mut buf, id));
        self.versions
            .iter()
            .for_each(|&v| binio::put_u64(&mut buf, v));
        w.write_all(&buf)?;
        for col in self.columns.values() {
            col.missing.write_to(w)?;
            for chunk in col.data.chunks(16 * 1024) {
                buf.clear();
                binio::put_f32s_raw(&mut buf, chunk);
                w.write_all(&buf)?;
            }
        }
        for off in 0..self.ids.len() {
            buf.clear();
            ops::encode_payload((self.payload)(off), &mut buf);
            w.write_all(&buf)?;
        }
        Ok(())
    }
}

fn read_ids(r: &mut dyn Read, rows: usize) -> io::Result<Vec<PointId>> {
    let mut ids = Vec::with_capacity(rows.min(1 << 24));
    let mut buf = [0u8; 17];
    for _ in 0..rows {
        r.read_exact(&mut buf[..1])?;
        let len = if buf[0] == 0 { 8 } else { 16 };
        r.read_exact(&mut buf[1..1 + len])?;
        let id = binio::Dec::new(&buf[..1 + len])
            .id()
            .map_err(|e| files::corrupt(e.0))?;
        ids.push(id);
    }
    Ok(ids)
}

/// Reads `n` floats straight into one vector, converting 64 KiB at a time (no second
/// full-size copy of the data).
fn read_f32s(r: &mut dyn Read, n: usize) -> io::Result<Vec<f32>> {
    let mut out = Vec::with_capacity(n.min(1 << 28));
    let mut buf = vec![0u8; 64 * 1024];
    let mut left = n * 4;
    while left > 0 {
        let take = left.min(buf.len());
        r.read_exact(&mut buf[..take])?;
        out.extend(
            buf[..take]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
        left -= take;
    }
    Ok(out)
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
        assert_eq!(s.payloads[1], Payload::new());
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
