//! Where a snapshot to recover comes from: a `file://` URL inside `snapshots_path`, or an
//! `http(s)://` URL streamed with reqwest. Both become a byte stream that is unpacked as
//! it arrives: a download is never written to disk as a whole archive first.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::TryStreamExt;
use reqwest::Url;
use tokio::io::AsyncRead;

use crate::error::{Error, Result};

/// A parsed recovery location.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    /// A file inside the snapshots directory (canonical path).
    File(PathBuf),
    /// A remote snapshot.
    Url(Url),
}

/// Parses and checks a collection recovery `location`.
pub fn parse_location(
    location: &str,
    snapshots_root: &Path,
    url_recovery_enabled: bool,
) -> Result<Location> {
    let url = Url::parse(location).map_err(|e| {
        Error::BadRequest(format!(
            "Invalid snapshot URL `{location}`: {e} (an absolute URL is required)"
        ))
    })?;
    match url.scheme() {
        "file" => file_location(&url, snapshots_root).map(Location::File),
        "http" | "https" => {
            if !url_recovery_enabled {
                return Err(Error::Forbidden(
                    "Snapshot recovery from remote URLs is disabled in the configuration".into(),
                ));
            }
            Ok(Location::Url(url))
        }
        other => Err(Error::BadRequest(format!(
            "URL {location} with scheme {other} is not supported"
        ))),
    }
}

/// The file a `file://` URL names, if it is inside the snapshots directory. A path
/// outside it is refused with the same 403 whether or not it exists (the check resolves
/// the longest existing ancestor, so neither existence nor symlinks tell anything);
/// only inside the directory is a missing file reported as such.
fn file_location(url: &Url, snapshots_root: &Path) -> Result<PathBuf> {
    if !matches!(url.host_str(), None | Some("") | Some("localhost")) {
        return Err(Error::BadRequest(
            "Invalid snapshot URI, file path must be absolute or on localhost".into(),
        ));
    }
    let path = url.to_file_path().map_err(|_| {
        Error::BadRequest("Invalid snapshot URI, file path must be absolute or on localhost".into())
    })?;
    let root = snapshots_root
        .canonicalize()
        .map_err(|e| Error::io("resolving the snapshots directory", e))?;
    let outside = || {
        Error::Forbidden(format!(
            "Snapshot file path must be inside the snapshots directory {:?}",
            root.display().to_string()
        ))
    };
    if !resolve_through_existing(&path).is_some_and(|resolved| resolved.starts_with(&root)) {
        return Err(outside());
    }
    let canonical = path.canonicalize().map_err(|_| {
        Error::BadRequest(format!(
            "Snapshot file {:?} does not exist",
            path.display().to_string()
        ))
    })?;
    if !canonical.starts_with(&root) {
        return Err(outside());
    }
    if !canonical.is_file() {
        return Err(Error::BadRequest(format!(
            "Snapshot file {:?} is not a regular file",
            path.display().to_string()
        )));
    }
    Ok(canonical)
}

/// `path` with its longest existing ancestor resolved (symlinks followed) and the rest
/// appended as written; `None` if the rest is not plain names (`..` after a missing
/// directory cannot be judged without looking further, so it is treated as outside).
fn resolve_through_existing(path: &Path) -> Option<PathBuf> {
    for ancestor in path.ancestors() {
        if let Ok(resolved) = ancestor.canonicalize() {
            let rest = path.strip_prefix(ancestor).ok()?;
            let plain = rest
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
            return plain.then(|| resolved.join(rest));
        }
    }
    None
}

/// How long connecting to a snapshot's source may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// An HTTP client for snapshot downloads: bounded connect time, and a read timeout so
/// that a source that stalls fails the recovery instead of hanging it. The connect
/// timeout is shorter than qdrant-client's default request timeout (5 s), so a host that
/// does not answer is reported to the client rather than cut off by its own timeout.
pub fn download_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(Duration::from_secs(60))
        .user_agent(concat!("shoal/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::service(format!("building the HTTP client: {e}")))
}

/// Starts a download and returns its body as an async byte stream.
pub async fn open_url(
    client: &reqwest::Client,
    url: &Url,
    api_key: Option<&str>,
) -> Result<impl AsyncRead + Send + Unpin + 'static> {
    let mut request = client.get(url.clone());
    if let Some(key) = api_key {
        request = request.header("api-key", key);
    }
    let response = request.send().await.map_err(|e| {
        Error::BadRequest(format!(
            "Failed to download snapshot from {url}: {}",
            describe(&e)
        ))
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(Error::BadInput(format!(
            "Failed to download tar from {url}: status - {status}"
        )));
    }
    let stream = response.bytes_stream().map_err(std::io::Error::other);
    Ok(tokio_util::io::StreamReader::new(stream))
}

/// reqwest's own message plus its source chain, which carries the useful part
/// ("connection refused", "dns error").
fn describe(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_must_stay_inside_the_snapshots_dir() {
        let root = tempfile::tempdir().unwrap();
        let inside = root.path().join("c").join("a.snapshot");
        std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
        std::fs::write(&inside, b"x").unwrap();
        let url = format!("file://{}", inside.display());
        assert_eq!(
            parse_location(&url, root.path(), true).unwrap(),
            Location::File(inside.canonicalize().unwrap())
        );

        let outside = tempfile::NamedTempFile::new().unwrap();
        let err = parse_location(
            &format!("file://{}", outside.path().display()),
            root.path(),
            true,
        )
        .unwrap_err();
        assert!(matches!(err, Error::Forbidden(_)), "{err}");
        let sneaky = format!(
            "file://{}/c/../../{}",
            root.path().display(),
            outside.path().display()
        );
        assert!(parse_location(&sneaky, root.path(), true).is_err());

        // Outside the directory: the same 403 whether the path exists or not.
        let absent = format!("file://{}-absent/x.snapshot", outside.path().display());
        let present = format!("file://{}", outside.path().display());
        let (absent, present) = (
            parse_location(&absent, root.path(), true).unwrap_err(),
            parse_location(&present, root.path(), true).unwrap_err(),
        );
        assert!(matches!(absent, Error::Forbidden(_)), "{absent}");
        assert_eq!(absent.to_string(), present.to_string());
        // A symlink inside pointing outside does not tell either.
        std::os::unix::fs::symlink("/etc", root.path().join("link")).unwrap();
        for target in ["passwd", "no-such-file"] {
            let url = format!("file://{}/link/{target}", root.path().display());
            let err = parse_location(&url, root.path(), true).unwrap_err();
            assert_eq!(err.to_string(), present.to_string(), "{target}");
        }

        let missing = format!("file://{}/nope.snapshot", root.path().display());
        assert!(matches!(
            parse_location(&missing, root.path(), true),
            Err(Error::BadRequest(_))
        ));
        let remote_host = format!("file://example.com{}", inside.display());
        assert!(matches!(
            parse_location(&remote_host, root.path(), true),
            Err(Error::BadRequest(_))
        ));
    }

    #[test]
    fn schemes_and_the_url_switch() {
        let root = tempfile::tempdir().unwrap();
        assert!(matches!(
            parse_location("http://h/x", root.path(), true),
            Ok(Location::Url(_))
        ));
        assert!(matches!(
            parse_location("https://h/x", root.path(), false),
            Err(Error::Forbidden(_))
        ));
        assert!(matches!(
            parse_location("ftp://h/x", root.path(), true),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            parse_location("not a url", root.path(), true),
            Err(Error::BadRequest(_))
        ));
    }
}
