//! Hostile shard data inside snapshots whose archive checks pass: a real snapshot is
//! downloaded, entries are edited with the `tar` crate and `shoal-manifest.json` is
//! rewritten with the new sizes and sha256s, so only the inside is hostile.
//!
//! - a shard `manifest.json` naming files outside the shard (another collection's WAL,
//!   an absolute path, `../`) is refused with 400; the other collection keeps every
//!   point across a restart and the named file is untouched;
//! - a dim-8 collection's snapshot whose `config.json` claims dim 4 is refused with 400
//!   when uploaded into a dim-4 collection, with WAL-only data and with segment data;
//! - the shard snapshot route refuses both the same way, and so does the start-up
//!   `--snapshot` flag (the process exits with one line).
//!
//! In every case the target collection keeps its points.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::{vectors, TestNode};

const ARCHIVE_MANIFEST: &str = "shoal-manifest.json";

/// The entries of a tar archive, in order.
fn entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(bytes);
    let mut out = Vec::new();
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()
            .expect("entry path")
            .to_string_lossy()
            .into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("entry data");
        out.push((path, data));
    }
    out
}

/// A tar of `files` followed by a `shoal-manifest.json` that lists each one's size and
/// sha256, as shoal writes it.
fn pack(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut listed = BTreeMap::new();
    let mut builder = tar::Builder::new(Vec::new());
    let add = |builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, path, data)
            .expect("append entry");
    };
    for (path, data) in files.iter().filter(|(p, _)| p != ARCHIVE_MANIFEST) {
        let sha256: String = Sha256::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        listed.insert(path.clone(), json!({"size": data.len(), "sha256": sha256}));
        add(&mut builder, path, data);
    }
    let manifest = serde_json::to_vec(&json!({ "files": listed })).unwrap();
    add(&mut builder, ARCHIVE_MANIFEST, &manifest);
    builder.into_inner().expect("finish tar")
}

fn json_of(files: &[(String, Vec<u8>)], path: &str) -> Value {
    let (_, data) = files
        .iter()
        .find(|(p, _)| p == path)
        .unwrap_or_else(|| panic!("no {path} in the archive"));
    serde_json::from_slice(data).expect("json entry")
}

fn set_json(files: &mut [(String, Vec<u8>)], path: &str, value: &Value) {
    let entry = files.iter_mut().find(|(p, _)| p == path).expect("entry");
    entry.1 = serde_json::to_vec_pretty(value).unwrap();
}

fn create(node: &TestNode, name: &str, dim: usize) {
    node.create_collection(
        name,
        json!({"vectors": {"size": dim, "distance": "Dot"}, "shard_number": 1}),
    );
}

fn fill(node: &TestNode, name: &str, count: usize, dim: usize) {
    let points: Vec<Value> = vectors(count, dim, 7)
        .into_iter()
        .enumerate()
        .map(|(i, v)| json!({"id": i + 1, "vector": v, "payload": {"i": i}}))
        .collect();
    node.ok(node.put(
        &format!("/collections/{name}/points?wait=true"),
        &json!({ "points": points }),
    ));
}

fn collection_snapshot(node: &TestNode, name: &str) -> Vec<u8> {
    let desc = node.ok(node.post(&format!("/collections/{name}/snapshots"), &json!({})));
    let file = desc["name"].as_str().expect("snapshot name");
    node.download(&format!("/collections/{name}/snapshots/{file}"))
}

fn shard_snapshot(node: &TestNode, name: &str) -> Vec<u8> {
    let desc = node.ok(node.post(
        &format!("/collections/{name}/shards/0/snapshots"),
        &json!({}),
    ));
    let file = desc["name"].as_str().expect("snapshot name");
    node.download(&format!("/collections/{name}/shards/0/snapshots/{file}"))
}

fn upload_collection(node: &TestNode, name: &str, archive: Vec<u8>) -> (u16, Value) {
    node.upload(
        &format!("/collections/{name}/snapshots/upload?priority=snapshot&wait=true"),
        archive,
    )
}

fn upload_shard(node: &TestNode, name: &str, archive: Vec<u8>) -> (u16, Value) {
    node.upload(
        &format!("/collections/{name}/shards/0/snapshots/upload?priority=snapshot&wait=true"),
        archive,
    )
}

/// The WAL files of a collection's shard 0, as paths and contents.
fn wal_files(node: &TestNode, name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = node
        .storage_path()
        .join("collections")
        .join(name)
        .join("0")
        .join("wal");
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("wal dir")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    out.sort();
    out
}

/// The shard manifest of `files` with `slot` of a segment set to `name`; a segment is
/// added when the snapshot has none.
fn with_hostile_name(
    files: &[(String, Vec<u8>)],
    manifest_path: &str,
    slot: &str,
    name: &str,
) -> Vec<(String, Vec<u8>)> {
    let mut files = files.to_vec();
    let mut manifest = json_of(&files, manifest_path);
    let next_file = manifest["next_file"].as_u64().unwrap();
    let next_segment = manifest["next_segment"].as_u64().unwrap();
    let mut segment = json!({
        "id": next_segment, "sealed": true, "points": [], "deleted": null, "indexes": {}
    });
    match slot {
        "points" => segment["points"] = json!([name]),
        "deleted" => segment["deleted"] = json!(name),
        _ => segment["indexes"] = json!({ "": name }),
    }
    manifest["segments"]
        .as_array_mut()
        .unwrap()
        .insert(0, segment);
    manifest["next_segment"] = json!(next_segment + 1);
    manifest["next_file"] = json!(next_file + 1);
    set_json(&mut files, manifest_path, &manifest);
    files
}

fn assert_refused(answer: (u16, Value)) {
    let (status, body) = answer;
    assert_eq!(status, 400, "{body}");
    let message = body["status"]["error"].as_str().unwrap_or_default();
    assert!(message.contains("Invalid"), "{body}");
    // The refused name itself is quoted in backticks; nothing else may show a host path.
    let unquoted: String = message.split('`').step_by(2).collect();
    assert!(
        !unquoted.contains("/tmp/"),
        "the answer shows a host path: {body}"
    );
}

#[test]
fn shard_manifests_naming_files_outside_the_shard_are_refused() {
    let mut node = TestNode::start();
    create(&node, "a", 4);
    fill(&node, "a", 20, 4);
    create(&node, "b", 4);
    fill(&node, "b", 300, 4);
    let b_wal = wal_files(&node, "b");
    assert!(!b_wal.is_empty());
    let b_wal_name = b_wal[0]
        .0
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let absolute = b_wal[0].0.to_string_lossy().into_owned();
    let collection = entries(&collection_snapshot(&node, "a"));
    let shard = entries(&shard_snapshot(&node, "a"));
    let a_points = node.points("a");

    let traversal = format!("../../b/0/wal/{b_wal_name}");
    let hostile = [
        ("indexes", traversal.as_str()),
        ("points", traversal.as_str()),
        ("deleted", "../../b/0/wal/x.deleted"),
        ("points", absolute.as_str()),
        ("indexes", absolute.as_str()),
        ("points", "segments/../../../b/0/wal/000000000001.log"),
        ("deleted", "../segments/000001.deleted"),
    ];
    for (slot, name) in hostile {
        let files = with_hostile_name(&collection, "0/manifest.json", slot, name);
        assert_refused(upload_collection(&node, "a", pack(&files)));
        let files = with_hostile_name(&shard, "manifest.json", slot, name);
        assert_refused(upload_shard(&node, "a", pack(&files)));
    }
    // Before the restart (a clean stop may checkpoint b and drop its old WAL files).
    assert_eq!(wal_files(&node, "b"), b_wal, "b's WAL was changed");
    node.stop();
    node.restart_after_kill9();
    assert_eq!(node.count("b"), 300);
    assert_eq!(node.points("a"), a_points);
    // The untouched snapshots still recover, so the refusals were about the names.
    assert_eq!(upload_collection(&node, "a", pack(&collection)).0, 200);
    assert_eq!(upload_shard(&node, "a", pack(&shard)).0, 200);
    assert_eq!(node.points("a"), a_points);
}

/// A dim-8 collection's data, in a collection snapshot claiming dim 4 and in a shard
/// snapshot, recovered into a dim-4 collection: refused, old data intact. `restart`
/// first moves the data from the WAL into segment files.
fn mismatched_dims_are_refused(restart: bool) {
    let mut node = TestNode::start();
    create(&node, "eight", 8);
    fill(&node, "eight", 50, 8);
    create(&node, "four", 4);
    fill(&node, "four", 30, 4);
    if restart {
        node.stop();
        node.restart_after_kill9();
    }
    let mut collection = entries(&collection_snapshot(&node, "eight"));
    let shard = entries(&shard_snapshot(&node, "eight"));
    let segments = json_of(&collection, "0/manifest.json")["segments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| !s["points"].as_array().unwrap().is_empty())
        .count();
    let wal = collection
        .iter()
        .filter(|(p, _)| p.starts_with("0/wal/"))
        .count();
    if restart {
        assert!(segments > 0, "no segment data after a restart");
    } else {
        assert!(wal > 0 && segments == 0, "expected WAL-only data");
    }
    let mut config = json_of(&collection, "config.json");
    config["params"]["vectors"]["size"] = json!(4);
    set_json(&mut collection, "config.json", &config);
    let four = node.points("four");

    assert_refused(upload_collection(&node, "four", pack(&collection)));
    assert_refused(upload_shard(&node, "four", pack(&shard)));
    assert_eq!(node.points("four"), four);
    // The start-up flag refuses it the same way: the process exits, naming the problem.
    let file = node.dir().join("hostile.snapshot");
    std::fs::write(&file, pack(&collection)).unwrap();
    let flag = format!("{}:four", file.display());
    let (code, output) = node.run_expecting_exit(
        &["--snapshot", &flag, "--force-snapshot"],
        std::time::Duration::from_secs(60),
    );
    assert!(matches!(code, Some(c) if c != 0), "exit {code:?}\n{output}");
    assert!(output.contains("Invalid snapshot"), "{output}");
    assert!(!output.contains("panicked"), "{output}");
    node.restart_with_args(&[]);
    assert_eq!(node.points("four"), four);
    assert_eq!(node.count("eight"), 50);
}

#[test]
fn wal_data_of_another_dimension_is_refused() {
    mismatched_dims_are_refused(false);
}

#[test]
fn segment_data_of_another_dimension_is_refused() {
    mismatched_dims_are_refused(true);
}
