//! Verification of received shard data (an unpacked snapshot or transfer) against the
//! collection config, before it replaces a live shard.
//!
//! [`verify_shard_dir`] reads, without changing anything:
//! - `manifest.json`, with every structural check of [`Manifest::parse`] and its index
//!   keys against the config's vector names;
//! - `segments/` and `wal/`, where present, must be real directories (not links);
//! - every file the manifest lists: it must exist directly under `segments/` and be a
//!   regular file (names are [`ShardFileName`]s, so no listed path leaves the directory);
//! - every points file, decoded in full: its vector columns (names and dimensions; shoal
//!   stores dense `f32` vectors only) must be exactly the config's;
//! - every deletion file, decoded;
//! - every WAL record from the manifest's `wal_start`: it must decode and pass the same
//!   validation a write passes before it is logged ([`validate_op`]).
//!
//! Any mismatch is a [`ShardDataError`] (400): the caller then drops the unpacked
//! directory and the live shard is untouched. Index files are only checked to exist: an
//! unreadable index is rebuilt when the shard opens.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::error::{Error, Result};
use crate::shard::manifest::{Manifest, ShardDataError};
use crate::shard::names::{ShardFileName, SEGMENTS_DIR, WAL_DIR};
use crate::shard::segment::{self, SegmentData};
use crate::shard::state::validate_op;
use crate::shard::{wal, ShardConfig};

/// What a verified shard directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Rows in the listed points files (live and deleted).
    pub rows: usize,
    /// WAL records that the shard replays when it opens.
    pub wal_records: u64,
}

/// Checks the shard data in `dir` against `config`; see the module documentation.
pub fn verify_shard_dir(dir: &Path, config: &ShardConfig) -> Result<Verified> {
    let manifest = Manifest::load(dir)?
        .ok_or_else(|| ShardDataError::Inconsistent("the shard has no manifest.json".into()))?;
    manifest.check_config(config)?;
    for sub in [SEGMENTS_DIR, WAL_DIR] {
        match fs::symlink_metadata(dir.join(sub)) {
            Ok(meta) if !meta.file_type().is_dir() => {
                return Err(invalid(format!("{sub} is not a directory")))
            }
            _ => {}
        }
    }
    for file in manifest.files() {
        check_regular_file(dir, &file)?;
    }
    let expected = config.dims();
    let mut rows = 0;
    let mut buf = Vec::new();
    for seg in &manifest.segments {
        for file in &seg.points {
            let data = SegmentData::read_file_with(&file.path(dir), &mut buf)
                .map_err(|e| invalid(format!("{file}: {e}")))?;
            check_columns(file, &data, &expected)?;
            rows += data.len();
        }
        if let Some(file) = &seg.deleted {
            segment::read_deleted(&file.path(dir)).map_err(|e| invalid(format!("{file}: {e}")))?;
        }
    }
    let mut wal_records = 0;
    wal::scan(dir, manifest.wal_start, |_, op| {
        wal_records += 1;
        validate_op(config, &op)
    })
    .map_err(|e| match e {
        Error::Service(why) => invalid(why),
        other => other,
    })?;
    Ok(Verified { rows, wal_records })
}

fn invalid(why: String) -> Error {
    ShardDataError::Mismatch(why).into()
}

fn check_regular_file(dir: &Path, file: &ShardFileName) -> Result<()> {
    match fs::symlink_metadata(file.path(dir)) {
        Ok(meta) if meta.file_type().is_file() => Ok(()),
        Ok(_) => Err(invalid(format!("{file} is not a regular file"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(invalid(format!(
            "{file} is listed in manifest.json but missing"
        ))),
        Err(e) => Err(Error::io(format!("checking {file}"), e)),
    }
}

/// A points file's columns must be exactly the config's vector names and dimensions.
pub fn check_columns(
    file: &ShardFileName,
    data: &SegmentData,
    expected: &BTreeMap<String, usize>,
) -> std::result::Result<(), ShardDataError> {
    let found: BTreeMap<&str, usize> = data
        .columns
        .iter()
        .map(|(name, col)| (name.as_str(), col.dim))
        .collect();
    let wanted: BTreeMap<&str, usize> = expected.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    if found != wanted {
        return Err(ShardDataError::Mismatch(format!(
            "{file} holds vectors {} but the collection has {}",
            describe(&found),
            describe(&wanted)
        )));
    }
    Ok(())
}

fn describe(columns: &BTreeMap<&str, usize>) -> String {
    let parts: Vec<String> = columns
        .iter()
        .map(|(name, dim)| {
            let name = if name.is_empty() { "(default)" } else { name };
            format!("{name}: dim {dim}")
        })
        .collect();
    format!("[{}]", parts.join(", "))
}
