//! Start-up recovery flags on real processes: `--snapshot PATH:NAME` restores a
//! collection, a conflict without force stops start-up with one line naming the collection
//! and `--force-snapshot`, every spelling of force replaces, and `--storage-snapshot`
//! restores collections and aliases. Every restored point is compared with the source.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use support::{vectors, TestNode};

const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

fn fill(node: &TestNode, name: &str, count: usize, dim: usize, generation: u64) {
    let vs = vectors(count, dim, generation);
    for (batch, chunk) in vs.chunks(500).enumerate() {
        let points: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let id = batch * 500 + i + 1;
                json!({"id": id, "vector": v, "payload": {"gen": generation, "i": id, "tags": ["a", id % 3]}})
            })
            .collect();
        node.ok(node.put(
            &format!("/collections/{name}/points?wait=true"),
            &json!({"points": points}),
        ));
    }
}

fn create(node: &TestNode, name: &str, dim: usize, shards: u32) {
    node.create_collection(
        name,
        json!({"vectors": {"size": dim, "distance": "Dot"}, "shard_number": shards}),
    );
}

/// Creates a collection snapshot on `node` and copies it to `dest` (anywhere on disk).
fn snapshot_to(node: &TestNode, name: &str, dest: &Path) -> PathBuf {
    let desc = node.ok(node.post(&format!("/collections/{name}/snapshots"), &json!({})));
    let file = desc["name"].as_str().expect("snapshot name");
    let src = node.dir().join("snapshots").join(name).join(file);
    std::fs::copy(&src, dest).expect("copy snapshot");
    dest.to_path_buf()
}

fn collections(node: &TestNode) -> Vec<String> {
    let result = node.ok(node.get("/collections"));
    let mut names: Vec<String> = result["collections"]
        .as_array()
        .expect("collections")
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn aliases(node: &TestNode) -> BTreeMap<String, String> {
    let result = node.ok(node.get("/aliases"));
    result["aliases"]
        .as_array()
        .expect("aliases")
        .iter()
        .map(|a| {
            (
                a["alias_name"].as_str().unwrap().to_string(),
                a["collection_name"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn assert_same(got: &BTreeMap<String, Value>, want: &BTreeMap<String, Value>, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: point count");
    for (id, point) in want {
        assert_eq!(got.get(id), Some(point), "{what}: point {id}");
    }
}

/// The conflict message: exactly one line mentions the conflict, it names the thing and
/// the flag, and nothing panicked.
fn assert_one_line_conflict(code: Option<i32>, output: &str, thing: &str) {
    assert!(
        matches!(code, Some(c) if c != 0),
        "exit code {code:?}\n{output}"
    );
    let lines: Vec<&str> = output
        .lines()
        .filter(|l| l.contains("already exists"))
        .collect();
    assert_eq!(lines.len(), 1, "expected one conflict line:\n{output}");
    assert!(
        lines[0].contains(thing),
        "`{}` does not name {thing}",
        lines[0]
    );
    assert!(
        lines[0].contains("--force-snapshot"),
        "`{}` does not name the flag",
        lines[0]
    );
    assert!(!output.contains("panicked"), "a panic:\n{output}");
    assert!(
        !output.contains("stack backtrace"),
        "a backtrace:\n{output}"
    );
}

#[test]
fn snapshot_flag_restores_and_conflicts_need_force() {
    let source = TestNode::start();
    create(&source, "books", 8, 2);
    fill(&source, "books", 700, 8, 1);
    let want = source.points("books");
    let scratch = tempfile::tempdir().unwrap();
    // a path with a colon in it: the mapping splits at the last colon
    let snap = snapshot_to(&source, "books", &scratch.path().join("books:v1.snapshot"));
    let arg = format!("{}:library", snap.display());

    let mut node = TestNode::start_with_args(&["--snapshot", &arg]);
    assert_eq!(collections(&node), vec!["library".to_string()]);
    assert_same(&node.points("library"), &want, "restored by --snapshot");
    let info = node.ok(node.get("/collections/library"));
    assert_eq!(info["config"]["params"]["shard_number"], 2);
    assert_eq!(info["config"]["params"]["vectors"]["size"], 8);

    // it is a normal collection: writes, then a restart without flags keeps everything
    node.ok(node.post(
        "/collections/library/points/payload?wait=true",
        &json!({"payload": {"local": true}, "points": [1]}),
    ));
    node.restart_with_args(&[]);
    let changed = node.points("library");
    assert_eq!(changed.len(), want.len());
    assert_eq!(changed["1"]["payload"]["local"], true);

    // the collection exists now: the same flag without force stops start-up
    let (code, output) = node.run_expecting_exit(&["--snapshot", &arg], EXIT_TIMEOUT);
    assert_one_line_conflict(code, &output, "library");
    node.restart_with_args(&[]);
    assert_same(
        &node.points("library"),
        &changed,
        "untouched after the refused start",
    );

    // each spelling of force replaces it with the snapshot's data
    for force in ["--force-snapshot", "--force_snapshot", "-f"] {
        node.ok(node.post(
            "/collections/library/points/delete?wait=true",
            &json!({"points": [2, 3, 4]}),
        ));
        node.restart_with_args(&[force, "--snapshot", &arg]);
        assert_same(&node.points("library"), &want, force);
    }
    node.restart_with_args(&[]);
    assert_same(&node.points("library"), &want, "after a plain restart");
}

#[test]
fn snapshot_flag_replaces_only_with_a_compatible_start() {
    // force with a snapshot of another vector size: the collection takes the snapshot's config
    let source = TestNode::start();
    create(&source, "small", 4, 1);
    fill(&source, "small", 50, 4, 7);
    let want = source.points("small");
    let scratch = tempfile::tempdir().unwrap();
    let snap = snapshot_to(&source, "small", &scratch.path().join("small.snapshot"));

    let mut node = TestNode::start();
    create(&node, "target", 16, 3);
    fill(&node, "target", 30, 16, 9);
    node.restart_with_args(&["-f", "--snapshot", &format!("{}:target", snap.display())]);
    assert_same(
        &node.points("target"),
        &want,
        "forced over a different config",
    );
    let info = node.ok(node.get("/collections/target"));
    assert_eq!(info["config"]["params"]["vectors"]["size"], 4);
    assert_eq!(info["config"]["params"]["shard_number"], 1);
}

#[test]
fn bad_startup_snapshots_exit_with_one_line() {
    let scratch = tempfile::tempdir().unwrap();
    let garbage = scratch.path().join("garbage.snapshot");
    std::fs::write(&garbage, vec![7u8; 5000]).unwrap();
    let missing = scratch.path().join("missing.snapshot");
    let mut node = TestNode::unstarted(&[]);
    for (args, needle) in [
        (
            vec!["--snapshot".to_string(), format!("{}:c", garbage.display())],
            "snapshot",
        ),
        (
            vec!["--snapshot".to_string(), format!("{}:c", missing.display())],
            "missing.snapshot",
        ),
        (
            vec!["--snapshot".to_string(), "no-colon-here".to_string()],
            "PATH:NAME",
        ),
        (
            vec![
                "--storage-snapshot".to_string(),
                garbage.display().to_string(),
            ],
            "snapshot",
        ),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, output) = node.run_expecting_exit(&args, EXIT_TIMEOUT);
        assert!(
            matches!(code, Some(c) if c != 0),
            "{args:?}: exit {code:?}\n{output}"
        );
        assert!(
            output.contains(needle),
            "{args:?}: no `{needle}` in\n{output}"
        );
        assert!(!output.contains("panicked"), "{args:?}: panic\n{output}");
    }
    // none of that left a collection behind
    node.restart_with_args(&[]);
    assert!(collections(&node).is_empty());
    let leftovers: Vec<_> = std::fs::read_dir(node.storage_path().join("collections"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn storage_snapshot_restores_collections_and_aliases() {
    let source = TestNode::start();
    create(&source, "alpha", 8, 1);
    fill(&source, "alpha", 300, 8, 1);
    create(&source, "beta", 3, 2);
    fill(&source, "beta", 120, 3, 2);
    source.ok(source.post(
        "/collections/aliases",
        &json!({"actions": [
            {"create_alias": {"collection_name": "alpha", "alias_name": "a1"}},
            {"create_alias": {"collection_name": "beta", "alias_name": "b1"}},
        ]}),
    ));
    let want_alpha = source.points("alpha");
    let want_beta = source.points("beta");
    let desc = source.ok(source.post("/snapshots", &json!({})));
    let scratch = tempfile::tempdir().unwrap();
    let full = scratch.path().join("full.snapshot");
    std::fs::copy(
        source
            .dir()
            .join("snapshots")
            .join(desc["name"].as_str().unwrap()),
        &full,
    )
    .unwrap();
    let full_arg = full.display().to_string();

    let mut node = TestNode::start_with_args(&["--storage-snapshot", &full_arg]);
    assert_eq!(
        collections(&node),
        vec!["alpha".to_string(), "beta".to_string()]
    );
    assert_same(&node.points("alpha"), &want_alpha, "alpha");
    assert_same(&node.points("beta"), &want_beta, "beta");
    let expected_aliases: BTreeMap<String, String> = [
        ("a1".to_string(), "alpha".to_string()),
        ("b1".to_string(), "beta".to_string()),
    ]
    .into();
    assert_eq!(aliases(&node), expected_aliases);
    assert_eq!(node.count("a1"), 300, "the alias resolves");

    // restart without flags: all of it persisted
    node.restart_with_args(&[]);
    assert_eq!(aliases(&node), expected_aliases);
    assert_same(&node.points("beta"), &want_beta, "beta after restart");

    // again without force: refused, nothing changed
    node.ok(node.post(
        "/collections/alpha/points/delete?wait=true",
        &json!({"points": [1, 2]}),
    ));
    let changed = node.points("alpha");
    let (code, output) = node.run_expecting_exit(&["--storage-snapshot", &full_arg], EXIT_TIMEOUT);
    assert_one_line_conflict(code, &output, "alpha");
    node.restart_with_args(&[]);
    assert_same(
        &node.points("alpha"),
        &changed,
        "untouched after the refused start",
    );

    // an existing alias alone also conflicts
    node.ok(node.delete("/collections/alpha"));
    node.ok(node.delete("/collections/beta"));
    create(&node, "other", 2, 1);
    node.ok(node.post(
        "/collections/aliases",
        &json!({"actions": [{"create_alias": {"collection_name": "other", "alias_name": "a1"}}]}),
    ));
    let (code, output) = node.run_expecting_exit(&["--storage-snapshot", &full_arg], EXIT_TIMEOUT);
    assert_one_line_conflict(code, &output, "a1");

    // with force: collections and aliases replaced
    node.restart_with_args(&["--force-snapshot", "--storage-snapshot", &full_arg]);
    assert_same(&node.points("alpha"), &want_alpha, "alpha forced");
    assert_same(&node.points("beta"), &want_beta, "beta forced");
    assert_eq!(aliases(&node), expected_aliases);
    assert!(collections(&node).contains(&"other".to_string()));

    // --storage-snapshot wins over --snapshot
    let single = snapshot_to(&node, "beta", &scratch.path().join("beta.snapshot"));
    let mut fresh = TestNode::unstarted(&[]);
    fresh.restart_with_args(&[
        "--snapshot",
        &format!("{}:gamma", single.display()),
        "--storage-snapshot",
        &full_arg,
    ]);
    assert_eq!(
        collections(&fresh),
        vec!["alpha".to_string(), "beta".to_string()]
    );
}
