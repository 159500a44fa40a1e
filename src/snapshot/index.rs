//! The archive index, `shoal-index.json`: the first entry of every archive shoal writes,
//! listing each file that follows by name and size (`{"format":1,"files":{"0/wal/x":
//! 1024,..}}`). With it the reader refuses an unlisted, resized or repeated entry when
//! its header is read, before a byte of it is written. The writer learns the list by
//! running its fill twice (see `archive.rs`): once to plan, once to write.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::bounded::{parse_json, read_bounded, too_big, MAX_JSON};
use super::entries::{clean_name, EntryTree, MAX_ENTRIES};
use crate::error::{Error, Result};

/// Name of the index entry, always the first in an archive that has one.
pub const INDEX: &str = "shoal-index.json";
/// The index layout this shoal writes and reads.
pub const INDEX_FORMAT: u32 = 1;

/// The index: every file's size by its name, the manifest and the index excepted.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Index {
    /// Layout of the index ([`INDEX_FORMAT`]).
    pub format: u32,
    /// Size of each file by its name inside the archive.
    pub files: BTreeMap<String, u64>,
}

impl Index {
    /// An empty index of the current format.
    pub fn new() -> Self {
        Index {
            format: INDEX_FORMAT,
            files: BTreeMap::new(),
        }
    }

    /// Serialises the index (compact: it is read before anything else).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(Error::service)
    }

    /// Reads an index entry of `size` bytes (hostile input) with the [`MAX_JSON`] cap,
    /// checked before anything is buffered; see [`Index::parse`].
    pub fn read(reader: impl std::io::Read, size: u64) -> Result<Index> {
        if size > MAX_JSON {
            return Err(too_big(INDEX, MAX_JSON));
        }
        Index::parse(&read_bounded(reader, MAX_JSON, INDEX)?)
    }

    /// Parses an index (hostile input): every name is checked as an entry name would be
    /// (plain, within the limits, no file that is also a directory or has entries under
    /// it), and the count of files is bounded.
    pub fn parse(bytes: &[u8]) -> Result<Index> {
        let index: Index = parse_json(bytes, INDEX)?;
        if index.format != INDEX_FORMAT {
            return Err(Error::BadInput(format!(
                "Invalid snapshot: archive index format {} is not supported; this shoal reads format {INDEX_FORMAT}",
                index.format
            )));
        }
        if index.files.len() > MAX_ENTRIES {
            return Err(Error::BadInput(format!(
                "Invalid snapshot: the archive index lists more than {MAX_ENTRIES} files"
            )));
        }
        let mut tree = EntryTree::default();
        for name in index.files.keys() {
            let clean = clean_name(name)?;
            if clean != *name || is_reserved(name) {
                return Err(Error::BadInput(format!(
                    "Invalid snapshot: the archive index lists `{}`, which is not a plain entry name",
                    name.escape_debug()
                )));
            }
            tree.add_file(name)?;
        }
        Ok(index)
    }
}

/// Names the archive itself uses: never listed in an index.
fn is_reserved(name: &str) -> bool {
    name == INDEX || name == super::archive::MANIFEST
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Result<Index> {
        Index::read(json.as_bytes(), json.len() as u64)
    }

    #[test]
    fn a_written_index_reads_back() {
        let mut index = Index::new();
        index.files.insert("0/wal/a".into(), 3);
        let bytes = index.to_bytes().unwrap();
        assert_eq!(
            Index::read(bytes.as_slice(), bytes.len() as u64).unwrap(),
            index
        );
    }

    #[test]
    fn hostile_indexes_are_refused() {
        for bad in [
            r#"{"format":2,"files":{}}"#,
            r#"{"format":1,"files":{"../x":1}}"#,
            r#"{"format":1,"files":{"./x":1}}"#,
            r#"{"format":1,"files":{"a":1,"a/b":1}}"#,
            r#"{"format":1,"files":{"shoal-manifest.json":1}}"#,
            r#"{"format":1,"files":[]}"#,
        ] {
            let err = read(bad).unwrap_err();
            assert!(matches!(err, Error::BadInput(_)), "{bad}: {err}");
        }
        let err = Index::read(std::io::repeat(b' '), MAX_JSON + 1).unwrap_err();
        assert!(err.to_string().contains("larger than the limit"), "{err}");
    }
}
