//! Receiving an uploaded snapshot: the bytes stream into a hidden file in the target
//! directory while their sha256 is computed, then the file is renamed to its final name.
//! A checksum given with the upload is checked before the rename; on a mismatch or a
//! broken upload nothing is left behind.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use super::checksum::to_hex;
use super::naming::check_file_name;
use crate::error::{Error, Result};

/// Stores an uploaded snapshot as `dir/<file_name>` (a random name if the client gave
/// none) and returns its path.
pub async fn store_stream<S, E>(
    mut body: S,
    dir: &Path,
    file_name: Option<&str>,
    expected: Option<&str>,
) -> Result<PathBuf>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let name = match file_name.map(base_name).filter(|n| !n.is_empty()) {
        Some(name) => {
            check_file_name(&name)
                .map_err(|_| Error::BadRequest(format!("invalid snapshot file name `{name}`")))?;
            name
        }
        None => format!("{}.snapshot", uuid::Uuid::new_v4()),
    };
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let staged = dir.join(format!(".{name}.{}.upload", uuid::Uuid::new_v4().simple()));
    let result = async {
        let mut file = tokio::fs::File::create(&staged)
            .await
            .map_err(|e| Error::io(format!("creating {}", staged.display()), e))?;
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| Error::BadRequest(format!("the upload was interrupted: {e}")))?;
            sha2::Digest::update(&mut hasher, &chunk);
            file.write_all(&chunk)
                .await
                .map_err(|e| Error::io(format!("writing {}", staged.display()), e))?;
        }
        file.sync_all()
            .await
            .map_err(|e| Error::io(format!("syncing {}", staged.display()), e))?;
        let actual = to_hex(&sha2::Digest::finalize(hasher));
        if let Some(expected) = expected {
            if !expected.trim().eq_ignore_ascii_case(&actual) {
                // Qdrant's upload message names the computed digest first.
                return Err(Error::ChecksumMismatch {
                    expected: actual,
                    actual: expected.trim().to_string(),
                });
            }
        }
        let target = dir.join(&name);
        tokio::fs::rename(&staged, &target)
            .await
            .map_err(|e| Error::io(format!("renaming to {}", target.display()), e))?;
        Ok(target)
    }
    .await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&staged).await;
    }
    result
}

/// The last path component of a client-given file name.
fn base_name(name: &str) -> String {
    name.rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(
        parts: &[&'static [u8]],
    ) -> impl Stream<Item = std::result::Result<Bytes, String>> + Unpin {
        futures::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn stores_and_checks() {
        let dir = tempfile::tempdir().unwrap();
        let path = store_stream(
            body(&[b"ab", b"c"]),
            dir.path(),
            Some("../x/up.snapshot"),
            None,
        )
        .await
        .unwrap();
        assert_eq!(path, dir.path().join("up.snapshot"));
        assert_eq!(std::fs::read(&path).unwrap(), b"abc");
        let sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert!(
            store_stream(body(&[b"abc"]), dir.path(), Some("ok.snapshot"), Some(sha))
                .await
                .is_ok()
        );
        let bad = store_stream(
            body(&[b"abc"]),
            dir.path(),
            Some("bad.snapshot"),
            Some(&"0".repeat(64)),
        )
        .await;
        assert!(matches!(bad, Err(Error::ChecksumMismatch { .. })));
        assert!(!dir.path().join("bad.snapshot").exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no staging file left"
        );
    }
}
