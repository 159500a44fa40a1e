//! The REST API of one real node on loopback: shapes, status codes, and bad input that
//! must leave stored data untouched.

mod support;

use serde_json::{json, Value};
use support::{assert_error, vectors, TestNode};

fn fill(node: &TestNode, name: &str, count: usize, dim: usize) -> Vec<Vec<f32>> {
    let vs = vectors(count, dim, 7);
    let points: Vec<Value> = vs
        .iter()
        .enumerate()
        .map(|(i, v)| json!({"id": i, "vector": v, "payload": {"i": i, "even": i % 2 == 0, "tag": format!("t{}", i % 3)}}))
        .collect();
    let result = node.ok(node.put(
        &format!("/collections/{name}/points?wait=true"),
        &json!({"points": points}),
    ));
    assert_eq!(result["status"], "completed");
    vs
}

#[test]
fn service_routes_answer() {
    let node = TestNode::start();
    let (status, body) = node.get("/");
    assert_eq!(status, 200);
    assert!(body["title"].as_str().unwrap().contains("shoal"));
    assert!(body["version"].is_string());
    for probe in ["/healthz", "/livez", "/readyz"] {
        assert_eq!(node.get(probe).0, 200);
    }
    assert_error(node.get("/no/such/route"), 404, "Not found");
}

#[test]
fn collection_lifecycle_and_aliases() {
    let node = TestNode::start();
    node.create_collection(
        "books",
        json!({"vectors": {"size": 4, "distance": "Cosine"}, "shard_number": 3}),
    );
    assert_error(
        node.put(
            "/collections/books",
            &json!({"vectors": {"size": 4, "distance": "Dot"}}),
        ),
        409,
        "already exists",
    );

    let info = node.ok(node.get("/collections/books"));
    assert_eq!(info["status"], "green");
    assert_eq!(info["points_count"], 0);
    assert_eq!(info["config"]["params"]["shard_number"], 3);
    assert_eq!(
        info["config"]["params"]["vectors"],
        json!({"size": 4, "distance": "Cosine"})
    );

    let list = node.ok(node.get("/collections"));
    assert_eq!(list["collections"], json!([{"name": "books"}]));
    assert_eq!(
        node.ok(node.get("/collections/books/exists")),
        json!({"exists": true})
    );
    assert_eq!(
        node.ok(node.get("/collections/nope/exists")),
        json!({"exists": false})
    );

    let actions = json!({"actions": [{"create_alias": {"collection_name": "books", "alias_name": "library"}}]});
    assert_eq!(
        node.ok(node.post("/collections/aliases", &actions)),
        json!(true)
    );
    assert_eq!(
        node.ok(node.get("/aliases"))["aliases"],
        json!([{"alias_name": "library", "collection_name": "books"}])
    );
    // Every collection route resolves aliases.
    assert_eq!(
        node.ok(node.get("/collections/library"))["config"]["params"]["shard_number"],
        3
    );
    assert_eq!(
        node.ok(node.get("/collections/library/aliases"))["aliases"][0]["alias_name"],
        "library"
    );

    let patch = json!({"optimizers_config": {"indexing_threshold": 0}, "params": {"write_consistency_factor": 1}});
    assert_eq!(
        node.ok(node.patch("/collections/library", &patch)),
        json!(true)
    );
    assert_eq!(
        node.ok(node.get("/collections/books"))["config"]["optimizer_config"]["indexing_threshold"],
        0
    );

    assert_eq!(node.ok(node.delete("/collections/books")), json!(true));
    assert_eq!(node.ok(node.delete("/collections/books")), json!(false));
    assert_error(
        node.get("/collections/books"),
        404,
        "Collection `books` doesn't exist!",
    );
    assert_eq!(node.ok(node.get("/aliases"))["aliases"], json!([]));
}

#[test]
fn metadata_survives_restart() {
    let mut node = TestNode::start();
    node.create_collection("kept", json!({"vectors": {"size": 2, "distance": "Dot"}}));
    node.ok(node.post(
        "/collections/aliases",
        &json!({"actions": [{"create_alias": {"collection_name": "kept", "alias_name": "k"}}]}),
    ));
    node.restart_after_kill9();
    assert_eq!(
        node.ok(node.get("/collections/k"))["config"]["params"]["vectors"]["size"],
        2
    );
}

#[test]
fn bad_input_is_rejected_and_changes_nothing() {
    let node = TestNode::start();
    node.create_collection("c", json!({"vectors": {"size": 3, "distance": "Euclid"}}));
    fill(&node, "c", 10, 3);
    let before = node.ok(node.post(
        "/collections/c/points/scroll",
        &json!({"limit": 100, "with_vector": true}),
    ));

    assert_error(
        node.put("/collections/missing/points", &json!({"points": []})),
        404,
        "doesn't exist",
    );
    assert_error(
        node.put(
            "/collections/c/points",
            &json!({"points": [{"id": 1, "vector": [1.0, 2.0]}]}),
        ),
        400,
        "expected dim: 3, got 2",
    );
    assert_error(
        node.put(
            "/collections/c/points",
            &json!({"points": [{"id": 50, "vector": [1.0, 2.0, 3.0]}, {"id": 2, "vector": [1.0]}]}),
        ),
        400,
        "Vector dimension error",
    );
    assert_error(
        node.raw(
            reqwest::Method::PUT,
            "/collections/c/points",
            "{\"points\": [ {",
        ),
        400,
        "Format error in JSON body",
    );
    assert_error(
        node.put(
            "/collections/c/points",
            &json!({"points": [{"id": -1, "vector": [1, 2, 3]}]}),
        ),
        400,
        "negative",
    );
    assert_error(
        node.put(
            "/collections/c/points",
            &json!({"points": [{"id": "abc", "vector": [1, 2, 3]}]}),
        ),
        400,
        "UUID",
    );
    assert_error(
        node.put(
            "/collections/c/points",
            &json!({"points": [{"id": 1.5, "vector": [1, 2, 3]}]}),
        ),
        400,
        "1.5",
    );
    assert_error(
        node.post("/collections/c/points/scroll", &json!({"limit": "ten"})),
        400,
        "limit",
    );
    assert_error(
        node.put(
            "/collections/bad",
            &json!({"vectors": {"size": 0, "distance": "Dot"}}),
        ),
        400,
        "size",
    );
    assert_error(
        node.put(
            "/collections/bad",
            &json!({"vectors": {"size": 3, "distance": "Cosinus"}}),
        ),
        400,
        "Format error",
    );
    assert_error(
        node.get("/collections/c/points/not-an-id"),
        400,
        "not-an-id",
    );
    assert_error(
        node.get("/collections/c/points/999"),
        404,
        "No point with id 999",
    );

    let after = node.ok(node.post(
        "/collections/c/points/scroll",
        &json!({"limit": 100, "with_vector": true}),
    ));
    assert_eq!(before, after, "a rejected request changed stored data");
}

#[test]
fn points_payloads_scroll_and_count() {
    let node = TestNode::start();
    node.create_collection(
        "p",
        json!({"vectors": {"size": 2, "distance": "Dot"}, "shard_number": 2}),
    );
    fill(&node, "p", 30, 2);
    assert_eq!(node.count("p"), 30);

    let filter = json!({"filter": {"must": [{"key": "even", "match": {"value": true}}]}});
    assert_eq!(
        node.ok(node.post("/collections/p/points/count", &filter))["count"],
        15
    );

    // Scroll pages cover every point exactly once, in id order, across shards.
    let mut seen = Vec::new();
    let mut offset = Value::Null;
    for _ in 0..10 {
        let page = node.ok(node.post(
            "/collections/p/points/scroll",
            &json!({"limit": 7, "offset": offset}),
        ));
        seen.extend(
            page["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_u64().unwrap()),
        );
        offset = page["next_page_offset"].clone();
        if offset.is_null() {
            break;
        }
    }
    assert_eq!(seen, (0..30).collect::<Vec<u64>>());

    node.ok(node.post(
        "/collections/p/points/payload?wait=true",
        &json!({"payload": {"x": 1}, "points": [1, 2]}),
    ));
    node.ok(node.post(
        "/collections/p/points/payload/delete?wait=true",
        &json!({"keys": ["tag"], "points": [2]}),
    ));
    let got = node.ok(node.post("/collections/p/points", &json!({"ids": [1, 2, 404]})));
    assert_eq!(got.as_array().unwrap().len(), 2);
    assert_eq!(
        got[0]["payload"],
        json!({"i": 1, "even": false, "tag": "t1", "x": 1})
    );
    assert_eq!(got[1]["payload"], json!({"i": 2, "even": true, "x": 1}));

    node.ok(node.put(
        "/collections/p/points/payload?wait=true",
        &json!({"payload": {"only": true}, "points": [3]}),
    ));
    node.ok(node.post(
        "/collections/p/points/payload/clear?wait=true",
        &json!({"points": [4]}),
    ));
    let got = node.ok(node.post("/collections/p/points", &json!({"ids": [3, 4]})));
    assert_eq!(got[0]["payload"], json!({"only": true}));
    assert_eq!(got[1]["payload"], json!({}));

    node.ok(node.post(
        "/collections/p/points/delete?wait=true",
        &json!({"filter": {"must": [{"key": "even", "match": {"value": true}}]}}),
    ));
    // Point 4 lost its payload (and so its `even`) above, so it stays.
    assert_eq!(node.count("p"), 16);
    node.ok(node.post(
        "/collections/p/points/delete?wait=true",
        &json!({"points": [1, 3]}),
    ));
    assert_eq!(node.count("p"), 14);
}

#[test]
fn exact_search_finds_true_neighbours() {
    let node = TestNode::start();
    node.create_collection("s", json!({"vectors": {"size": 8, "distance": "Euclid"}}));
    let vs = fill(&node, "s", 200, 8);
    let query = vectors(1, 8, 99).remove(0);
    let mut expected: Vec<(usize, f32)> = vs
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                i,
                v.iter()
                    .zip(&query)
                    .map(|(a, b)| (a - b) * (a - b))
                    .sum::<f32>()
                    .sqrt(),
            )
        })
        .collect();
    expected.sort_by(|a, b| a.1.total_cmp(&b.1));

    let hits = node.ok(node.post(
        "/collections/s/points/search",
        &json!({"vector": query, "limit": 5, "params": {"exact": true}}),
    ));
    let ids: Vec<u64> = hits
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ids,
        expected[..5].iter().map(|e| e.0 as u64).collect::<Vec<_>>()
    );
    assert!((hits[0]["score"].as_f64().unwrap() as f32 - expected[0].1).abs() < 1e-3);

    let query_hits = node.ok(node.post(
        "/collections/s/points/query",
        &json!({"query": query, "limit": 5, "with_payload": true}),
    ));
    assert_eq!(query_hits["points"][0]["id"], hits[0]["id"]);
    assert!(query_hits["points"][0]["payload"]["i"].is_number());

    // Query by point id leaves the point itself out.
    let by_id = node.ok(node.post(
        "/collections/s/points/query",
        &json!({"query": 5, "limit": 3}),
    ));
    assert!(by_id["points"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["id"] != 5));
    assert_eq!(by_id["points"].as_array().unwrap().len(), 3);
}
