//! Names of the files inside a shard directory, checked: the only place a shard-relative
//! file name becomes a path.
//!
//! A [`ShardFileName`] is exactly one of
//! - `segments/<digits>.points`, `segments/<digits>.deleted`, `segments/<digits>.hnsw`
//!   (segment files, named by a file counter, see `manifest.rs`);
//! - `wal/<digits>.log` (WAL files, named by their first sequence number, see `wal.rs`);
//!
//! with 1 to 20 ASCII digits that fit a `u64`. Nothing else parses: no root, no `..`, no
//! second level, no other characters. Names read from a manifest (on disk, in a snapshot
//! or in a transfer) are parsed into this type when the manifest is parsed, so a path
//! built with [`ShardFileName::path`] always lies directly under the shard's `segments/`
//! or `wal/` directory.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Directory for points, deletion and index files inside a shard directory.
pub const SEGMENTS_DIR: &str = "segments";
/// Directory of the WAL inside a shard directory.
pub const WAL_DIR: &str = "wal";
/// Most digits a file number may have (`u64::MAX` has 20).
const MAX_DIGITS: usize = 20;

/// What a shard file holds, from its directory and extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    /// `segments/*.points`: the rows of a segment or a chunk of one.
    Points,
    /// `segments/*.deleted`: a segment's deletion bitset.
    Deleted,
    /// `segments/*.hnsw`: a vector index of one column of a sealed segment.
    Hnsw,
    /// `wal/*.log`: a WAL file.
    Wal,
}

impl FileKind {
    fn dir(self) -> &'static str {
        match self {
            FileKind::Wal => WAL_DIR,
            _ => SEGMENTS_DIR,
        }
    }

    fn ext(self) -> &'static str {
        match self {
            FileKind::Points => "points",
            FileKind::Deleted => "deleted",
            FileKind::Hnsw => "hnsw",
            FileKind::Wal => "log",
        }
    }

    /// True for the files listed in a shard manifest (everything under `segments/`).
    pub fn is_segment_file(self) -> bool {
        self != FileKind::Wal
    }
}

/// Why a string is not a shard file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{shown}` is not a shard file name (expected segments/<digits>.<points|deleted|hnsw> or wal/<digits>.log)")]
pub struct BadFileName {
    /// The refused name, shortened and with control characters escaped.
    shown: String,
}

impl BadFileName {
    fn of(name: &str) -> BadFileName {
        let mut shown: String = name.chars().take(64).flat_map(char::escape_debug).collect();
        if name.chars().count() > 64 {
            shown.push_str("...");
        }
        BadFileName { shown }
    }
}

/// A checked shard-relative file name; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ShardFileName {
    name: String,
    kind: FileKind,
    number: u64,
}

impl ShardFileName {
    /// The name of segment file number `n` of `kind` (zero-padded to 6 digits).
    ///
    /// # Panics
    /// Never for a segment kind; for [`FileKind::Wal`] use [`ShardFileName::wal`].
    pub fn segment(n: u64, kind: FileKind) -> ShardFileName {
        debug_assert!(kind.is_segment_file(), "a segment file kind");
        ShardFileName {
            name: format!("{}/{n:06}.{}", kind.dir(), kind.ext()),
            kind,
            number: n,
        }
    }

    /// The name of the WAL file whose first sequence number is `first_seq`.
    pub fn wal(first_seq: u64) -> ShardFileName {
        ShardFileName {
            name: format!("{WAL_DIR}/{first_seq:012}.log"),
            kind: FileKind::Wal,
            number: first_seq,
        }
    }

    /// Parses a name from untrusted input.
    pub fn parse(name: &str) -> Result<ShardFileName, BadFileName> {
        let bad = || BadFileName::of(name);
        let (dir, file) = name.split_once('/').ok_or_else(bad)?;
        let (digits, ext) = file.split_once('.').ok_or_else(bad)?;
        let kind = match (dir, ext) {
            (SEGMENTS_DIR, "points") => FileKind::Points,
            (SEGMENTS_DIR, "deleted") => FileKind::Deleted,
            (SEGMENTS_DIR, "hnsw") => FileKind::Hnsw,
            (WAL_DIR, "log") => FileKind::Wal,
            _ => return Err(bad()),
        };
        if digits.is_empty()
            || digits.len() > MAX_DIGITS
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let number = digits.parse::<u64>().map_err(|_| bad())?;
        Ok(ShardFileName {
            name: name.to_string(),
            kind,
            number,
        })
    }

    /// Parses the bare name of a file found in the shard's `wal/` directory.
    pub fn wal_entry(file_name: &str) -> Result<ShardFileName, BadFileName> {
        ShardFileName::parse(&format!("{WAL_DIR}/{file_name}")).and_then(|n| match n.kind {
            FileKind::Wal => Ok(n),
            _ => Err(BadFileName::of(file_name)),
        })
    }

    /// The name relative to the shard directory, e.g. `segments/000004.points`.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> FileKind {
        self.kind
    }

    /// The file counter (segment files) or the first sequence number (WAL files).
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The file's path inside `shard_dir`: always `shard_dir/segments/<file>` or
    /// `shard_dir/wal/<file>`.
    pub fn path(&self, shard_dir: &Path) -> PathBuf {
        shard_dir.join(&self.name)
    }
}

impl fmt::Display for ShardFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl TryFrom<String> for ShardFileName {
    type Error = BadFileName;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        ShardFileName::parse(&name)
    }
}

impl From<ShardFileName> for String {
    fn from(name: ShardFileName) -> String {
        name.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_exactly_the_names_shoal_writes() {
        for (name, kind, n) in [
            ("segments/000004.points", FileKind::Points, 4),
            ("segments/7.deleted", FileKind::Deleted, 7),
            ("segments/000008.hnsw", FileKind::Hnsw, 8),
            ("wal/000000000001.log", FileKind::Wal, 1),
            (
                "segments/18446744073709551615.points",
                FileKind::Points,
                u64::MAX,
            ),
        ] {
            let parsed = ShardFileName::parse(name).unwrap();
            assert_eq!(
                (parsed.as_str(), parsed.kind(), parsed.number()),
                (name, kind, n)
            );
        }
        assert_eq!(
            ShardFileName::segment(4, FileKind::Points).as_str(),
            "segments/000004.points"
        );
        assert_eq!(ShardFileName::wal(1).as_str(), "wal/000000000001.log");
        assert_eq!(
            ShardFileName::wal_entry("000000000001.log").unwrap(),
            ShardFileName::wal(1)
        );
    }

    #[test]
    fn refuses_everything_else() {
        for name in [
            "",
            "segments/",
            "segments/.points",
            "segments/1",
            "segments/1.",
            "segments/1.wal",
            "segments/1.points.tmp",
            "segments/1.points/",
            "segments/a.points",
            "segments/-1.points",
            "segments/+1.points",
            "segments/1 .points",
            "segments/18446744073709551616.points",
            "segments/000000000000000000001.points",
            "segments/../1.points",
            "segments/sub/1.points",
            "../segments/1.points",
            "/segments/1.points",
            "/etc/passwd",
            "../../B/0/wal/000000000001.log",
            "segments\\1.points",
            "segments//1.points",
            "./segments/1.points",
            "wal/1.points",
            "segments/1.log",
            "manifest.json",
            "segments/١.points",
        ] {
            assert!(ShardFileName::parse(name).is_err(), "{name:?} was accepted");
        }
        assert!(ShardFileName::wal_entry("../1.log").is_err());
    }

    #[test]
    fn paths_stay_under_the_shard_directory() {
        let dir = Path::new("/data/c/0");
        let name = ShardFileName::parse("segments/12.hnsw").unwrap();
        assert_eq!(name.path(dir), Path::new("/data/c/0/segments/12.hnsw"));
    }

    #[test]
    fn serde_checks_names() {
        let ok: ShardFileName = serde_json::from_str(r#""segments/1.points""#).unwrap();
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#""segments/1.points""#
        );
        assert!(serde_json::from_str::<ShardFileName>(r#""../x""#).is_err());
    }
}
