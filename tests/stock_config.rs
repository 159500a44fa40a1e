//! Qdrant 1.19's own stock configuration files (`tests/fixtures/qdrant-1.19-config`, copied
//! byte for byte) start the shoal binary unchanged: as `config/` in the working directory
//! under each `RUN_MODE`, and through `--config-path`. The keys shoal does not read are
//! named in warnings, a misspelt key gets the nearest valid name, and a bad `RUN_MODE`
//! stops start-up.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use support::TestNode;

fn stock_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qdrant-1.19-config")
}

/// Copies Qdrant's stock files into `<node dir>/config/` and checks they are unchanged.
fn install_stock_files(node: &TestNode) {
    let config = node.dir().join("config");
    std::fs::create_dir_all(&config).unwrap();
    for name in ["config.yaml", "development.yaml", "production.yaml"] {
        std::fs::copy(stock_dir().join(name), config.join(name)).unwrap();
        assert_eq!(
            std::fs::read(config.join(name)).unwrap(),
            std::fs::read(stock_dir().join(name)).unwrap()
        );
    }
}

/// The node answers and works: a collection takes a point and finds it.
fn assert_serves(node: &TestNode) {
    node.create_collection("stock", json!({"vectors": {"size": 2, "distance": "Dot"}}));
    node.ok(node.put(
        "/collections/stock/points?wait=true",
        &json!({"points": [{"id": 1, "vector": [1.0, 0.0]}]}),
    ));
    assert_eq!(node.count("stock"), 1);
    node.ok(node.delete("/collections/stock"));
}

#[test]
fn stock_files_start_shoal_in_each_run_mode() {
    let mut node = TestNode::unstarted(&[]);
    install_stock_files(&node);
    for mode in ["development", "production"] {
        node.set_env("RUN_MODE", mode);
        node.restart_with_args(&[]);
        assert_serves(&node);
        let log = node.log();
        assert!(
            log.contains("`storage.performance` is a Qdrant setting that shoal accepts"),
            "{mode}: {log}"
        );
        assert!(
            log.contains("`telemetry_disabled` is a Qdrant setting"),
            "{log}"
        );
    }
    let log = node.log();
    assert!(
        log.contains("unknown config key `service.rest_port` ignored"),
        "production.yaml's rest_port is named: {log}"
    );
}

#[test]
fn stock_config_through_config_path() {
    let mut node = TestNode::unstarted(&[]);
    let path = stock_dir().join("config.yaml");
    node.restart_with_args(&["--config-path", path.to_str().unwrap()]);
    assert_serves(&node);
}

#[test]
fn misspelt_keys_are_named_and_a_bad_run_mode_stops_start_up() {
    let mut node = TestNode::unstarted(&[]);
    let config = node.dir().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.yaml"),
        "storage:\n  optimisers:\n    deleted_threshold: 0.3\n  snapshot_path: ./x\n",
    )
    .unwrap();
    node.restart_with_args(&[]);
    let log = node.log();
    assert!(
        log.contains("unknown config key `storage.snapshot_path` ignored; did you mean `storage.snapshots_path`?"),
        "{log}"
    );
    assert!(
        log.contains(
            "unknown config key `storage.optimisers` ignored; did you mean `storage.optimizers"
        ),
        "{log}"
    );
    node.set_env("RUN_MODE", "../../etc/passwd");
    let (code, log) = node.run_expecting_exit(&[], Duration::from_secs(30));
    assert_ne!(code, Some(0), "{log}");
    assert!(log.contains("RUN_MODE"), "{log}");
}
