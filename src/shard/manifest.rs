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

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::shard::files;
pub use crate::shard::names::SEGMENTS_DIR;
use crate::shard::names::{FileKind, ShardFileName};
use crate::shard::ShardConfig;

pub const MANIFEST: &str = "manifest.json";
const FORMAT: u32 = 1;
/// A larger `manifest.json` is refused before it is read (a real one lists a few
/// hundred bytes per segment).
pub const MAX_MANIFEST_BYTES: u64 = 8 << 20;
/// Counters and ids must stay below this, so `+ 1` never overflows anywhere.
pub const MAX_COUNTER: u64 = 1 << 62;

/// Why a shard manifest (or the shard data it describes) cannot be used. Converted
/// into [`Error::BadInput`]: shard data comes from snapshots and transfers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardDataError {
    #[error("manifest.json is larger than {MAX_MANIFEST_BYTES} bytes")]
    TooLarge,
    #[error("manifest.json is not a shard manifest: {0}")]
    Parse(String),
    #[error("unsupported shard manifest format {0}")]
    Format(u32),
    #[error("{0}")]
    Inconsistent(String),
    #[error("{0}")]
    Mismatch(String),
}

impl From<ShardDataError> for Error {
    fn from(err: ShardDataError) -> Error {
        Error::BadInput(format!("Invalid shard data: {err}"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// Every op up to this sequence number is reflected in the listed files.
    pub last_seq: u64,
    /// The first WAL sequence number to replay; always `last_seq + 1`.
    pub wal_start: u64,
    pub next_file: u64,
    pub next_segment: u64,
    pub segments: Vec<SegmentEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentEntry {
    pub id: u64,
    pub sealed: bool,
    pub points: Vec<ShardFileName>,
    pub deleted: Option<ShardFileName>,
    #[serde(default)]
    pub indexes: BTreeMap<String, ShardFileName>,
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
    pub fn files(&self) -> Vec<ShardFileName> {
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

    /// Parses and checks a manifest from untrusted bytes (see [`Manifest::check`]).
    pub fn parse(bytes: &[u8]) -> std::result::Result<Manifest, ShardDataError> {
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(ShardDataError::TooLarge);
        }
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ShardDataError::Parse(e.to_string()))?;
        m.check()?;
        Ok(m)
    }

    /// The structural rules every manifest shoal writes obeys: format 1,
    /// `wal_start == last_seq + 1`, counters below [`MAX_COUNTER`], segment ids unique and
    /// below `next_segment`, every file named once, in the slot of its kind, and numbered
    /// below `next_file`.
    pub fn check(&self) -> std::result::Result<(), ShardDataError> {
        let bad = |why: String| Err(ShardDataError::Inconsistent(why));
        if self.format != FORMAT {
            return Err(ShardDataError::Format(self.format));
        }
        for (what, value) in [
            ("last_seq", self.last_seq),
            ("wal_start", self.wal_start),
            ("next_file", self.next_file),
            ("next_segment", self.next_segment),
        ] {
            if value >= MAX_COUNTER {
                return bad(format!("{what} {value} is out of range"));
            }
        }
        if self.wal_start != self.last_seq + 1 {
            return bad(format!(
                "wal_start {} does not follow last_seq {}",
                self.wal_start, self.last_seq
            ));
        }
        let mut ids = HashSet::new();
        let mut names = HashSet::new();
        for seg in &self.segments {
            if seg.id >= self.next_segment || !ids.insert(seg.id) {
                return bad(format!(
                    "segment id {} is repeated or not below next_segment",
                    seg.id
                ));
            }
            let slots = seg
                .points
                .iter()
                .map(|f| (f, FileKind::Points))
                .chain(seg.deleted.iter().map(|f| (f, FileKind::Deleted)))
                .chain(seg.indexes.values().map(|f| (f, FileKind::Hnsw)));
            for (file, kind) in slots {
                if file.kind() != kind {
                    return bad(format!("{file} is listed as a {kind:?} file"));
                }
                if file.number() >= self.next_file {
                    return bad(format!("{file} is not numbered below next_file"));
                }
                if !names.insert(file.as_str()) {
                    return bad(format!("{file} is listed twice"));
                }
            }
        }
        Ok(())
    }

    /// Checks what depends on the collection config: index keys are vector names of it.
    pub fn check_config(&self, config: &ShardConfig) -> std::result::Result<(), ShardDataError> {
        for seg in &self.segments {
            if let Some(name) = seg
                .indexes
                .keys()
                .find(|n| !config.vectors.contains_key(*n))
            {
                return Err(ShardDataError::Mismatch(format!(
                    "segment {} has an index for vector `{name}`, which the collection does not have",
                    seg.id
                )));
            }
        }
        Ok(())
    }

    /// Reads and checks `manifest.json` from `dir`, or `None` for a new shard. The file
    /// is refused unread when larger than [`MAX_MANIFEST_BYTES`].
    pub fn load(dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("reading shard manifest", e)),
        };
        let len = file
            .metadata()
            .map_err(|e| Error::io("reading shard manifest", e))?
            .len();
        if len > MAX_MANIFEST_BYTES {
            return Err(ShardDataError::TooLarge.into());
        }
        let mut bytes = Vec::with_capacity(len as usize);
        file.take(MAX_MANIFEST_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io("reading shard manifest", e))?;
        Ok(Some(Manifest::parse(&bytes)?))
    }

    pub fn store(&self, dir: &Path) -> Result<()> {
        let bytes = self.to_bytes();
        files::write_atomic(&dir.join(MANIFEST), |w: &mut dyn Write| w.write_all(&bytes))
            .map_err(|e| Error::io("writing shard manifest", e))
    }
}

/// A new file name under `segments/` for file number `n` of `kind`.
pub fn segment_file(n: u64, kind: FileKind) -> ShardFileName {
    ShardFileName::segment(n, kind)
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
            next_file: 4,
            next_segment: 2,
            segments: vec![SegmentEntry {
                id: 1,
                sealed: true,
                points: vec![segment_file(1, FileKind::Points)],
                deleted: Some(segment_file(2, FileKind::Deleted)),
                indexes: BTreeMap::from([(String::new(), segment_file(3, FileKind::Hnsw))]),
            }],
            ..Manifest::default()
        };
        m.store(dir.path()).unwrap();
        assert_eq!(Manifest::load(dir.path()).unwrap(), Some(m.clone()));
        assert_eq!(m.files().len(), 3);
    }

    fn sample() -> serde_json::Value {
        serde_json::json!({
            "format": 1, "last_seq": 41, "wal_start": 42, "next_file": 9, "next_segment": 3,
            "segments": [
                {"id": 1, "sealed": true, "points": ["segments/000004.points"],
                 "deleted": "segments/000007.deleted", "indexes": {"": "segments/000008.hnsw"}},
                {"id": 2, "sealed": false, "points": ["segments/000005.points"], "deleted": null, "indexes": {}}
            ]
        })
    }

    fn parse(v: &serde_json::Value) -> std::result::Result<Manifest, ShardDataError> {
        Manifest::parse(&serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn the_documented_manifest_parses() {
        let m = parse(&sample()).unwrap();
        assert_eq!(m.files().len(), 4);
    }

    #[test]
    fn names_outside_segments_are_refused() {
        for (pointer, name) in [
            ("/segments/0/points/0", "../../B/0/wal/000000000001.log"),
            ("/segments/0/points/0", "/etc/passwd"),
            ("/segments/0/deleted", "segments/../../x.deleted"),
            ("/segments/0/indexes/", "../000008.hnsw"),
            ("/segments/0/indexes/", "/tmp/000008.hnsw"),
            ("/segments/1/points/0", "wal/000000000001.log"),
            ("/segments/1/points/0", "manifest.json"),
        ] {
            let mut v = sample();
            *v.pointer_mut(pointer).unwrap() = serde_json::json!(name);
            assert!(parse(&v).is_err(), "{name} was accepted");
        }
    }

    #[test]
    fn structural_rules_are_checked() {
        let cases: Vec<(&str, serde_json::Value)> = vec![
            ("/format", 2.into()),
            ("/wal_start", 41.into()),
            ("/wal_start", 1.into()),
            ("/last_seq", (MAX_COUNTER).into()),
            ("/next_file", (MAX_COUNTER).into()),
            ("/next_file", 8.into()),
            ("/next_segment", 2.into()),
            ("/segments/1/id", 1.into()),
            ("/segments/1/points/0", "segments/000004.points".into()),
            ("/segments/0/deleted", "segments/000007.points".into()),
            ("/segments/0/points/0", "segments/000004.hnsw".into()),
            ("/segments/0/indexes/", "segments/000008.deleted".into()),
        ];
        for (pointer, value) in cases {
            let mut v = sample();
            *v.pointer_mut(pointer).unwrap() = value.clone();
            assert!(parse(&v).is_err(), "{pointer} = {value} was accepted");
        }
    }

    #[test]
    fn index_keys_must_be_vector_names_of_the_config() {
        let m = parse(&sample()).unwrap();
        let mut config =
            crate::shard::tests::config(4, crate::collection::config::Distance::Cosine, 0, 0);
        m.check_config(&config).unwrap();
        config.vectors = BTreeMap::from([("other".to_string(), config.vectors[""].clone())]);
        assert!(matches!(
            m.check_config(&config),
            Err(ShardDataError::Mismatch(_))
        ));
    }

    #[test]
    fn an_oversized_manifest_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::File::create(dir.path().join(MANIFEST)).unwrap();
        file.set_len(MAX_MANIFEST_BYTES + 1).unwrap();
        let err = Manifest::load(dir.path()).unwrap_err();
        assert!(matches!(err, Error::BadInput(_)), "{err}");
        assert!(Manifest::parse(&vec![b' '; MAX_MANIFEST_BYTES as usize + 1]).is_err());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Every name an accepted manifest lists lies directly under `segments/`.
        fn assert_names_inside(m: &Manifest) {
            for f in m.files() {
                let rest = f.as_str().strip_prefix("segments/").unwrap();
                assert!(!rest.contains('/') && !rest.contains(".."), "{f}");
                let path = f.path(Path::new("/shard"));
                assert_eq!(path.parent(), Some(Path::new("/shard/segments")));
            }
        }

        fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8)]) -> Vec<u8> {
            for &(at, b) in edits {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] = b;
                }
            }
            bytes
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                if let Ok(m) = Manifest::parse(&bytes) {
                    assert_names_inside(&m);
                }
            }

            #[test]
            fn mutated_manifests_never_panic_nor_escape(
                edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)
            ) {
                let bytes = mutate(serde_json::to_vec(&sample()).unwrap(), &edits);
                if let Ok(m) = Manifest::parse(&bytes) {
                    assert_names_inside(&m);
                    m.check().unwrap();
                }
            }

            #[test]
            fn arbitrary_names_in_every_slot_are_checked(
                name in r"[a-z0-9./\\]{0,24}",
                slot in 0usize..3,
            ) {
                let mut v = sample();
                let pointer = ["/segments/0/points/0", "/segments/0/deleted", "/segments/0/indexes/"][slot];
                *v.pointer_mut(pointer).unwrap() = serde_json::json!(name);
                if let Ok(m) = parse(&v) {
                    assert_names_inside(&m);
                }
            }
        }
    }
}
