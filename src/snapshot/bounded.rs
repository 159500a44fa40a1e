//! Bounded reads of archive content into memory: manifests, indexes, configs and any
//! other JSON that comes from an archive or an unpacked snapshot. The cap is enforced
//! before the bytes are buffered, so a hostile "manifest" of gigabytes costs at most the
//! cap in memory and fails as the client's fault (400).

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Largest JSON document shoal reads from an archive or an unpacked snapshot.
pub const MAX_JSON: u64 = 8 << 20;

/// Reads all of `reader` into memory, or fails with [`Error::BadInput`] naming `what`
/// as soon as it holds more than `cap` bytes (never buffering more than `cap + 1`).
pub fn read_bounded(reader: impl Read, cap: u64, what: &str) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| {
            Error::BadInput(format!(
                "Invalid snapshot: the archive broke off while reading `{what}`: {e}"
            ))
        })?;
    if bytes.len() as u64 > cap {
        return Err(too_big(what, cap));
    }
    Ok(bytes)
}

/// The error for a document larger than `cap` (also used before reading, when a header
/// announces the size).
pub fn too_big(what: &str, cap: u64) -> Error {
    Error::BadInput(format!(
        "Invalid snapshot: `{what}` is larger than the limit of {cap} bytes"
    ))
}

/// Parses JSON read with [`read_bounded`]; errors name `what`, never a host path.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::BadInput(format!("Invalid snapshot: `{what}` is unreadable: {e}")))
}

/// Reads and parses a JSON file of an unpacked snapshot with the [`MAX_JSON`] cap. A
/// missing file is reported by its name inside the snapshot (`what`), never by its
/// path on this server.
pub fn read_json_file<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<T> {
    let file = std::fs::File::open(path)
        .map_err(|_| Error::BadInput(format!("Invalid snapshot: missing {what}")))?;
    let bytes = read_bounded(file, MAX_JSON, what)?;
    parse_json(&bytes, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_up_to_the_cap_and_refuses_more() {
        assert_eq!(read_bounded(&b"12345"[..], 5, "x").unwrap(), b"12345");
        let err = read_bounded(&b"123456"[..], 5, "x").unwrap_err();
        assert!(matches!(err, Error::BadInput(_)), "{err}");
        assert!(err.to_string().contains("larger than the limit"), "{err}");
    }

    #[test]
    fn an_endless_stream_costs_the_cap_only() {
        let endless = std::io::repeat(b'a');
        let err = read_bounded(endless, 1 << 16, "huge").unwrap_err();
        assert!(err.to_string().contains("`huge`"), "{err}");
    }

    #[test]
    fn json_files_are_named_by_their_snapshot_name() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_json_file::<serde_json::Value>(&dir.path().join("c.json"), "config.json")
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("config.json"), "{text}");
        assert!(!text.contains(&dir.path().display().to_string()), "{text}");
        std::fs::write(dir.path().join("c.json"), b"{\"a\":1}").unwrap();
        let value: serde_json::Value =
            read_json_file(&dir.path().join("c.json"), "config.json").unwrap();
        assert_eq!(value["a"], 1);
    }
}
