//! A generator of malformed and malicious shoal snapshots, for the hostile-archive suite
//! (`tests/hostile_archives.rs`).
//!
//! A real snapshot downloaded from a node is parsed into entries ([`Archive::parse`]),
//! mutated, and written back as a tar at the raw header level ([`Archive::build`]): the
//! headers are written here, not by the `tar` crate, so they can lie about sizes, types
//! and names, and carry GNU long names and PAX records of any length. Large contents
//! ([`Body::Big`]) are generated while they are read, never held in memory.
//!
//! [`Seal::Honest`] fixes up the archive's own listing (`shoal-manifest.json`: size and
//! sha256 of every regular file) and, when the original archive had one, the entry index
//! `shoal-index.json` (`{"format":1,"files":{path:size}}`, the first entry), so that the
//! archive-level checks pass and only the deeper checks can refuse it. [`Seal::Bare`]
//! leaves both as the mutation left them.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{self, Read};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The archive's listing of every file with its size and sha256 (see src/snapshot/archive.rs).
pub const LISTING: &str = "shoal-manifest.json";
/// The optional entry index another change may add as the first entry.
pub const INDEX: &str = "shoal-index.json";
/// The size of every "huge" content: far above any sane bound, and above the suite's
/// 48 MiB memory budget.
pub const BIG: u64 = 96 << 20;

/// Tar type flags used here: one constant per flag (POSIX, PAX and GNU).
pub mod kind {
    /// A regular file.
    pub const REGULAR: u8 = b'0';
    /// A hard link.
    pub const HARDLINK: u8 = b'1';
    /// A symbolic link.
    pub const SYMLINK: u8 = b'2';
    /// A character device.
    pub const CHAR: u8 = b'3';
    /// A directory.
    pub const DIR: u8 = b'5';
    /// A named pipe.
    pub const FIFO: u8 = b'6';
    /// A PAX extended header for the next entry.
    pub const PAX: u8 = b'x';
    /// A GNU long name for the next entry.
    pub const GNU_LONG_NAME: u8 = b'L';
}

const BLOCK: u64 = 512;

/// The content of an entry.
#[derive(Clone, Debug)]
pub enum Body {
    /// Bytes held in memory.
    Bytes(Vec<u8>),
    /// `len` bytes in all: `prefix`, then `fill` repeated, then `suffix`; generated as read.
    Big {
        prefix: Vec<u8>,
        fill: u8,
        len: u64,
        suffix: Vec<u8>,
    },
}

impl Body {
    /// The number of bytes.
    pub fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => b.len() as u64,
            Body::Big { len, .. } => *len,
        }
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A reader of the bytes.
    pub fn reader(&self) -> Box<dyn Read + Send + '_> {
        match self {
            Body::Bytes(b) => Box::new(b.as_slice()),
            Body::Big {
                prefix,
                fill,
                len,
                suffix,
            } => {
                let middle = len - prefix.len() as u64 - suffix.len() as u64;
                Box::new(
                    prefix
                        .as_slice()
                        .chain(io::repeat(*fill).take(middle))
                        .chain(suffix.as_slice()),
                )
            }
        }
    }

    /// The sha256 (hex), streamed.
    pub fn sha256(&self) -> String {
        let mut hasher = Sha256::new();
        let mut reader = self.reader();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader.read(&mut buf).expect("reading a body");
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The bytes of a small body.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Body::Bytes(b) => b,
            Body::Big { .. } => panic!("a big body is not held in memory"),
        }
    }
}

/// How an entry's name is written.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NameStyle {
    /// In the header if it fits its 100 bytes, else through a GNU long-name entry.
    Auto,
    /// Always through a PAX `path` record.
    Pax,
}

/// One tar entry.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The name exactly as written (may be absolute or hold `..`).
    pub name: String,
    /// The type flag (see [`kind`]).
    pub kind: u8,
    /// The link target of a symlink or hard link.
    pub link: String,
    /// The content.
    pub body: Body,
    /// A size for the header other than the body's (a lie).
    pub header_size: Option<u64>,
    /// How the name is written.
    pub style: NameStyle,
}

impl Entry {
    /// A regular file.
    pub fn file(name: &str, bytes: impl Into<Vec<u8>>) -> Entry {
        Entry::of(kind::REGULAR, name, Body::Bytes(bytes.into()))
    }

    /// An entry of any type.
    pub fn of(kind: u8, name: &str, body: Body) -> Entry {
        Entry {
            name: name.to_string(),
            kind,
            link: String::new(),
            body,
            header_size: None,
            style: NameStyle::Auto,
        }
    }

    /// A symlink or hard link to `target`.
    pub fn link(kind: u8, name: &str, target: &str) -> Entry {
        let mut entry = Entry::of(kind, name, Body::Bytes(Vec::new()));
        entry.link = target.to_string();
        entry
    }
}

/// How [`Archive::seal`] treats the archive's own listing and index.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Seal {
    /// Recompute the listing (and the index, if the original had one) from the entries.
    Honest,
    /// Leave them as they are.
    Bare,
}

/// A parsed (and mutable) archive.
#[derive(Clone, Debug, Default)]
pub struct Archive {
    /// The entries in archive order.
    pub entries: Vec<Entry>,
    /// Whether the original archive had the entry index as its first entry.
    pub had_index: bool,
}

impl Archive {
    /// Parses a real (well-formed) snapshot archive.
    pub fn parse(bytes: &[u8]) -> Archive {
        let mut tar = tar::Archive::new(bytes);
        let mut entries = Vec::new();
        for entry in tar.entries().expect("a tar archive") {
            let mut entry = entry.expect("a tar entry");
            let name = String::from_utf8(entry.path_bytes().into_owned()).expect("utf-8 name");
            let kind = entry.header().entry_type().as_byte();
            let link = entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .unwrap_or_default();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("entry data");
            let mut parsed = Entry::of(kind, &name, Body::Bytes(data));
            parsed.link = link;
            entries.push(parsed);
        }
        let had_index = entries.first().is_some_and(|e| e.name == INDEX);
        Archive { entries, had_index }
    }

    /// The entry named `name`.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The entry named `name`, mutable.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.name == name)
    }

    /// Parses the JSON entry `name`, lets `edit` change it and writes it back; false if
    /// there is no such entry.
    pub fn edit_json(&mut self, name: &str, edit: impl FnOnce(&mut Value)) -> bool {
        let Some(entry) = self.get_mut(name) else {
            return false;
        };
        let mut value: Value = serde_json::from_slice(entry.body.bytes()).expect("json entry");
        edit(&mut value);
        entry.body = Body::Bytes(serde_json::to_vec(&value).expect("json"));
        true
    }

    /// Replaces the body of entry `name`; false if there is none.
    pub fn set_body(&mut self, name: &str, body: Body) -> bool {
        match self.get_mut(name) {
            Some(entry) => {
                entry.body = body;
                true
            }
            None => false,
        }
    }

    /// Inserts `entry` before the listing (where the writer puts files).
    pub fn insert_before_listing(&mut self, entry: Entry) {
        let at = self
            .entries
            .iter()
            .position(|e| e.name == LISTING)
            .unwrap_or(self.entries.len());
        self.entries.insert(at, entry);
    }

    /// Removes the entry `name`; false if there is none.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.name != name);
        self.entries.len() != before
    }

    /// Fixes up the listing and index as `seal` says.
    pub fn seal(&mut self, seal: Seal) {
        if seal == Seal::Bare {
            return;
        }
        self.entries
            .retain(|e| e.name != LISTING && e.name != INDEX);
        if self.had_index {
            // As shoal writes it: every entry but the listing and the index itself, by
            // size; the index is then listed (and hash-checked) like any file.
            let sizes: BTreeMap<&str, u64> = self
                .entries
                .iter()
                .map(|e| (e.name.as_str(), e.body.len()))
                .collect();
            let index = serde_json::to_vec(&json!({"format": 1, "files": sizes})).expect("json");
            self.entries.insert(0, Entry::file(INDEX, index));
        }
        let mut files = serde_json::Map::new();
        for entry in &self.entries {
            if entry.kind == kind::REGULAR {
                files.insert(
                    entry.name.clone(),
                    json!({"size": entry.body.len(), "sha256": entry.body.sha256()}),
                );
            }
        }
        let listing = serde_json::to_vec_pretty(&json!({ "files": files })).expect("json");
        self.entries.push(Entry::file(LISTING, listing));
    }

    /// Writes the tar: every entry with its headers, then the two zero blocks.
    pub fn build(&self) -> Built {
        let mut built = Built::default();
        for entry in &self.entries {
            write_entry(&mut built, entry);
        }
        built.bytes(vec![0u8; 2 * BLOCK as usize]);
        built
    }
}

fn write_entry(out: &mut Built, entry: &Entry) {
    let name = entry.name.as_bytes();
    let long = name.len() > 100;
    if entry.style == NameStyle::Pax {
        out.entry(
            &header(b"././@PaxHeader", kind::PAX, "", None, pax_len(name)),
            Body::Bytes(pax_record("path", name)),
        );
    } else if long {
        let mut body = name.to_vec();
        body.push(0);
        out.entry(
            &header(
                b"././@LongLink",
                kind::GNU_LONG_NAME,
                "",
                None,
                body.len() as u64,
            ),
            Body::Bytes(body),
        );
    }
    let in_header = &name[..name.len().min(100)];
    let size = entry.header_size.unwrap_or(entry.body.len());
    out.entry(
        &header(in_header, entry.kind, &entry.link, None, size),
        entry.body.clone(),
    );
}

/// One PAX record `"<len> key=value\n"`, its length counting itself.
pub fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let len = pax_len_of(key.len() as u64 + value.len() as u64);
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

fn pax_len(value: &[u8]) -> u64 {
    pax_len_of(4 + value.len() as u64)
}

/// The length of a PAX record whose `key=value` (without `=`) is `body` bytes long.
pub fn pax_len_of(body: u64) -> u64 {
    // "<len> " + key + "=" + value + "\n"
    let rest = body + 3;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() as u64 {
        len = rest + len.to_string().len() as u64;
    }
    len
}

/// A GNU-style header block; `cksum` overrides the computed checksum.
pub fn header(name: &[u8], kind: u8, link: &str, cksum: Option<u32>, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    if size < 0o77777777777 {
        octal(&mut h[124..136], size);
    } else {
        // GNU base-256 for sizes beyond 8 GiB.
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    octal(&mut h[136..148], 1_700_000_000);
    h[156] = kind;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link.as_bytes()[..l]);
    h[257..265].copy_from_slice(b"ustar  \0");
    h[148..156].copy_from_slice(b"        ");
    let sum = cksum.unwrap_or_else(|| h.iter().map(|&b| b as u32).sum());
    let text = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(text.as_bytes());
    h
}

fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    field[..width].copy_from_slice(&text.as_bytes()[text.len() - width..]);
    field[width] = 0;
}

/// A built archive: pieces that are concatenated when read, big ones generated.
#[derive(Clone, Debug, Default)]
pub struct Built {
    pieces: Vec<Body>,
    /// Cut the output after this many bytes.
    cut: Option<u64>,
}

impl Built {
    /// An archive of exactly these bytes (empty, garbage).
    pub fn raw(bytes: Vec<u8>) -> Built {
        Built {
            pieces: vec![Body::Bytes(bytes)],
            cut: None,
        }
    }

    fn bytes(&mut self, bytes: Vec<u8>) {
        self.pieces.push(Body::Bytes(bytes));
    }

    fn entry(&mut self, header: &[u8; 512], body: Body) {
        self.bytes(header.to_vec());
        let padding = (BLOCK - body.len() % BLOCK) % BLOCK;
        self.pieces.push(body);
        self.bytes(vec![0u8; padding as usize]);
    }

    /// Cuts the archive after `at` bytes.
    pub fn truncate(mut self, at: u64) -> Built {
        self.cut = Some(at);
        self
    }

    /// The length in bytes.
    pub fn len(&self) -> u64 {
        let full: u64 = self.pieces.iter().map(Body::len).sum();
        self.cut.map_or(full, |c| c.min(full))
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A reader of the bytes (big pieces generated as read).
    pub fn reader(&self) -> impl Read + Send + '_ {
        let chained: Box<dyn Read + Send + '_> = self
            .pieces
            .iter()
            .fold(Box::new(io::empty()), |acc, piece| {
                Box::new(acc.chain(piece.reader()))
            });
        chained.take(self.len())
    }

    /// An owned reader (for HTTP bodies that need `'static`).
    pub fn into_reader(self) -> OwnedReader {
        OwnedReader {
            len: self.len(),
            built: self,
            piece: 0,
            offset: 0,
            done: 0,
        }
    }

    /// The bytes in memory (small archives only).
    pub fn to_vec(&self) -> Vec<u8> {
        assert!(self.len() < 64 << 20, "too big to hold in memory");
        let mut out = Vec::new();
        self.reader().read_to_end(&mut out).expect("reading");
        out
    }

    /// Whether any piece is generated rather than held.
    pub fn is_big(&self) -> bool {
        self.len() > 32 << 20
    }
}

/// A `'static` reader over a [`Built`] archive.
pub struct OwnedReader {
    built: Built,
    piece: usize,
    offset: u64,
    done: u64,
    len: u64,
}

impl Read for OwnedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.done >= self.len || self.piece >= self.built.pieces.len() {
                return Ok(0);
            }
            let piece = &self.built.pieces[self.piece];
            let left = piece.len() - self.offset;
            if left == 0 {
                self.piece += 1;
                self.offset = 0;
                continue;
            }
            let want = (buf.len() as u64).min(left).min(self.len - self.done) as usize;
            let n = match piece {
                Body::Bytes(b) => {
                    let at = self.offset as usize;
                    buf[..want].copy_from_slice(&b[at..at + want]);
                    want
                }
                Body::Big {
                    prefix,
                    fill,
                    len,
                    suffix,
                } => {
                    let (p, s) = (prefix.len() as u64, suffix.len() as u64);
                    let mut n = 0;
                    while n < want {
                        let at = self.offset + n as u64;
                        let k;
                        if at < p {
                            let from = at as usize;
                            k = (prefix.len() - from).min(want - n);
                            buf[n..n + k].copy_from_slice(&prefix[from..from + k]);
                        } else if at < len - s {
                            k = ((len - s - at) as usize).min(want - n);
                            buf[n..n + k].fill(*fill);
                        } else {
                            let from = (at - (len - s)) as usize;
                            k = (suffix.len() - from).min(want - n);
                            buf[n..n + k].copy_from_slice(&suffix[from..from + k]);
                        }
                        n += k;
                    }
                    n
                }
            };
            self.offset += n as u64;
            self.done += n as u64;
            return Ok(n);
        }
    }
}

/// Deterministic pseudo-random bytes (xorshift).
pub fn garbage(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
