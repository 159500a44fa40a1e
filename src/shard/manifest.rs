//! `manifest.json`: the list of files that, with the WAL, make up a shard.
//!
//! Owns the manifest's shape and its atomic replacement (temp + fsync + rename + fsync of
//! the directory). Invariants: every file a manifest names exists and is complete before
//! the manifest is written; files are named by a counter that never repeats, so a file
//! named in any manifest is never rewritten; replaying the WAL from `wal_start` on top of
//! the listed segments reproduces the shard.
//!
//! ```json
//! {"format": 1, "last_seq": 41, "wal_start": 42, "next_file": 9, "next_segment": 3,
//!  "segments": [{"id": 1, "sealed": true, "points": ["segments/000004.points"],
//!                "deleted": "segments/000007.deleted", "indexes": {"": "segments/000008.hnsw"}},
//!               {"id": 2, "sealed": false, "points": ["segments/000005.points"], "deleted": null, "indexes": {}}]}
//! ```
//! An appendable segment (`sealed: false`, always the last) may list several chunk files
//! that are concatenated in order; a sealed segment lists exactly one.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::shard::files;

pub const MANIFEST: &str = "manifest.json";
/// Directory for points, deletion and index files inside a shard directory.
pub const SEGMENTS_DIR: &str = "segments";
const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// Every op up to this sequence number is reflected in the listed files.
    pub last_seq: u64,
    /// The first WAL sequence number to replay.
    pub wal_start: u64,
    pub next_file: u64,
    pub next_segment: u64,
    pub segments: Vec<SegmentEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentEntry {
    pub id: u64,
    pub sealed: bool,
    pub points: Vec<String>,
    pub deleted: Option<String>,
    #[serde(default)]
    pub indexes: BTreeMap<String, String>,
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest {
            format: FORMAT,
            last_seq: 0,
            wal_start: 1,
            next_file: 1,
            next_segment: 1,
            segments: Vec::new(),
        }
    }
}

impl Manifest {
    /// Every file the manifest names (relative to the shard directory).
    pub fn files(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.segments {
            out.extend(s.points.iter().cloned());
            out.extend(s.deleted.iter().cloned());
            out.extend(s.indexes.values().cloned());
        }
        out
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // A struct of strings and integers always serialises.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Reads `manifest.json` from `dir`, or `None` for a new shard.
    pub fn load(dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("reading shard manifest", e)),
        };
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Service(format!("corrupt shard manifest {}: {e}", path.display()))
        })?;
        if m.format != FORMAT {
            return Err(Error::Service(format!(
                "unsupported shard manifest format {}",
                m.format
            )));
        }
        Ok(Some(m))
    }

    pub fn store(&self, dir: &Path) -> Result<()> {
        let bytes = self.to_bytes();
        files::write_atomic(&dir.join(MANIFEST), |w: &mut dyn Write| w.write_all(&bytes))
            .map_err(|e| Error::io("writing shard manifest", e))
    }
}

/// A new file name under `segments/` for file number `n` with the given extension.
pub fn segment_file(n: u64, ext: &str) -> String {
    format!("{SEGMENTS_DIR}/{n:06}.{ext}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_and_load() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), None);
        let m = Manifest {
            last_seq: 5,
            wal_start: 6,
            segments: vec![SegmentEntry {
                id: 1,
                sealed: true,
                points: vec![segment_file(1, "points")],
                deleted: Some(segment_file(2, "deleted")),
                indexes: BTreeMap::from([(String::new(), segment_file(3, "hnsw"))]),
            }],
            ..Manifest::default()
        };
        m.store(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), Some(m.clone()));
        assert_eq!(m.files().len(), 3);
    }
}
