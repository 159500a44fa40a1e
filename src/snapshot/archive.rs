//! The snapshot archive format: a plain (uncompressed) tar, written as a stream and read
//! as a stream, so neither side ever holds more than a buffer of it in memory.
//!
//! An archive shoal writes starts with `shoal-index.json` (see `index.rs`): the name and
//! size of every file that follows, so the reader refuses an unlisted, resized or
//! repeated entry at its header, before writing any of it. It ends with
//! `shoal-manifest.json`: the size and sha256 of every other file (the index included).
//! Writing computes each file's digest as it streams into the tar (and the whole
//! archive's digest for the `.checksum` sidecar); unpacking recomputes them and fails
//! unless every byte matches, so a restore verifies all data, not only the outer
//! checksum. Archives of older shoal versions have no index: they are read in a legacy
//! mode (plain names only, nothing fsynced until the manifest verified every file).
//!
//! Shard transfers between peers check files by crc32 instead ([`FileCheck::Crc32`]):
//! the source computes it as the bytes stream out and lists it next to the sha256 it
//! knows, and the target compares the crc32 (sha256 costs ~1 s of CPU per GiB here,
//! crc32 a few ms) and remembers the listed sha256 for its own snapshots later. Files a
//! user stores and moves (snapshots) are always checked by sha256.
//!
//! Unpacking treats the archive as hostile: tar is read in raw mode (GNU long names are
//! read by shoal, bounded); only regular files (and, without an index, directories) are
//! accepted; absolute paths, `..`, PAX records, links, devices and FIFOs, a file that is
//! also a directory or has entries under it, too many entries and too long names all
//! fail the whole archive with a 400 that names the entry, never a path on this server.
//! The index and manifest are read with a cap (`bounded.rs`). Nothing is written outside
//! the destination (which should be a fresh temporary directory: existing files are
//! never overwritten).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::bounded::{parse_json, read_bounded, too_big, MAX_JSON};
use super::checksum::{HashingReader, HashingWriter};
use super::entries::{check_legacy_grammar, clean_name, EntryTree, MAX_NAME};
use super::index::{Index, INDEX};
use super::syncer::Syncer;
use crate::error::{Error, Result};
use crate::shard::file_digests;

/// Name of the manifest entry, always the last in an archive.
pub const MANIFEST: &str = "shoal-manifest.json";

/// One file listed in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileDigest {
    pub size: u64,
    /// Empty in a transfer archive when the source did not know it (it is not computed
    /// for a transfer).
    #[serde(default)]
    pub sha256: String,
    /// Listed in transfer archives only ([`FileCheck::Crc32`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<u32>,
}

impl FileDigest {
    /// Every digest of bytes held in memory.
    fn of(bytes: &[u8]) -> FileDigest {
        FileDigest {
            size: bytes.len() as u64,
            sha256: super::checksum::to_hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes)),
            crc32: Some(crc32fast::hash(bytes)),
        }
    }
}

/// How the files of an archive are checked against its manifest (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileCheck {
    /// Snapshots: every file's sha256.
    Sha256,
    /// Shard transfers between peers: every file's crc32.
    Crc32,
}

impl FileCheck {
    /// The part of a file's digest this check compares, as error messages show it. An
    /// unpacked file always has it, so a manifest without it never matches.
    fn sum_of(self, digest: &FileDigest) -> String {
        match (self, digest.crc32) {
            (FileCheck::Sha256, _) => format!("sha256 {}", digest.sha256),
            (FileCheck::Crc32, Some(crc32)) => format!("crc32 {crc32:08x}"),
            (FileCheck::Crc32, None) => "crc32 None".to_string(),
        }
    }
}

/// The manifest: every file of the archive by its path inside the archive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub files: BTreeMap<String, FileDigest>,
}

/// Streams files into a tar, recording their digests.
pub struct ArchiveWriter<W: Write> {
    tar: tar::Builder<HashingWriter<W>>,
    manifest: Manifest,
    check: FileCheck,
    /// Copy buffer for file data (large, so a file is read and written in few calls).
    buffer: Vec<u8>,
    /// While planning an indexed archive: the index being recorded (nothing is written).
    planning: Option<Index>,
    /// While writing an indexed archive: the planned files not written yet.
    expected: Option<BTreeMap<String, u64>>,
}

/// Bytes of file data read and written at a time.
const COPY_BUFFER: usize = 1 << 20;
/// Tar entries are padded to whole blocks.
const BLOCK: u64 = 512;

impl<W: Write> ArchiveWriter<W> {
    /// An archive whose sha256 [`ArchiveWriter::finish`] returns (for the `.checksum`
    /// sidecar of a stored snapshot).
    pub fn new(out: W) -> Self {
        Self::over(HashingWriter::new(out), FileCheck::Sha256)
    }

    /// An archive streamed where no outer checksum is wanted (a streamed download):
    /// every file is still listed with its sha256 in the manifest.
    pub fn without_checksum(out: W) -> Self {
        Self::over(HashingWriter::counting(out), FileCheck::Sha256)
    }

    /// A shard transfer's archive: no outer checksum, every file listed with the crc32
    /// computed as it streams and the sha256 when it is known already.
    pub fn for_transfer(out: W) -> Self {
        Self::over(HashingWriter::counting(out), FileCheck::Crc32)
    }

    fn over(out: HashingWriter<W>, check: FileCheck) -> Self {
        let mut tar = tar::Builder::new(out);
        tar.mode(tar::HeaderMode::Deterministic);
        ArchiveWriter {
            tar,
            manifest: Manifest::default(),
            check,
            buffer: Vec::new(),
            planning: None,
            expected: None,
        }
    }

    /// Writes a whole archive with its index first: runs `fill` once to plan (names and
    /// sizes only, no data is read), writes the index, runs `fill` again to write the
    /// files, then the manifest ([`ArchiveWriter::finish`]). `fill` must add the same
    /// files with the same sizes both times (snapshots add immutable files); anything
    /// else fails the archive.
    pub fn write_indexed(
        mut self,
        fill: impl Fn(&mut Self) -> Result<()>,
    ) -> Result<(W, Option<String>, u64)> {
        self.planning = Some(Index::new());
        fill(&mut self)?;
        let index = self.planning.take().unwrap_or_default();
        self.add_bytes(INDEX, &index.to_bytes()?)?;
        self.expected = Some(index.files);
        fill(&mut self)?;
        if let Some(missing) = self.expected.as_ref().and_then(|e| e.keys().next()) {
            return Err(Error::Service(format!(
                "{missing} was planned but not written; the files changed while they were archived"
            )));
        }
        self.finish()
    }

    /// Adds a file from disk under `archive_path`. The file must not change while it
    /// is read (snapshots only add immutable files).
    pub fn add_file(&mut self, archive_path: &str, source: &Path) -> Result<()> {
        let file = File::open(source)
            .map_err(|e| Error::io(format!("opening {}", source.display()), e))?;
        let size = file
            .metadata()
            .map_err(|e| Error::io(format!("reading {}", source.display()), e))?
            .len();
        self.add_reader(archive_path, size, file).map(drop)
    }

    /// Adds in-memory bytes under `archive_path`.
    pub fn add_bytes(&mut self, archive_path: &str, bytes: &[u8]) -> Result<()> {
        self.add_reader(archive_path, bytes.len() as u64, bytes)
            .map(drop)
    }

    /// Adds `size` bytes read from `reader`; returns their sha256 (none in a transfer
    /// archive, which does not compute it, and none while planning).
    pub fn add_reader(
        &mut self,
        archive_path: &str,
        size: u64,
        reader: impl Read,
    ) -> Result<Option<String>> {
        if self.plan(archive_path, size)? {
            return Ok(None);
        }
        if self.check == FileCheck::Crc32 {
            self.add_known(archive_path, size, reader, String::new())?;
            return Ok(None);
        }
        let mut hashing = HashingReader::new(reader.take(size));
        self.append(archive_path, size, &mut hashing)?;
        let (sha256, _) = hashing
            .drain_and_finish()
            .map_err(|e| Error::io("hashing", e))?;
        self.manifest.files.insert(
            archive_path.to_string(),
            FileDigest {
                size,
                sha256: sha256.clone(),
                crc32: None,
            },
        );
        Ok(Some(sha256))
    }

    /// Adds `size` bytes read from `reader` whose sha256 is known already (an immutable
    /// file, see `shard/file_digests.rs`): the bytes are copied without hashing them a
    /// second time. If they are not what `sha256` says, the archive fails verification
    /// when it is restored.
    pub fn add_known(
        &mut self,
        archive_path: &str,
        size: u64,
        reader: impl Read,
        sha256: String,
    ) -> Result<()> {
        if self.plan(archive_path, size)? {
            return Ok(());
        }
        let crc32 = self.append(archive_path, size, reader)?;
        self.manifest.files.insert(
            archive_path.to_string(),
            FileDigest {
                size,
                sha256,
                crc32,
            },
        );
        Ok(())
    }

    /// While planning, records the file in the index and returns true (nothing is read
    /// or written); otherwise returns false.
    fn plan(&mut self, archive_path: &str, size: u64) -> Result<bool> {
        let Some(index) = &mut self.planning else {
            return Ok(false);
        };
        let clean = clean_name(archive_path)?;
        if clean != archive_path || archive_path == INDEX || archive_path == MANIFEST {
            return Err(Error::Service(format!(
                "`{archive_path}` is not a plain archive entry name"
            )));
        }
        if index.files.insert(clean, size).is_some() {
            return Err(Error::Service(format!(
                "`{archive_path}` was added to the archive twice"
            )));
        }
        Ok(true)
    }

    /// Writes one entry: exactly `size` bytes of `reader`, or an error if it has fewer.
    /// Returns the bytes' crc32 in a transfer archive.
    fn append(&mut self, archive_path: &str, size: u64, reader: impl Read) -> Result<Option<u32>> {
        clean_name(archive_path)?;
        if let Some(expected) = &mut self.expected {
            if expected.remove(archive_path) != Some(size) {
                return Err(Error::Service(format!(
                    "{archive_path} ({size} bytes) is not what was planned; the files changed while they were archived"
                )));
            }
        }
        let mut reader = Counting::new(reader, self.check == FileCheck::Crc32);
        let mut header = file_header(size);
        if header.set_path(archive_path).is_err() {
            // A path too long for the header needs tar's long-name entry.
            let mut limited = (&mut reader).take(size);
            self.tar
                .append_data(&mut header, archive_path, &mut limited)
                .map_err(|e| Error::io(format!("writing {archive_path} into the archive"), e))?;
            check_size(archive_path, size, reader.count)?;
            return Ok(reader.crc32());
        }
        header.set_cksum();
        if self.buffer.is_empty() {
            self.buffer = vec![0u8; COPY_BUFFER];
        }
        let out = self.tar.get_mut();
        let write_err = |e| Error::io(format!("writing {archive_path} into the archive"), e);
        out.write_all(header.as_bytes()).map_err(write_err)?;
        let mut copied = 0u64;
        while copied < size {
            let want = (size - copied).min(self.buffer.len() as u64) as usize;
            let read = match reader.read(&mut self.buffer[..want]) {
                Ok(0) => break,
                Ok(read) => read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(format!("reading {archive_path}"), e)),
            };
            out.write_all(&self.buffer[..read]).map_err(write_err)?;
            copied += read as u64;
        }
        check_size(archive_path, size, copied)?;
        let padding = (BLOCK - size % BLOCK) % BLOCK;
        out.write_all(&[0u8; BLOCK as usize][..padding as usize])
            .map_err(write_err)?;
        Ok(reader.crc32())
    }

    /// Appends the manifest and the tar trailer; returns the sink, the archive's sha256
    /// (unless made [`ArchiveWriter::without_checksum`]) and its size. Called directly
    /// (not through [`ArchiveWriter::write_indexed`]) it makes an archive without an
    /// index, as older shoal versions wrote them.
    pub fn finish(mut self) -> Result<(W, Option<String>, u64)> {
        let manifest = serde_json::to_vec_pretty(&self.manifest).map_err(Error::service)?;
        let mut header = file_header(manifest.len() as u64);
        self.tar
            .append_data(&mut header, MANIFEST, manifest.as_slice())
            .map_err(|e| Error::io("writing the archive manifest", e))?;
        let hashing = self
            .tar
            .into_inner()
            .map_err(|e| Error::io("finishing the archive", e))?;
        Ok(hashing.finish())
    }
}
/// An entry that did not deliver the size its header promised.
fn check_size(archive_path: &str, size: u64, got: u64) -> Result<()> {
    if got == size {
        Ok(())
    } else {
        Err(Error::Service(format!(
            "{archive_path} changed size while it was archived ({size} bytes expected, {got} read)"
        )))
    }
}

/// Counts the bytes read through it and, if asked, computes their crc32.
struct Counting<R> {
    inner: R,
    count: u64,
    crc32: Option<crc32fast::Hasher>,
}

impl<R> Counting<R> {
    fn new(inner: R, crc32: bool) -> Self {
        Counting {
            inner,
            count: 0,
            crc32: crc32.then(crc32fast::Hasher::new),
        }
    }

    fn crc32(self) -> Option<u32> {
        self.crc32.map(crc32fast::Hasher::finalize)
    }
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if let Some(crc) = &mut self.crc32 {
            crc.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// A GNU header for a regular file written now.
fn file_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    header.set_mtime(now);
    header
}

/// Writes an indexed archive to `path` (created, buffered, fsynced; `fill` runs twice,
/// see [`ArchiveWriter::write_indexed`]). On any error the partial file is removed.
pub fn write_file(
    path: &Path,
    fill: impl Fn(&mut ArchiveWriter<BufWriter<EarlyWriteBack>>) -> Result<()>,
) -> Result<(String, u64)> {
    let result = (|| {
        let file =
            File::create(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        let writer =
            ArchiveWriter::new(BufWriter::with_capacity(1 << 20, EarlyWriteBack::new(file)));
        let (buffered, sha256, size) = writer.write_indexed(fill)?;
        let sha256 = sha256.ok_or_else(|| Error::Service("the archive was not hashed".into()))?;
        let file = buffered
            .into_inner()
            .map_err(|e| Error::io(format!("writing {}", path.display()), e.into_error()))?
            .file;
        file.sync_all()
            .map_err(|e| Error::io(format!("syncing {}", path.display()), e))?;
        Ok((sha256, size))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// A file writer that asks the kernel to start writing back every few MiB as the archive
/// grows (`sync_file_range`, which does not wait), so the disk works while the archive is
/// still being built and the final fsync has little left to do.
pub struct EarlyWriteBack {
    file: File,
    written: u64,
    started_up_to: u64,
}

/// Bytes written between two write-back requests.
const WRITE_BACK_EVERY: u64 = 8 << 20;

impl EarlyWriteBack {
    fn new(file: File) -> Self {
        EarlyWriteBack {
            file,
            written: 0,
            started_up_to: 0,
        }
    }
}

impl Write for EarlyWriteBack {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started_up_to >= WRITE_BACK_EVERY {
            use std::os::fd::AsRawFd;
            let (offset, len) = (self.started_up_to, self.written - self.started_up_to);
            // A hint only: if it fails, the final fsync still writes everything.
            // SAFETY: a plain syscall on a file descriptor this value owns.
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    offset as libc::off64_t,
                    len as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.started_up_to = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Unpacks an archive stream into `dest` (an empty directory), verifying every file
/// against the manifest; every file is fsynced (on a helper thread, see `syncer.rs`)
/// before this returns. Returns the manifest. Entries that fail the safety rules, a
/// missing manifest, a file that is not listed or differs from its digest, and a
/// listed file that is missing all fail with [`Error::BadInput`].
pub fn unpack_verified(reader: impl Read, dest: &Path) -> Result<Manifest> {
    unpack_checked(reader, dest, FileCheck::Sha256)
}

/// [`unpack_verified`], checking the files as `check` says (see the module doc).
pub fn unpack_checked(reader: impl Read, dest: &Path, check: FileCheck) -> Result<Manifest> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(malformed)?.raw(true);
    let mut unpack = Unpack {
        dest,
        check,
        mode: Mode::Start,
        tree: EntryTree::default(),
        seen: BTreeMap::new(),
        manifest: None,
        syncer: Syncer::default(),
    };
    let mut long_name: Option<String> = None;
    for entry in entries {
        let mut entry = entry.map_err(malformed)?;
        let kind = entry.header().entry_type();
        let size = entry.size();
        if kind.is_gnu_longname() {
            unpack.tree.count(0)?;
            if long_name.is_some() {
                return Err(bad("two long-name records in a row".into()));
            }
            if size > MAX_NAME as u64 {
                return Err(bad(format!(
                    "a long entry name of {size} bytes (the limit is {MAX_NAME})"
                )));
            }
            let mut bytes = read_bounded(&mut entry, MAX_NAME as u64, "a long entry name")?;
            while bytes.last() == Some(&0) {
                bytes.pop();
            }
            long_name = Some(utf8_name(bytes)?);
            continue;
        }
        let raw = match long_name.take() {
            Some(name) => name,
            None => utf8_name(entry.path_bytes().into_owned())?,
        };
        unpack.tree.count(raw.len())?;
        let name = clean_name(&raw)?;
        unpack.entry(&mut entry, name, kind, size)?;
    }
    if long_name.is_some() {
        return Err(bad("the archive ends with a long-name record".into()));
    }
    unpack.finish()
}

/// Whether the archive being unpacked has an index.
enum Mode {
    /// No entry read yet.
    Start,
    /// The first entry was the index: every file is checked against it at its header.
    Indexed(Index),
    /// An archive without an index (older shoal): plain names only, fsync after
    /// verification.
    Legacy,
}

/// The state of one unpacking.
struct Unpack<'a> {
    dest: &'a Path,
    check: FileCheck,
    mode: Mode,
    tree: EntryTree,
    /// Every file read so far with its digest (the index included).
    seen: BTreeMap<String, FileDigest>,
    manifest: Option<Manifest>,
    syncer: Syncer,
}

impl Unpack<'_> {
    /// Handles one entry (a cleaned name): decides everything from its header before a
    /// byte of it is written.
    fn entry(
        &mut self,
        entry: &mut impl Read,
        name: String,
        kind: tar::EntryType,
        size: u64,
    ) -> Result<()> {
        if self.manifest.is_some() {
            return Err(bad(format!(
                "entry `{name}` follows {MANIFEST}, which must be the last entry"
            )));
        }
        let is_file = matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous);
        if matches!(self.mode, Mode::Start) {
            if is_file && name == INDEX {
                if size > MAX_JSON {
                    return Err(too_big(INDEX, MAX_JSON));
                }
                let bytes = read_bounded(entry, MAX_JSON, INDEX)?;
                self.mode = Mode::Indexed(Index::parse(&bytes)?);
                self.seen.insert(INDEX.to_string(), FileDigest::of(&bytes));
                return Ok(());
            }
            self.mode = Mode::Legacy;
        }
        if kind == tar::EntryType::Directory {
            if matches!(self.mode, Mode::Indexed(_)) {
                return Err(bad(format!(
                    "directory entry `{name}` in an indexed archive (only files are listed)"
                )));
            }
            check_legacy_grammar(&name)?;
            self.tree.add_dir(&name)?;
            return create_dir(&self.dest.join(&name), &name);
        }
        if !is_file {
            // Without an index this may be another program's archive (Qdrant writes its
            // open WAL as a sparse file): say what shoal can read.
            let hint = match self.mode {
                Mode::Indexed(_) => "",
                _ => "; this is not a shoal snapshot (snapshots made by Qdrant hold its own segment format, which shoal cannot read)",
            };
            return Err(bad(format!(
                "forbidden entry type {kind:?} for `{name}` (only files are allowed){hint}"
            )));
        }
        if name == MANIFEST {
            if size > MAX_JSON {
                return Err(too_big(MANIFEST, MAX_JSON));
            }
            let bytes = read_bounded(entry, MAX_JSON, MANIFEST)?;
            self.manifest = Some(parse_json(&bytes, MANIFEST)?);
            return Ok(());
        }
        if name == INDEX {
            return Err(bad(format!("{INDEX} must be the first entry")));
        }
        match &self.mode {
            Mode::Indexed(index) => match index.files.get(&name) {
                None => return Err(bad(format!("`{name}` is not listed in the archive index"))),
                Some(&listed) if listed != size => {
                    return Err(bad(format!(
                        "`{name}` has {size} bytes, the archive index lists {listed}"
                    )))
                }
                Some(_) => {}
            },
            _ => check_legacy_grammar(&name)?,
        }
        self.tree.add_file(&name)?;
        // An indexed archive's files are synced as they come; a legacy archive's only
        // once the manifest verified them (its unlisted files cannot be told early).
        let syncer = matches!(self.mode, Mode::Indexed(_)).then_some(&self.syncer);
        let digest = write_entry(entry, &self.dest.join(&name), &name, syncer, self.check)?;
        self.seen.insert(name, digest);
        Ok(())
    }

    /// Verifies what was read against the manifest (and the index) and waits for the
    /// fsyncs; returns the manifest.
    fn finish(self) -> Result<Manifest> {
        let manifest = self.manifest.ok_or_else(|| {
            Error::BadInput(format!(
                "Invalid snapshot: no {MANIFEST} in the archive; this is not a shoal snapshot \
                 (snapshots made by Qdrant hold its own segment format, which shoal cannot read)"
            ))
        })?;
        if let Mode::Indexed(index) = &self.mode {
            if let Some(missing) = index.files.keys().find(|n| !self.seen.contains_key(*n)) {
                return Err(bad(format!("`{missing}` is missing (truncated archive?)")));
            }
        }
        verify_against(&manifest, &self.seen, self.check)?;
        let files = self.seen.iter().filter(|(name, _)| name.as_str() != INDEX);
        if !matches!(self.mode, Mode::Indexed(_)) {
            for (name, _) in files.clone() {
                let file = File::open(self.dest.join(name))
                    .map_err(|e| Error::io(format!("opening `{name}` to sync it"), e))?;
                self.syncer.sync_later(file, name)?;
            }
        }
        self.syncer.finish()?;
        // Verified: a snapshot or transfer of these files need not hash them again.
        // After a crc32 check, the sha256 the source listed is theirs (when it knew it).
        for (name, digest) in files {
            let sha256 = match self.check {
                FileCheck::Sha256 => digest.sha256.clone(),
                FileCheck::Crc32 => manifest.files[name].sha256.clone(),
            };
            if !sha256.is_empty() {
                file_digests::remember_path(&self.dest.join(name), sha256);
            }
        }
        Ok(manifest)
    }
}

fn verify_against(
    manifest: &Manifest,
    seen: &BTreeMap<String, FileDigest>,
    check: FileCheck,
) -> Result<()> {
    for (name, digest) in seen {
        let Some(expected) = manifest.files.get(name) else {
            return Err(Error::BadInput(format!(
                "Invalid snapshot: `{name}` is not listed in the manifest"
            )));
        };
        let (expected_sum, found_sum) = (check.sum_of(expected), check.sum_of(digest));
        if expected.size != digest.size || expected_sum != found_sum {
            return Err(Error::BadInput(format!(
                "Invalid snapshot: `{name}` is corrupt (expected {} bytes with {expected_sum}, found {} bytes with {found_sum})",
                expected.size, digest.size
            )));
        }
    }
    if let Some(missing) = manifest.files.keys().find(|name| !seen.contains_key(*name)) {
        return Err(Error::BadInput(format!(
            "Invalid snapshot: `{missing}` is missing (truncated archive?)"
        )));
    }
    Ok(())
}

/// Streams one entry into `target` and, given a syncer, queues it for its fsync. Errors
/// name the entry inside the archive, never a path on this server; a failing read (a
/// broken or truncated stream) is the archive's fault (400), a failing write is ours
/// (5xx).
fn write_entry(
    entry: &mut impl Read,
    target: &Path,
    name: &str,
    syncer: Option<&Syncer>,
    check: FileCheck,
) -> Result<FileDigest> {
    if let Some(parent) = target.parent() {
        create_dir(parent, name)?;
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(target)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => Error::BadInput(format!(
                "Invalid snapshot: `{name}` appears twice in the archive"
            )),
            _ => Error::io(format!("creating a file for `{name}`"), e),
        })?;
    // Pieces of 256 KiB go straight to the file (a buffer in between would only copy).
    // The kernel starts writing the file back as it grows, so its fsync (on the
    // syncer's thread) has little left when the file ends.
    let file = EarlyWriteBack::new(file);
    let (mut out, mut crc32) = match check {
        FileCheck::Sha256 => (HashingWriter::new(file), None),
        FileCheck::Crc32 => (
            HashingWriter::counting(file),
            Some(crc32fast::Hasher::new()),
        ),
    };
    let mut buffer = vec![0u8; 256 * 1024];
    let mut ended = false;
    while !ended {
        // Fill the buffer (a stream may deliver small pieces), then write it.
        let mut filled = 0;
        while filled < buffer.len() {
            match entry.read(&mut buffer[filled..]) {
                Ok(0) => {
                    ended = true;
                    break;
                }
                Ok(read) => filled += read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::BadInput(format!(
                        "Invalid snapshot: the archive broke off while reading `{name}`: {e}"
                    )))
                }
            }
        }
        out.write_all(&buffer[..filled])
            .map_err(|e| Error::io(format!("writing `{name}`"), e))?;
        if let Some(crc) = &mut crc32 {
            crc.update(&buffer[..filled]);
        }
    }
    let (file, sha256, size) = out.finish();
    let sha256 = sha256.unwrap_or_default();
    if let Some(syncer) = syncer {
        syncer.sync_later(file.file, name)?;
    }
    Ok(FileDigest {
        size,
        sha256,
        crc32: crc32.map(crc32fast::Hasher::finalize),
    })
}

/// Creates a directory for entry `name`; errors name the entry, not the host path.
fn create_dir(path: &Path, name: &str) -> Result<()> {
    std::fs::create_dir_all(path)
        .map_err(|e| Error::io(format!("creating the directory for `{name}`"), e))
}

/// An entry name from the archive as UTF-8 (shoal writes no other names).
fn utf8_name(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        bad(format!(
            "entry name `{}` is not UTF-8",
            String::from_utf8_lossy(e.as_bytes()).escape_debug()
        ))
    })
}

fn bad(what: String) -> Error {
    Error::BadInput(format!("Invalid snapshot: {what}"))
}

fn malformed(err: io::Error) -> Error {
    Error::BadInput(format!(
        "Invalid snapshot: malformed or truncated tar archive: {err}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = ArchiveWriter::new(Vec::new());
        for (name, bytes) in files {
            w.add_bytes(name, bytes).unwrap();
        }
        w.finish().unwrap().0
    }

    #[test]
    fn round_trip_verifies_every_file() {
        let bytes = archive(&[("0/a.bin", b"hello"), ("config.json", b"{}")]);
        let dir = tempfile::tempdir().unwrap();
        let manifest = unpack_verified(bytes.as_slice(), dir.path()).unwrap();
        assert_eq!(manifest.files.len(), 2);
        assert_eq!(std::fs::read(dir.path().join("0/a.bin")).unwrap(), b"hello");
    }

    #[test]
    fn outer_digest_matches_the_bytes() {
        let mut w = ArchiveWriter::new(Vec::new());
        w.add_bytes("x", b"1").unwrap();
        let (bytes, sha, size) = w.finish().unwrap();
        assert_eq!(size, bytes.len() as u64);
        let (again, _) = HashingReader::new(bytes.as_slice())
            .drain_and_finish()
            .unwrap();
        assert_eq!(sha, Some(again));
        let mut w = ArchiveWriter::without_checksum(Vec::new());
        w.add_bytes("x", b"1").unwrap();
        let (unhashed, sha, unhashed_size) = w.finish().unwrap();
        assert_eq!((unhashed.len() as u64, sha), (unhashed_size, None));
        assert_eq!(unhashed_size, size);
    }

    #[test]
    fn a_known_digest_is_listed_as_given_and_checked_on_restore() {
        let right =
            crate::snapshot::checksum::to_hex(&<sha2::Sha256 as sha2::Digest>::digest(b"payload"));
        for (digest, ok) in [(right, true), ("0".repeat(64), false)] {
            let mut w = ArchiveWriter::new(Vec::new());
            w.add_known("0/seg", 7, &b"payload"[..], digest).unwrap();
            let (bytes, _, _) = w.finish().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let result = unpack_verified(bytes.as_slice(), dir.path());
            assert_eq!(result.is_ok(), ok, "{result:?}");
        }
    }

    /// A transfer archive: crc32 for every file (long names too), the sha256 only where
    /// the source knew it; the target checks the crc32s and catches a flipped byte.
    #[test]
    fn transfer_archives_are_checked_by_crc32() {
        let known =
            crate::snapshot::checksum::to_hex(&<sha2::Sha256 as sha2::Digest>::digest(b"segment"));
        let long = format!("0/{}/wal.log", "d".repeat(120));
        let transfer = || {
            let mut w = ArchiveWriter::for_transfer(Vec::new());
            w.add_known("0/seg", 7, &b"segment"[..], known.clone())
                .unwrap();
            assert_eq!(w.add_reader(&long, 9, &b"wal bytes"[..]).unwrap(), None);
            let (bytes, outer, _) = w.finish().unwrap();
            assert_eq!(outer, None);
            bytes
        };
        let dir = tempfile::tempdir().unwrap();
        let manifest = unpack_checked(transfer().as_slice(), dir.path(), FileCheck::Crc32).unwrap();
        assert_eq!(manifest.files["0/seg"].sha256, known);
        assert_eq!(
            manifest.files["0/seg"].crc32,
            Some(crc32fast::hash(b"segment"))
        );
        assert_eq!(manifest.files[&long].sha256, "");
        assert_eq!(
            manifest.files[&long].crc32,
            Some(crc32fast::hash(b"wal bytes"))
        );
        assert_eq!(std::fs::read(dir.path().join(&long)).unwrap(), b"wal bytes");

        let mut flipped = transfer();
        let at = flipped.windows(9).position(|w| w == b"wal bytes").unwrap();
        flipped[at] = b'X';
        let dir = tempfile::tempdir().unwrap();
        let err = unpack_checked(flipped.as_slice(), dir.path(), FileCheck::Crc32).unwrap_err();
        assert!(err.to_string().contains("is corrupt"), "{err}");
        // A transfer archive is no snapshot: a file without its sha256 fails that check.
        let dir = tempfile::tempdir().unwrap();
        let err = unpack_verified(transfer().as_slice(), dir.path()).unwrap_err();
        assert!(err.to_string().contains("is corrupt"), "{err}");
    }

    /// An archive without crc32s (a snapshot, or an older source) cannot pass a crc32 check.
    #[test]
    fn a_crc32_check_needs_crc32s_in_the_manifest() {
        let bytes = archive(&[("data", b"bytes")]);
        let dir = tempfile::tempdir().unwrap();
        let err = unpack_checked(bytes.as_slice(), dir.path(), FileCheck::Crc32).unwrap_err();
        assert!(err.to_string().contains("crc32 None"), "{err}");
    }

    #[test]
    fn long_paths_and_short_sources_are_handled() {
        let long = format!("0/{}/file.bin", "d".repeat(120));
        let bytes = archive(&[(long.as_str(), &[1u8; 1000]), ("b", &[2u8; 513])]);
        let dir = tempfile::tempdir().unwrap();
        unpack_verified(bytes.as_slice(), dir.path()).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join(&long)).unwrap(),
            vec![1u8; 1000]
        );
        assert_eq!(std::fs::read(dir.path().join("b")).unwrap(), vec![2u8; 513]);

        let mut w = ArchiveWriter::new(Vec::new());
        let err = w.add_reader("short", 10, &b"12345"[..]).unwrap_err();
        assert!(err.to_string().contains("changed size"), "{err}");
    }

    #[test]
    fn flipped_byte_is_detected() {
        let mut bytes = archive(&[("data", b"important bytes")]);
        let at = bytes.windows(9).position(|w| w == b"important").unwrap();
        bytes[at] = b'X';
        let dir = tempfile::tempdir().unwrap();
        let err = unpack_verified(bytes.as_slice(), dir.path()).unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
    }

    #[test]
    fn truncated_archive_is_rejected() {
        let bytes = archive(&[("data", &[7u8; 4096]), ("more", &[8u8; 4096])]);
        let dir = tempfile::tempdir().unwrap();
        let err = unpack_verified(&bytes[..3000], dir.path()).unwrap_err();
        assert!(matches!(err, Error::BadInput(_)), "{err}");
    }

    #[test]
    fn links_and_escapes_are_rejected() {
        for kind in ["symlink", "hardlink", "parent", "absolute", "device"] {
            let mut tar = tar::Builder::new(Vec::new());
            let mut header = tar::Header::new_gnu();
            header.set_size(0);
            match kind {
                "symlink" | "hardlink" => {
                    header.set_entry_type(if kind == "symlink" {
                        tar::EntryType::Symlink
                    } else {
                        tar::EntryType::Link
                    });
                    tar.append_link(&mut header, "evil", "/etc/passwd").unwrap();
                }
                "device" => {
                    header.set_entry_type(tar::EntryType::Char);
                    tar.append_data(&mut header, "dev", &[][..]).unwrap();
                }
                _ => {
                    // tar's path setters refuse `..` and absolute paths; write the raw bytes.
                    header.set_entry_type(tar::EntryType::Regular);
                    let name: &[u8] = if kind == "parent" {
                        b"../escape"
                    } else {
                        b"/tmp/escape"
                    };
                    header.as_old_mut().name[..name.len()].copy_from_slice(name);
                    header.set_cksum();
                    tar.append(&header, &[][..]).unwrap();
                }
            }
            let bytes = tar.into_inner().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let err = unpack_verified(bytes.as_slice(), &dir.path().join("inner")).unwrap_err();
            assert!(matches!(err, Error::BadInput(_)), "{kind}: {err}");
            assert!(!dir.path().join("escape").exists());
        }
    }

    #[test]
    fn a_failed_write_leaves_no_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.snapshot");
        let err = write_file(&path, |w| {
            w.add_bytes("a", &[1u8; 10_000])?;
            Err(Error::InsufficientStorage("no space left on device".into()))
        })
        .unwrap_err();
        assert!(matches!(err, Error::InsufficientStorage(_)));
        assert!(!path.exists());
    }

    #[test]
    fn a_full_disk_surfaces_as_insufficient_storage() {
        /// A sink that accepts a few bytes, then fails like a full disk.
        struct FullDisk(usize);
        impl Write for FullDisk {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::from_raw_os_error(libc::ENOSPC));
                }
                let n = buf.len().min(self.0);
                self.0 -= n;
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = ArchiveWriter::new(FullDisk(1000));
        let err = w.add_bytes("big", &[0u8; 100_000]).unwrap_err();
        assert!(matches!(err, Error::InsufficientStorage(_)), "{err}");
    }

    fn indexed(files: &[(&str, &[u8])]) -> Vec<u8> {
        ArchiveWriter::new(Vec::new())
            .write_indexed(|w| {
                for (name, bytes) in files {
                    w.add_bytes(name, bytes)?;
                }
                Ok(())
            })
            .unwrap()
            .0
    }

    /// A raw tar header block for `name` (type `kind`, `size` bytes), checksum set.
    fn raw_header(name: &[u8], kind: u8, size: u64) -> Vec<u8> {
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::new(kind));
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_cksum();
        header.as_bytes().to_vec()
    }

    #[test]
    fn indexed_archives_start_with_the_index_and_round_trip() {
        let bytes = indexed(&[("0/a.bin", b"hello"), ("config.json", b"{}")]);
        assert!(bytes.starts_with(INDEX.as_bytes()));
        let dir = tempfile::tempdir().unwrap();
        let manifest = unpack_verified(bytes.as_slice(), dir.path()).unwrap();
        assert!(manifest.files.contains_key(INDEX));
        assert!(!dir.path().join(INDEX).exists());
        assert_eq!(std::fs::read(dir.path().join("0/a.bin")).unwrap(), b"hello");
    }

    #[test]
    fn a_fill_that_changes_between_plan_and_write_fails() {
        let calls = std::cell::Cell::new(0u64);
        let err = ArchiveWriter::new(Vec::new())
            .write_indexed(|w| {
                calls.set(calls.get() + 1);
                w.add_bytes("a", &vec![1u8; calls.get() as usize])
            })
            .unwrap_err();
        assert!(err.to_string().contains("not what was planned"), "{err}");
    }

    /// An unlisted entry is refused at its header: nothing of it (nor after it) is written.
    #[test]
    fn an_unlisted_entry_is_refused_before_it_is_written() {
        let good = indexed(&[("a", b"1")]);
        // Insert an unlisted entry right after the index (header + one data block).
        let mut bytes = good[..1024].to_vec();
        bytes.extend(raw_header(b"evil", b'0', 3));
        bytes.extend([b'x'; 512]);
        bytes.extend(&good[1024..]);
        let dir = tempfile::tempdir().unwrap();
        let err = unpack_verified(bytes.as_slice(), dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("not listed in the archive index"),
            "{err}"
        );
        assert!(!dir.path().join("evil").exists());
    }

    #[test]
    fn pax_records_long_names_and_late_entries_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pax = raw_header(b"PaxHeader", b'x', 0);
        let err = unpack_verified(pax.as_slice(), &dir.path().join("p")).unwrap_err();
        assert!(err.to_string().contains("forbidden entry type"), "{err}");

        // A long-name record claiming 1 GiB is refused from its header alone.
        let huge = raw_header(b"././@LongLink", b'L', 1 << 30);
        let err = unpack_verified(huge.as_slice(), &dir.path().join("l")).unwrap_err();
        assert!(err.to_string().contains("long entry name"), "{err}");

        let mut late = archive(&[("a", b"1")]);
        late.truncate(late.len() - 1024);
        late.extend(raw_header(b"b", b'0', 0));
        let err = unpack_verified(late.as_slice(), &dir.path().join("t")).unwrap_err();
        assert!(err.to_string().contains("must be the last entry"), "{err}");
    }

    #[test]
    fn missing_manifest_is_rejected() {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        tar.append_data(&mut header, "a", &b"x"[..]).unwrap();
        let bytes = tar.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        assert!(unpack_verified(bytes.as_slice(), dir.path())
            .unwrap_err()
            .to_string()
            .contains("manifest"));
    }
}
