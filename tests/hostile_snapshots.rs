//! Hostile snapshot archives against a real node (issue 10, items 3, 4, 5 and 7): a
//! huge `shoal-manifest.json` is refused with bounded memory (from a file and from a
//! URL), entries the archive index does not list (or lists with another size) are
//! refused at their header with nothing written, a name that is both a file and a
//! directory or lies under a file is a 400 without host paths, `file://` recovery
//! outside the snapshots directory answers the same 403 whether or not the path
//! exists, and concurrent snapshot creates with writes in between each get a file of
//! their own whose listed checksum matches it.

mod support;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use serde_json::{json, Value};
use sha2::Digest;
use support::TestNode;

const INDEX: &str = "shoal-index.json";
const MANIFEST: &str = "shoal-manifest.json";

/// A node with collection `c` (dim 4) holding `points` points.
fn node_with_points(points: u64) -> TestNode {
    let node = TestNode::start();
    node.create_collection("c", json!({"vectors": {"size": 4, "distance": "Dot"}}));
    upsert(&node, 1..points + 1);
    node
}

fn upsert(node: &TestNode, ids: std::ops::Range<u64>) {
    let points: Vec<Value> = ids
        .map(|id| json!({"id": id, "vector": [1.0, 0.5, id as f32, 0.0]}))
        .collect();
    node.ok(node.put(
        "/collections/c/points?wait=true",
        &json!({"points": points}),
    ));
}

/// A tar of regular files (and directories, for names ending in `/`), in order; the
/// data of each entry is streamed from its reader.
fn tar_of(entries: Vec<(&str, u64, Box<dyn Read>)>, out: impl std::io::Write) {
    let mut tar = tar::Builder::new(out);
    for (name, size, data) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_entry_type(if name.ends_with('/') {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        tar.append_data(&mut header, name, data).unwrap();
    }
    tar.into_inner().unwrap();
}

fn bytes_entry(name: &str, bytes: Vec<u8>) -> (&str, u64, Box<dyn Read>) {
    (
        name,
        bytes.len() as u64,
        Box::new(std::io::Cursor::new(bytes)),
    )
}

/// `shoal-index.json` listing `files` with their sizes.
fn index(files: &[(&str, u64)]) -> Vec<u8> {
    let files: serde_json::Map<String, Value> = files
        .iter()
        .map(|(n, s)| (n.to_string(), json!(s)))
        .collect();
    serde_json::to_vec(&json!({"format": 1, "files": files})).unwrap()
}

fn archive(entries: Vec<(&str, u64, Box<dyn Read>)>) -> Vec<u8> {
    let mut out = Vec::new();
    tar_of(entries, &mut out);
    out
}

/// Recovers collection `c` from `bytes`, stored as `name` in its snapshots directory.
fn recover_bytes(node: &TestNode, name: &str, bytes: &[u8]) -> (u16, Value) {
    let dir = node.dir().join("snapshots").join("c");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
    let location = format!("file://{}", dir.join(name).display());
    node.put(
        "/collections/c/snapshots/recover",
        &json!({ "location": location }),
    )
}

/// Every file under `dir` whose name is `name`.
fn find_named(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    for _ in 0..100_000 {
        let Some(next) = stack.pop() else { break };
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(path);
            } else if entry.file_name() == name {
                found.push(path);
            }
        }
    }
    found
}

/// The node's peak resident memory in KiB (VmHWM).
fn peak_rss_kib(node: &TestNode) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", node.pid().expect("running"))).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn error_of(body: &Value) -> String {
    body["status"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Item 3: a 96 MiB `shoal-manifest.json` is refused at its header (400) while the
/// node's peak memory grows by far less than the manifest.
#[test]
fn a_huge_manifest_is_refused_with_bounded_memory() {
    let node = node_with_points(10);
    let dir = node.dir().join("snapshots").join("c");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("huge.snapshot");
    let mut json = b"{\"files\":{".to_vec();
    json.resize(96 << 20, b' ');
    let file = std::fs::File::create(&path).unwrap();
    tar_of(
        vec![
            bytes_entry("config.json", b"{}".to_vec()),
            (
                MANIFEST,
                json.len() as u64,
                Box::new(std::io::Cursor::new(json)),
            ),
        ],
        std::io::BufWriter::new(file),
    );
    let (port, source) = serve_once(path.clone());
    for location in [
        format!("file://{}", path.display()),
        format!("http://127.0.0.1:{port}/huge.snapshot"),
    ] {
        let before = peak_rss_kib(&node);
        let (status, body) = node.put(
            "/collections/c/snapshots/recover",
            &json!({ "location": location }),
        );
        let after = peak_rss_kib(&node);
        assert_eq!(status, 400, "{location}: {body}");
        assert!(error_of(&body).contains("larger than the limit"), "{body}");
        assert!(
            after.saturating_sub(before) < 48 * 1024,
            "{location}: peak RSS grew from {before} KiB to {after} KiB"
        );
    }
    source.join().unwrap();
    assert_eq!(node.count("c"), 10);
}

/// A one-shot HTTP source on loopback that streams `path` to the first request (and
/// stops quietly when the client hangs up).
fn serve_once(path: std::path::PathBuf) -> (u16, std::thread::JoinHandle<()>) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let source = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        conn.set_write_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n")
            && request.len() < 65536
            && conn.read(&mut byte).unwrap_or(0) == 1
        {
            request.push(byte[0]);
        }
        let size = std::fs::metadata(&path).unwrap().len();
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
        );
        if conn.write_all(head.as_bytes()).is_ok() {
            let _ = std::io::copy(&mut std::fs::File::open(&path).unwrap(), &mut conn);
        }
    });
    (port, source)
}

/// Item 5: an entry the index does not list is refused at its header, and nothing of it
/// is written anywhere; so is an entry whose size the index states otherwise.
#[test]
fn unlisted_and_resized_entries_are_refused_at_their_header() {
    let node = node_with_points(10);
    let unlisted = archive(vec![
        bytes_entry(INDEX, index(&[("config.json", 2)])),
        bytes_entry("0/segments/unlisted-evil.bin", vec![7u8; 1 << 20]),
        bytes_entry("config.json", b"{}".to_vec()),
        bytes_entry(MANIFEST, b"{\"files\":{}}".to_vec()),
    ]);
    // Recovered from a file: an upload is cut off as soon as the entry is refused, so
    // its client may see the connection close instead of the answer.
    let (status, body) = recover_bytes(&node, "unlisted.snapshot", &unlisted);
    assert_eq!(status, 400, "{body}");
    assert!(
        error_of(&body).contains("not listed in the archive index"),
        "{body}"
    );
    assert!(find_named(node.dir(), "unlisted-evil.bin").is_empty());

    let resized = archive(vec![
        bytes_entry(INDEX, index(&[("0/a.bin", 1)])),
        bytes_entry("0/a.bin", b"12345".to_vec()),
        bytes_entry(MANIFEST, b"{\"files\":{}}".to_vec()),
    ]);
    let (status, body) = recover_bytes(&node, "resized.snapshot", &resized);
    assert_eq!(status, 400, "{body}");
    assert!(
        error_of(&body).contains("the archive index lists 1"),
        "{body}"
    );
    assert_eq!(node.count("c"), 10);
}

/// Duplicate names: twice the same file (indexed), and a directory entry followed by a
/// file of the same name (an archive without index) are 400s.
#[test]
fn duplicate_names_are_refused() {
    let node = node_with_points(5);
    let twice = archive(vec![
        bytes_entry(INDEX, index(&[("0/a.bin", 1)])),
        bytes_entry("0/a.bin", b"1".to_vec()),
        bytes_entry("0/a.bin", b"2".to_vec()),
        bytes_entry(MANIFEST, b"{\"files\":{}}".to_vec()),
    ]);
    let (status, body) = node.upload("/collections/c/snapshots/upload", twice);
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).contains("appears twice"), "{body}");

    let dir_then_file = archive(vec![
        bytes_entry("0/a/", Vec::new()),
        bytes_entry("0/a", b"x".to_vec()),
        bytes_entry(MANIFEST, b"{\"files\":{}}".to_vec()),
    ]);
    let (status, body) = node.upload("/collections/c/snapshots/upload", dir_then_file);
    assert_eq!(status, 400, "{body}");
    assert!(
        error_of(&body).contains("both a directory and a file"),
        "{body}"
    );
    assert_eq!(node.count("c"), 5);
}

/// Item 7c: a file followed by an entry under it is a 400 that shows no host path.
#[test]
fn a_file_followed_by_a_child_is_a_400_without_host_paths() {
    let node = node_with_points(5);
    let nested = archive(vec![
        bytes_entry("0/a", b"file".to_vec()),
        bytes_entry("0/a/b", b"child".to_vec()),
        bytes_entry(MANIFEST, b"{\"files\":{}}".to_vec()),
    ]);
    let (status, body) = node.upload("/collections/c/snapshots/upload", nested);
    assert_eq!(status, 400, "{body}");
    let message = error_of(&body);
    assert!(message.contains("lies under the file `0/a`"), "{body}");
    let host = node.dir().display().to_string();
    assert!(!message.contains(&host), "{message}");
    assert!(!message.contains("/tmp"), "{message}");
    assert_eq!(node.count("c"), 5);
}

/// Item 7d: outside the snapshots directory, an existing and a missing path answer the
/// same 403.
#[test]
fn file_recovery_outside_the_snapshots_dir_tells_nothing() {
    let node = node_with_points(3);
    let outside = tempfile::NamedTempFile::new().unwrap();
    let answers: Vec<(u16, Value)> = [
        format!("file://{}", outside.path().display()),
        format!("file://{}-missing/x.snapshot", outside.path().display()),
        "file:///etc/passwd".to_string(),
        "file:///no/such/dir/x.snapshot".to_string(),
    ]
    .iter()
    .map(|location| {
        node.put(
            "/collections/c/snapshots/recover",
            &json!({ "location": location }),
        )
    })
    .collect();
    for (status, body) in &answers {
        assert_eq!(*status, 403, "{body}");
        assert_eq!(error_of(body), error_of(&answers[0].1));
    }
    assert_eq!(node.count("c"), 3);
}

/// Item 4: concurrent creates with writes in between: every create yields a distinct
/// file, and every listed checksum matches its file.
#[test]
fn concurrent_creates_get_distinct_files_with_matching_checksums() {
    let node = node_with_points(20);
    let names: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..6u64)
            .map(|worker| {
                let node = &node;
                scope.spawn(move || {
                    let mut names = Vec::new();
                    for round in 0..4u64 {
                        let first = 1000 + worker * 100 + round * 10;
                        upsert(node, first..first + 3);
                        let description =
                            node.ok(node.post("/collections/c/snapshots", &json!({})));
                        names.push(description["name"].as_str().unwrap().to_string());
                    }
                    names
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let distinct: BTreeSet<&String> = names.iter().collect();
    assert_eq!(distinct.len(), names.len(), "{names:?}");
    let listed = node.ok(node.get("/collections/c/snapshots"));
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), names.len(), "{listed:?}");
    for snapshot in listed {
        let name = snapshot["name"].as_str().unwrap();
        let bytes = node.download(&format!("/collections/c/snapshots/{name}"));
        let actual = sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        assert_eq!(
            snapshot["checksum"].as_str(),
            Some(actual.as_str()),
            "{name}"
        );
    }
    // The newest snapshot still recovers (its first entry is the index).
    let newest = names.last().unwrap();
    let path = node.dir().join("snapshots").join("c").join(newest);
    let mut first = [0u8; 100];
    std::fs::File::open(&path)
        .unwrap()
        .read_exact(&mut first)
        .unwrap();
    assert!(first.starts_with(INDEX.as_bytes()));
    let (status, body) = node.put(
        "/collections/c/snapshots/recover",
        &json!({ "location": format!("file://{}", path.display()) }),
    );
    assert_eq!(status, 200, "{body}");
}
