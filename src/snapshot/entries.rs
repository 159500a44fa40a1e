//! Rules for the entry names of an archive being unpacked: how long and deep a name may
//! be, which names are plain enough for an archive without an index (older shoal
//! archives), how many entries and name bytes an archive may hold, and the tree of
//! names seen so far (a file cannot also be a directory, nor have entries under it).
//! Every message names the entry inside the archive, never a path on this server.

use std::collections::HashMap;
use std::path::{Component, Path};

use crate::error::{Error, Result};

/// Most entries an archive may hold (files, directories and long-name records).
pub const MAX_ENTRIES: usize = 100_000;
/// Longest entry name, in bytes (a GNU long-name record longer than this is refused
/// before it is read).
pub const MAX_NAME: usize = 4096;
/// Longest component of a name, in bytes.
const MAX_COMPONENT: usize = 255;
/// Deepest name, in components.
const MAX_DEPTH: usize = 16;
/// Most bytes of names an archive may hold in total (bounds what is remembered of them).
pub const MAX_NAME_BYTES: usize = 8 << 20;

/// Normalises an entry name: a relative path of plain components (`.` dropped), no
/// root, no `..`, within the length and depth limits. Returns it `/`-joined.
pub fn clean_name(raw: &str) -> Result<String> {
    if raw.len() > MAX_NAME {
        return Err(bad(format!(
            "an entry name is longer than {MAX_NAME} bytes"
        )));
    }
    if raw.contains('\0') {
        return Err(bad(format!(
            "entry `{}` has a NUL byte in its name",
            raw.escape_debug()
        )));
    }
    let mut parts: Vec<&str> = Vec::new();
    for component in Path::new(raw).components() {
        match component {
            Component::Normal(part) => {
                let part = part.to_str().unwrap_or_default();
                if part.len() > MAX_COMPONENT {
                    return Err(bad(format!(
                        "entry `{}` has a component longer than {MAX_COMPONENT} bytes",
                        raw.escape_debug()
                    )));
                }
                parts.push(part);
            }
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(bad(format!(
                    "entry `{}` has an absolute path or `..`",
                    raw.escape_debug()
                )))
            }
        }
    }
    if parts.is_empty() {
        return Err(bad("entry with an empty path".into()));
    }
    if parts.len() > MAX_DEPTH {
        return Err(bad(format!(
            "entry `{}` is nested deeper than {MAX_DEPTH} levels",
            raw.escape_debug()
        )));
    }
    Ok(parts.join("/"))
}

/// The stricter grammar for archives without an index: every component is printable,
/// has no backslash and does not start with `.` (shoal never writes hidden files).
pub fn check_legacy_grammar(name: &str) -> Result<()> {
    let plain = name
        .split('/')
        .all(|part| !part.starts_with('.') && !part.chars().any(|c| c.is_control() || c == '\\'));
    if plain {
        Ok(())
    } else {
        Err(bad(format!(
            "entry `{}` is not a name shoal writes",
            name.escape_debug()
        )))
    }
}

/// What one node of the [`EntryTree`] is.
#[derive(Debug)]
enum Node {
    File,
    Dir(HashMap<String, Node>),
}

/// The names of an archive so far, as a tree; each component is stored once, so its
/// memory is bounded by the name bytes of the archive.
#[derive(Debug, Default)]
pub struct EntryTree {
    root: HashMap<String, Node>,
    entries: usize,
    name_bytes: usize,
}

impl EntryTree {
    /// Counts one entry (of any kind) and its name bytes against the archive's limits.
    pub fn count(&mut self, name_len: usize) -> Result<()> {
        self.entries += 1;
        self.name_bytes += name_len;
        if self.entries > MAX_ENTRIES {
            return Err(bad(format!(
                "the archive has more than {MAX_ENTRIES} entries"
            )));
        }
        if self.name_bytes > MAX_NAME_BYTES {
            return Err(bad(format!(
                "the archive's entry names exceed {MAX_NAME_BYTES} bytes"
            )));
        }
        Ok(())
    }

    /// Adds a file (a cleaned name): refused if it was seen already, is a directory, or
    /// lies under a file.
    pub fn add_file(&mut self, name: &str) -> Result<()> {
        self.add(name, true)
    }

    /// Adds a directory (a cleaned name): refused if it is a file or lies under one. A
    /// directory may be repeated.
    pub fn add_dir(&mut self, name: &str) -> Result<()> {
        self.add(name, false)
    }

    fn add(&mut self, name: &str, file: bool) -> Result<()> {
        let parts: Vec<&str> = name.split('/').collect();
        let (last, parents) = parts.split_last().expect("a cleaned name has a component");
        let mut level = &mut self.root;
        for (depth, part) in parents.iter().enumerate() {
            let node = level
                .entry((*part).to_string())
                .or_insert_with(|| Node::Dir(HashMap::new()));
            match node {
                Node::Dir(children) => level = children,
                Node::File => {
                    return Err(bad(format!(
                        "entry `{name}` lies under the file `{}`",
                        parts[..=depth].join("/")
                    )))
                }
            }
        }
        match (level.get(*last), file) {
            (None, true) => {
                level.insert((*last).to_string(), Node::File);
            }
            (None, false) => {
                level.insert((*last).to_string(), Node::Dir(HashMap::new()));
            }
            (Some(Node::File), true) => {
                return Err(bad(format!("`{name}` appears twice in the archive")))
            }
            (Some(Node::File), false) => {
                return Err(bad(format!("`{name}` is both a file and a directory")))
            }
            (Some(Node::Dir(_)), true) => {
                return Err(bad(format!("`{name}` is both a directory and a file")))
            }
            (Some(Node::Dir(_)), false) => {}
        }
        Ok(())
    }
}

fn bad(what: String) -> Error {
    Error::BadInput(format!("Invalid snapshot: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned_and_bounded() {
        assert_eq!(clean_name("./0/segments/a").unwrap(), "0/segments/a");
        for bad in ["", ".", "../x", "/etc/passwd", "a/../../b", "a\0b"] {
            assert!(clean_name(bad).is_err(), "{bad:?}");
        }
        assert!(clean_name(&"a/".repeat(17)).is_err());
        assert!(clean_name(&"a".repeat(256)).is_err());
        assert!(clean_name(&"ab/".repeat(1400)).is_err());
    }

    #[test]
    fn legacy_names_are_plain() {
        assert!(check_legacy_grammar("0/segments/x-1.seg").is_ok());
        assert!(check_legacy_grammar("0/.hidden").is_err());
        assert!(check_legacy_grammar("a\\b").is_err());
        assert!(check_legacy_grammar("a\nb").is_err());
    }

    #[test]
    fn a_file_cannot_be_a_directory() {
        let mut tree = EntryTree::default();
        tree.add_file("0/a").unwrap();
        tree.add_dir("0").unwrap();
        let under = tree.add_file("0/a/b").unwrap_err().to_string();
        assert!(under.contains("lies under the file `0/a`"), "{under}");
        assert!(tree
            .add_file("0/a")
            .unwrap_err()
            .to_string()
            .contains("twice"));
        assert!(tree.add_dir("0/a").is_err());
        assert!(tree.add_file("0").is_err());
    }

    #[test]
    fn entry_count_is_capped() {
        let mut tree = EntryTree::default();
        for _ in 0..MAX_ENTRIES {
            tree.count(1).unwrap();
        }
        assert!(tree.count(1).is_err());
    }
}
