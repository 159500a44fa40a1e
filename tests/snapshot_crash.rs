//! `kill -9` while snapshots are recovered or created. After every restart the target
//! collection holds either exactly its old points or exactly the snapshot's (never a
//! mix, never missing points), and no recovery or snapshot debris is left behind.
//! When each kill lands is up to the machine; the invariants hold for every moment.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{vectors, TestNode};

const DIM: usize = 64;
const BIG: usize = 50_000;
const OLD: usize = 1_000;
/// Moments to kill at, after the recovery was accepted.
const KILL_AFTER_MS: [u64; 5] = [0, 50, 200, 500, 1_000];

fn create(node: &TestNode, name: &str) {
    node.create_collection(
        name,
        json!({"vectors": {"size": DIM, "distance": "Dot"}, "shard_number": 2}),
    );
}

fn fill(node: &TestNode, name: &str, count: usize, generation: u64) {
    let vs = vectors(count, DIM, generation);
    for (batch, chunk) in vs.chunks(2_000).enumerate() {
        let ids: Vec<usize> = (0..chunk.len()).map(|i| batch * 2_000 + i + 1).collect();
        let payloads: Vec<Value> = ids
            .iter()
            .map(|id| json!({"gen": generation, "i": id}))
            .collect();
        node.ok(node.put(
            &format!("/collections/{name}/points?wait=true"),
            &json!({"batch": {"ids": ids, "vectors": chunk, "payloads": payloads}}),
        ));
    }
}

fn snapshot(node: &TestNode, name: &str) -> PathBuf {
    let desc = node.ok(node.post(&format!("/collections/{name}/snapshots"), &json!({})));
    node.dir()
        .join("snapshots")
        .join(name)
        .join(desc["name"].as_str().expect("name"))
}

/// Every entry under `dir` whose name marks unfinished work.
fn debris(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0;
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            seen += 1;
            assert!(seen < 1_000_000, "runaway directory walk");
            let name = entry.file_name().to_string_lossy().to_string();
            let path = entry.path();
            if name.starts_with(".recovery-")
                || name.starts_with(".deleted-")
                || name.ends_with(".tmp")
                || name.ends_with(".upload")
            {
                found.push(path.display().to_string());
            } else if path.is_dir() {
                stack.push(path);
            }
        }
    }
    found.sort();
    found
}

fn ids_and_gens(points: &BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    points
        .iter()
        .map(|(id, p)| (id.clone(), p["payload"]["gen"].clone()))
        .collect()
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Old,
    New,
}

/// The collection is exactly `old` or exactly `new`; says which.
fn classify(
    got: &BTreeMap<String, Value>,
    old: &BTreeMap<String, Value>,
    new: &BTreeMap<String, Value>,
    when: &str,
) -> Outcome {
    if got == old {
        return Outcome::Old;
    }
    if got == new {
        return Outcome::New;
    }
    let gens = ids_and_gens(got);
    let mut by_gen: BTreeMap<String, usize> = BTreeMap::new();
    for g in gens.values() {
        *by_gen.entry(g.to_string()).or_default() += 1;
    }
    panic!(
        "{when}: the collection is neither the old data ({} points) nor the snapshot ({} points): {} points, by generation {by_gen:?}",
        old.len(),
        new.len(),
        got.len()
    );
}

#[test]
fn kill9_during_recovery_leaves_old_or_new_never_a_mix() {
    let mut node = TestNode::start();
    create(&node, "big");
    fill(&node, "big", BIG, 2);
    let big_snapshot = snapshot(&node, "big");
    let new = node.points("big");
    assert_eq!(new.len(), BIG);

    create(&node, "crash");
    fill(&node, "crash", OLD, 1);
    let old_snapshot = snapshot(&node, "crash");
    let old = node.points("crash");
    assert_eq!(old.len(), OLD);

    let location = format!("file://{}", big_snapshot.display());
    let mut outcomes = Vec::new();
    for delay in KILL_AFTER_MS {
        let (status, body) = node.put(
            "/collections/crash/snapshots/recover?wait=false",
            &json!({"location": location}),
        );
        assert_eq!(status, 202, "{body}");
        std::thread::sleep(Duration::from_millis(delay));
        node.restart_after_kill9();

        let when = format!("killed {delay} ms after the recovery started");
        let left = debris(&node.storage_path().join("collections"));
        assert!(left.is_empty(), "{when}: left behind {left:?}");
        let outcome = classify(&node.points("crash"), &old, &new, &when);
        assert_eq!(
            node.count("big"),
            BIG as u64,
            "{when}: the source collection"
        );
        outcomes.push((delay, format!("{outcome:?}")));

        // the collection works after the crash: a recovery to the old data succeeds
        if outcome == Outcome::New {
            let answer = node.put(
                "/collections/crash/snapshots/recover",
                &json!({"location": format!("file://{}", old_snapshot.display())}),
            );
            assert_eq!(node.ok(answer), Value::Bool(true));
            assert_eq!(node.points("crash"), old, "{when}: back to the old data");
        }
    }
    eprintln!("kill moments and what the restart found: {outcomes:?}");

    // finally a recovery that is allowed to finish gives exactly the snapshot's data
    let answer = node.put(
        "/collections/crash/snapshots/recover",
        &json!({"location": location}),
    );
    assert_eq!(node.ok(answer), Value::Bool(true));
    node.restart_after_kill9();
    assert_eq!(node.points("crash"), new);
}

#[test]
fn kill9_during_snapshot_creation_leaves_no_partial_snapshot() {
    let mut node = TestNode::start();
    create(&node, "big");
    fill(&node, "big", BIG / 2, 3);
    let want = node.points("big");
    let dir = node.dir().join("snapshots").join("big");
    let mut outcomes = Vec::new();
    for delay in [0u64, 20, 100, 300] {
        let (status, body) = node.post("/collections/big/snapshots?wait=false", &json!({}));
        assert_eq!(status, 202, "{body}");
        std::thread::sleep(Duration::from_millis(delay));
        node.restart_after_kill9();
        let when = format!("killed {delay} ms into a snapshot");
        // whatever is listed is complete: its checksum matches its bytes and it recovers
        let listed = node.ok(node.get("/collections/big/snapshots"));
        for desc in listed.as_array().unwrap() {
            let name = desc["name"].as_str().unwrap();
            let bytes = std::fs::read(dir.join(name)).unwrap();
            assert_eq!(desc["size"], bytes.len(), "{when}: {name}");
            assert!(
                desc["checksum"].is_string(),
                "{when}: {name} has no checksum"
            );
        }
        outcomes.push((delay, listed.as_array().unwrap().len()));
        let left = debris(&node.dir().join("snapshots"));
        assert!(left.is_empty(), "{when}: left behind {left:?}");
        assert_eq!(node.points("big"), want, "{when}: the collection");
    }
    eprintln!("kill moments and how many snapshots were listed after: {outcomes:?}");
    // a listed snapshot really restores the collection
    let listed = node.ok(node.get("/collections/big/snapshots"));
    if let Some(last) = listed.as_array().unwrap().last() {
        let location = format!(
            "file://{}",
            dir.join(last["name"].as_str().unwrap()).display()
        );
        let answer = node.put(
            "/collections/copy/snapshots/recover",
            &json!({"location": location}),
        );
        assert_eq!(node.ok(answer), Value::Bool(true));
        assert_eq!(node.points("copy"), want);
    }
}

#[test]
fn leftovers_are_removed_at_startup() {
    let mut node = TestNode::start();
    create(&node, "keep");
    fill(&node, "keep", 300, 4);
    let snap = snapshot(&node, "keep");
    let want = node.points("keep");
    node.kill9();

    let storage = node.storage_path();
    let snapshots = node.dir().join("snapshots");
    let snap_name = snap.file_name().unwrap().to_string_lossy().to_string();
    let planted: Vec<PathBuf> = vec![
        storage.join("collections/.recovery-keep-0123456789abcdef/0/junk.bin"),
        storage.join("collections/.deleted-gone-0123/0/junk.bin"),
        storage.join("tmp/col-keep-recovery-XXXX/junk.bin"),
        storage.join("tmp/upload/spool.bin"),
        snapshots.join(format!("keep/.{snap_name}.0123456789abcdef.tmp")),
        snapshots.join(format!("keep/.{snap_name}.checksum.0123456789abcdef.tmp")),
        snapshots.join("keep/.up.snapshot.0123456789abcdef.upload"),
        snapshots.join("keep/shards/0/.keep-shard-0-x.snapshot.0123456789abcdef.tmp"),
        snapshots.join(".full-snapshot-x.snapshot.0123456789abcdef.tmp"),
    ];
    for path in &planted {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, vec![1u8; 4096]).unwrap();
    }
    let started = Instant::now();
    node.restart_after_kill9();
    let still: Vec<String> = planted
        .iter()
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        still.is_empty(),
        "not removed at start-up (restart took {:?}): {still:?}",
        started.elapsed()
    );
    assert!(!storage
        .join("collections/.recovery-keep-0123456789abcdef")
        .exists());
    assert_eq!(node.points("keep"), want);
    assert!(snap.exists(), "a finished snapshot is kept");
    let listed = node.ok(node.get("/collections/keep/snapshots"));
    assert_eq!(listed.as_array().unwrap().len(), 1);
}
