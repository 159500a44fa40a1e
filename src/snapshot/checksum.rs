//! SHA-256 checksums: computed while bytes stream through (never a second pass over an
//! archive), the `.checksum` sidecar file (64 lowercase hex characters, no newline),
//! and the comparison rule for checksums given by clients (case and surrounding
//! whitespace ignored).
//!
//! Hashing runs on a helper thread per stream ([`BackgroundSha256`]): the stream's
//! bytes are handed over in 1 MiB batches, so the sha256 of an archive overlaps with
//! reading, unpacking and writing it (and with the per-file digests of the manifest)
//! instead of adding to them. A recovery hashes every byte twice (the whole archive
//! for the `.checksum`, each file for the manifest); with SHA-NI (which `sha2` detects
//! at run time) each pass runs at ~0.6-1.5 GiB/s here, so in line they cost about as
//! much as the rest of the unpack.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use super::naming::CHECKSUM_SUFFIX;
use crate::error::{Error, Result};

/// Lowercase hex of a digest.
pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
    out
}

/// Bytes handed to the hashing thread at a time.
const BATCH: usize = 1 << 20;
/// Batches that may wait for the hashing thread (bounds the memory to ~4 MiB a stream).
const QUEUE: usize = 3;

/// SHA-256 of a stream, computed on a helper thread (inline if no thread can be
/// started). [`BackgroundSha256::finish`] waits for it and returns the hex digest.
pub struct BackgroundSha256 {
    batch: Vec<u8>,
    worker: Option<(SyncSender<Vec<u8>>, JoinHandle<Sha256>)>,
    /// Batches the thread has hashed, handed back for reuse (fresh memory costs a page
    /// fault per 4 KiB).
    spare: Option<Receiver<Vec<u8>>>,
    inline: Sha256,
}

impl Default for BackgroundSha256 {
    fn default() -> Self {
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
        let (back, spare) = sync_channel::<Vec<u8>>(QUEUE + 1);
        let worker = std::thread::Builder::new()
            .name("sha256".into())
            .spawn(move || {
                let mut hasher = Sha256::new();
                for mut batch in rx {
                    hasher.update(&batch);
                    batch.clear();
                    // Dropped instead if the owner is gone or has enough spares.
                    let _ = back.try_send(batch);
                }
                hasher
            })
            .ok()
            .map(|handle| (tx, handle));
        BackgroundSha256 {
            batch: Vec::with_capacity(BATCH),
            worker,
            spare: Some(spare),
            inline: Sha256::new(),
        }
    }
}

impl BackgroundSha256 {
    pub fn update(&mut self, mut bytes: &[u8]) {
        if self.worker.is_none() {
            self.inline.update(bytes);
            return;
        }
        while !bytes.is_empty() {
            let take = bytes.len().min(BATCH - self.batch.len());
            self.batch.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.batch.len() == BATCH {
                self.send();
            }
        }
    }

    fn send(&mut self) {
        let next = self
            .spare
            .as_ref()
            .and_then(|spare| spare.try_recv().ok())
            .unwrap_or_else(|| Vec::with_capacity(BATCH));
        let full = std::mem::replace(&mut self.batch, next);
        if let Some((tx, _)) = &self.worker {
            // Fails only if the thread panicked; `finish` passes that panic on.
            let _ = tx.send(full);
        }
    }

    /// The hex digest of everything passed to `update`.
    pub fn finish(mut self) -> String {
        let Some((tx, handle)) = self.worker.take() else {
            self.inline.update(&self.batch);
            return to_hex(&self.inline.finalize());
        };
        let last = std::mem::take(&mut self.batch);
        let _ = tx.send(last);
        drop(tx);
        match handle.join() {
            Ok(hasher) => to_hex(&hasher.finalize()),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

/// A writer that hashes everything written through it (or, made with
/// [`HashingWriter::counting`], only counts it).
pub struct HashingWriter<W> {
    inner: W,
    hasher: Option<BackgroundSha256>,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Some(BackgroundSha256::default()),
            written: 0,
        }
    }

    /// Counts the bytes but computes no digest.
    pub fn counting(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: None,
            written: 0,
        }
    }

    /// The inner writer, the hex digest (unless only counting) and the number of bytes
    /// written.
    pub fn finish(self) -> (W, Option<String>, u64) {
        (
            self.inner,
            self.hasher.map(BackgroundSha256::finish),
            self.written,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if let Some(hasher) = &mut self.hasher {
            hasher.update(&buf[..n]);
        }
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: BackgroundSha256,
    read: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: BackgroundSha256::default(),
            read: 0,
        }
    }

    /// Reads what is left (so the digest covers the whole stream), then returns the
    /// hex digest and the number of bytes read.
    pub fn drain_and_finish(mut self) -> io::Result<(String, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((self.hasher.finish(), self.read))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// SHA-256 of a whole file.
pub fn file_sha256(path: &Path) -> Result<String> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let reader = HashingReader::new(io::BufReader::with_capacity(1 << 20, file));
    let (hex, _) = reader
        .drain_and_finish()
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    Ok(hex)
}

/// `<snapshot>.checksum`
pub fn sidecar_path(snapshot: &Path) -> PathBuf {
    let mut name = snapshot.as_os_str().to_owned();
    name.push(CHECKSUM_SUFFIX);
    PathBuf::from(name)
}

/// The sidecar's checksum, if the sidecar exists and is well-formed.
pub fn read_sidecar(snapshot: &Path) -> Option<String> {
    // A sidecar is 64 characters: reading a little more is enough to tell it is wrong.
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(std::fs::File::open(sidecar_path(snapshot)).ok()?, 256),
        &mut text,
    )
    .ok()?;
    let text = text.trim();
    is_sha256_hex(text).then(|| text.to_ascii_lowercase())
}

/// 64 hexadecimal characters.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Validates a client-given checksum (`checksum` field or query parameter).
pub fn parse_expected(checksum: &str) -> Result<String> {
    let trimmed = checksum.trim();
    if is_sha256_hex(trimmed) {
        Ok(trimmed.to_ascii_lowercase())
    } else {
        Err(Error::BadInput(format!(
            "checksum must be 64 hexadecimal characters (a sha256), got `{checksum}`"
        )))
    }
}

/// Fails with [`Error::ChecksumMismatch`] unless the digests are equal.
pub fn verify(expected: &str, actual: &str) -> Result<()> {
    if expected.trim().eq_ignore_ascii_case(actual.trim()) {
        Ok(())
    } else {
        Err(Error::ChecksumMismatch {
            expected: expected.trim().to_string(),
            actual: actual.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn streams_hash_like_sha256() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"ab").unwrap();
        w.write_all(b"c").unwrap();
        let (bytes, hex, n) = w.finish();
        assert_eq!(
            (bytes.as_slice(), hex.as_deref(), n),
            (&b"abc"[..], Some(ABC), 3)
        );
        let mut w = HashingWriter::counting(Vec::new());
        w.write_all(b"abc").unwrap();
        assert_eq!(w.finish(), (b"abc".to_vec(), None, 3));
        let r = HashingReader::new(&b"abc"[..]);
        assert_eq!(r.drain_and_finish().unwrap(), (ABC.to_string(), 3));
    }

    #[test]
    fn background_hash_matches_inline_across_batches() {
        let data: Vec<u8> = (0..BATCH * 3 + 12_345).map(|i| (i % 251) as u8).collect();
        let mut background = BackgroundSha256::default();
        // Uneven pieces so that batches are filled from several updates.
        data.chunks(300_007)
            .for_each(|piece| background.update(piece));
        assert_eq!(background.finish(), to_hex(&Sha256::digest(&data)));
        assert_eq!(
            BackgroundSha256::default().finish(),
            to_hex(&Sha256::digest(b""))
        );
    }

    #[test]
    fn client_checksums_ignore_case_and_whitespace() {
        assert!(verify(&format!(" {} ", ABC.to_uppercase()), ABC).is_ok());
        assert!(matches!(
            verify(&"0".repeat(64), ABC),
            Err(Error::ChecksumMismatch { .. })
        ));
        assert!(parse_expected("abc").is_err());
        assert_eq!(parse_expected(&ABC.to_uppercase()).unwrap(), ABC);
    }

    #[test]
    fn sidecar_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let snap = dir.path().join("x.snapshot");
        std::fs::write(&snap, b"abc").unwrap();
        std::fs::write(sidecar_path(&snap), ABC).unwrap();
        assert_eq!(read_sidecar(&snap).as_deref(), Some(ABC));
        assert_eq!(file_sha256(&snap).unwrap(), ABC);
        assert_eq!(
            sidecar_path(&snap).file_name().unwrap(),
            "x.snapshot.checksum"
        );
    }
}
