//! Acknowledged writes survive `kill -9`: every batch answered with `wait=true` is
//! back after a restart, payloads and vectors included.

mod support;

use serde_json::{json, Value};
use support::{vectors, TestNode};

#[test]
fn acknowledged_writes_survive_kill9() {
    let mut node = TestNode::start();
    node.create_collection(
        "durable",
        json!({"vectors": {"size": 16, "distance": "Dot"}, "shard_number": 2}),
    );
    let vs = vectors(2_000, 16, 3);
    for (batch_no, chunk) in vs.chunks(250).enumerate() {
        let points: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let id = batch_no * 250 + i;
                json!({"id": id, "vector": v, "payload": {"batch": batch_no, "id": id}})
            })
            .collect();
        node.ok(node.put(
            "/collections/durable/points?wait=true",
            &json!({"points": points}),
        ));
    }
    node.ok(node.post(
        "/collections/durable/points/delete?wait=true",
        &json!({"points": [0, 1, 2]}),
    ));
    node.ok(node.post(
        "/collections/durable/points/payload?wait=true",
        &json!({"payload": {"late": true}, "points": [10]}),
    ));

    node.restart_after_kill9();

    assert_eq!(node.count("durable"), 1_997);
    let got = node.ok(node.post(
        "/collections/durable/points",
        &json!({"ids": [0, 10, 1999], "with_vector": true}),
    ));
    let got = got.as_array().unwrap();
    assert_eq!(got.len(), 2, "deleted point 0 came back");
    assert_eq!(
        got[0]["payload"],
        json!({"batch": 0, "id": 10, "late": true})
    );
    let stored: Vec<f32> = serde_json::from_value(got[1]["vector"].clone()).unwrap();
    assert_eq!(stored, vs[1999]);

    // A second crash right after more writes: still nothing lost.
    node.ok(node.put(
        "/collections/durable/points?wait=true",
        &json!({"points": [{"id": 5000, "vector": vs[0]}]}),
    ));
    node.restart_after_kill9();
    assert_eq!(node.count("durable"), 1_998);
}
