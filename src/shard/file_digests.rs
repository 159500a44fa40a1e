//! The sha256 of shard files that will not change again, remembered when they are
//! written (segment, index and deletion files, closed WAL files) or after an unpack
//! verified them, so that a snapshot or shard transfer that includes them only reads
//! them once (for the archive's own checksum) instead of hashing each file again for
//! the manifest.
//!
//! Files are known by identity (device and inode, which survive the directory renames
//! of a recovery swap), and a remembered digest is used only while the file's size and
//! modification time are what they were when it was remembered. Shard files are
//! written once under names that never repeat (see `manifest.rs`), so a digest stays
//! true for the life of its file. Should a file still change behind the size and time
//! checks, the archive's manifest lists the digest of what was written and the restore
//! refuses the archive: a stale digest can make a snapshot unusable, never wrong.
//!
//! The table is process-wide and bounded; it is cleared when full (it only saves work).

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::LazyLock;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

/// Files remembered at most (a few hundred per shard is typical).
const CAPACITY: usize = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Identity {
    dev: u64,
    ino: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

struct Known {
    stamp: Stamp,
    sha256: String,
}

static KNOWN: LazyLock<Mutex<HashMap<Identity, Known>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn identity(meta: &Metadata) -> (Identity, Stamp) {
    (
        Identity {
            dev: meta.dev(),
            ino: meta.ino(),
        },
        Stamp {
            size: meta.len(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
        },
    )
}

/// Remembers the digest of the file `meta` describes (taken after its last write).
pub fn remember(meta: &Metadata, sha256: String) {
    let (id, stamp) = identity(meta);
    let mut known = KNOWN.lock();
    if known.len() >= CAPACITY && !known.contains_key(&id) {
        known.clear();
    }
    known.insert(id, Known { stamp, sha256 });
}

/// [`remember`] for an open file; a file whose metadata cannot be read is skipped.
pub fn remember_file(file: &File, sha256: String) {
    if let Ok(meta) = file.metadata() {
        remember(&meta, sha256);
    }
}

/// [`remember`] for a path; a path whose metadata cannot be read is skipped.
pub fn remember_path(path: &Path, sha256: String) {
    if let Ok(meta) = std::fs::metadata(path) {
        remember(&meta, sha256);
    }
}

/// The remembered digest of the file `meta` describes, if it has not changed since.
pub fn lookup(meta: &Metadata) -> Option<String> {
    let (id, stamp) = identity(meta);
    let known = KNOWN.lock();
    known
        .get(&id)
        .filter(|k| k.stamp == stamp)
        .map(|k| k.sha256.clone())
}

/// Lowercase hex of a finished digest.
pub fn hex(hasher: Sha256) -> String {
    crate::snapshot::checksum::to_hex(&hasher.finalize())
}

/// A writer that hashes (in line) what passes through it.
pub struct Sha256Writer<W> {
    pub inner: W,
    pub hasher: Sha256,
}

impl<W: Write> Sha256Writer<W> {
    pub fn new(inner: W) -> Self {
        Sha256Writer {
            inner,
            hasher: Sha256::new(),
        }
    }
}

impl<W: Write> Write for Sha256Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_holds_until_the_file_changes_and_survives_a_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        std::fs::write(&path, b"one").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(lookup(&meta), None);
        remember_path(&path, "d1".into());
        assert_eq!(lookup(&meta).as_deref(), Some("d1"));

        let moved = dir.path().join("b");
        std::fs::rename(&path, &moved).unwrap();
        let meta = std::fs::metadata(&moved).unwrap();
        assert_eq!(lookup(&meta).as_deref(), Some("d1"));

        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(&moved, b"two").unwrap();
        assert_eq!(lookup(&std::fs::metadata(&moved).unwrap()), None);
    }

    #[test]
    fn the_writer_hashes_what_it_writes() {
        let mut w = Sha256Writer::new(Vec::new());
        w.write_all(b"abc").unwrap();
        assert_eq!(
            hex(w.hasher),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(w.inner, b"abc");
    }
}
