//! Small file-system helpers every on-disk structure of a shard uses.
//!
//! Owns the write-once discipline: a file is written under a temporary name, fsynced,
//! renamed into place and its directory fsynced ([`write_atomic`]), so a reader sees the
//! old file or the whole new one. Binary files end with a CRC32 of everything before it,
//! computed while streaming ([`CrcWriter`], [`CrcReader`]).

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use super::file_digests::{self, Sha256Writer};

/// Suffix of files being written; any left at open time are crash leftovers.
pub const TMP_SUFFIX: &str = ".tmp";

/// Makes a rename or a file creation in `dir` durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `path` atomically: temp file, `fill`, fsync, rename, fsync of the directory.
/// The file's sha256 is computed on the way and remembered for snapshots
/// (`file_digests.rs`).
pub fn write_atomic(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(TMP_SUFFIX);
    let tmp = Path::new(&tmp_name);
    let result = (|| {
        let mut w = Sha256Writer::new(BufWriter::with_capacity(1 << 20, File::create(tmp)?));
        fill(&mut w)?;
        let Sha256Writer { inner, hasher } = w;
        let file = inner.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(tmp, path)?;
        fsync_dir(path.parent().unwrap_or(Path::new(".")))?;
        file_digests::remember_file(&file, file_digests::hex(hasher));
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

/// Hashes everything written through it; [`CrcWriter::finish`] appends the CRC.
pub struct CrcWriter<'a> {
    inner: &'a mut dyn Write,
    hasher: crc32fast::Hasher,
}

impl<'a> CrcWriter<'a> {
    pub fn new(inner: &'a mut dyn Write) -> Self {
        CrcWriter {
            inner,
            hasher: crc32fast::Hasher::new(),
        }
    }

    pub fn finish(self) -> io::Result<()> {
        let crc = self.hasher.finalize();
        self.inner.write_all(&crc.to_le_bytes())
    }
}

impl Write for CrcWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Hashes everything read through it; [`CrcReader::verify`] checks the trailing CRC.
pub struct CrcReader<R: Read> {
    inner: R,
    hasher: crc32fast::Hasher,
}

impl<R: Read> CrcReader<R> {
    pub fn new(inner: R) -> Self {
        CrcReader {
            inner,
            hasher: crc32fast::Hasher::new(),
        }
    }

    /// Reads the stored CRC and compares; also insists that nothing follows it.
    pub fn verify(mut self) -> io::Result<()> {
        let expected = self.hasher.clone().finalize();
        let mut stored = [0u8; 4];
        self.inner.read_exact(&mut stored)?;
        let mut rest = [0u8; 1];
        if self.inner.read(&mut rest)? != 0 {
            return Err(corrupt("trailing bytes after checksum"));
        }
        if u32::from_le_bytes(stored) != expected {
            return Err(corrupt("checksum mismatch"));
        }
        Ok(())
    }
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The bytes of a whole file before its trailing CRC, once the CRC matches them.
pub fn checked_body(bytes: &[u8]) -> io::Result<&[u8]> {
    let Some(split) = bytes.len().checked_sub(4) else {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file is truncated",
        ));
    };
    let (body, stored) = bytes.split_at(split);
    let stored = u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]);
    if crc32fast::hash(body) != stored {
        return Err(corrupt("checksum mismatch"));
    }
    Ok(body)
}

pub fn corrupt(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

pub fn read_array<const N: usize>(r: &mut dyn Read) -> io::Result<[u8; N]> {
    let mut a = [0u8; N];
    r.read_exact(&mut a)?;
    Ok(a)
}

pub fn read_u32(r: &mut dyn Read) -> io::Result<u32> {
    Ok(u32::from_le_bytes(read_array(r)?))
}

pub fn read_u64(r: &mut dyn Read) -> io::Result<u64> {
    Ok(u64::from_le_bytes(read_array(r)?))
}

/// Reads `n` bytes, refusing absurd lengths instead of allocating them up front.
pub fn read_vec(r: &mut dyn Read, n: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(n.min(1 << 20));
    let got = r.take(n as u64).read_to_end(&mut out)?;
    if got != n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file is truncated",
        ));
    }
    Ok(out)
}

/// Checks a file's leading magic bytes.
pub fn expect_magic(r: &mut dyn Read, magic: &[u8; 8]) -> io::Result<()> {
    let found: [u8; 8] = read_array(r)?;
    if &found != magic {
        return Err(corrupt(format!(
            "bad magic {:?}, expected {:?}",
            found,
            std::str::from_utf8(magic)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.bin");
        write_atomic(&path, |w| {
            let mut c = CrcWriter::new(w);
            c.write_all(b"hello world")?;
            c.finish()
        })
        .unwrap();
        let read = |bytes: &[u8]| {
            let mut r = CrcReader::new(bytes);
            let mut buf = [0u8; 11];
            r.read_exact(&mut buf)?;
            r.verify()
        };
        let mut bytes = fs::read(&path).unwrap();
        read(&bytes).unwrap();
        bytes[3] ^= 1;
        assert!(read(&bytes).is_err());
        assert!(!dir.path().join("f.bin.tmp").exists());
    }
}
