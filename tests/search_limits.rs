//! Bounded search work (issue 10, items 6 and 7): limits and offsets that overflow or
//! exceed `service.max_query_limit`, batches over `service.search_max_batchsize` or
//! `service.max_batch_results`, and query vectors or scores that are not finite numbers
//! are refused with 400 (INVALID_ARGUMENT on gRPC), and the node keeps serving.

mod support;

use qdrant_client::qdrant::{
    QueryPointsBuilder, ScrollPointsBuilder, SearchBatchPointsBuilder, SearchPointsBuilder,
};
use qdrant_client::{Qdrant, QdrantError};
use serde_json::{json, Value};
use support::{assert_error, vectors, TestNode};

/// A `Dot` collection `name` of `count` 4-d points with ids `0..count`.
fn fill(node: &TestNode, name: &str, count: usize) {
    node.create_collection(name, json!({"vectors": {"size": 4, "distance": "Dot"}}));
    let points: Vec<Value> = vectors(count, 4, 3)
        .into_iter()
        .enumerate()
        .map(|(i, v)| json!({"id": i, "vector": v}))
        .collect();
    node.ok(node.put(
        &format!("/collections/{name}/points?wait=true"),
        &json!({"points": points}),
    ));
}

fn search(node: &TestNode, body: Value) -> (u16, Value) {
    node.post("/collections/c/points/search", &body)
}

fn batch(node: &TestNode, searches: Vec<Value>) -> (u16, Value) {
    node.post(
        "/collections/c/points/search/batch",
        &json!({"searches": searches}),
    )
}

/// The node still answers an ordinary search with the expected number of hits.
fn still_serves(node: &TestNode, limit: usize) {
    let hits = node.ok(search(
        node,
        json!({"vector": [0.1, 0.2, 0.3, 0.4], "limit": limit}),
    ));
    assert_eq!(hits.as_array().unwrap().len(), limit);
}

#[test]
fn limits_and_offsets_that_overflow_or_exceed_the_cap_are_400() {
    let node = TestNode::start();
    fill(&node, "c", 200);
    let q = [0.1, 0.2, 0.3, 0.4];

    // Six searches of 10^9 results in one small request (each over the cap).
    let huge = json!({"vector": q, "limit": 1_000_000_000u64});
    assert_error(batch(&node, vec![huge; 6]), 400, "Limit exceeded");
    // offset 2^63 was a "capacity overflow" crash of the search task (503).
    assert_error(
        search(
            &node,
            json!({"vector": q, "limit": 10, "offset": 1u64 << 63}),
        ),
        400,
        "offset",
    );
    // limit u64::MAX with offset 1 wrapped to 0 and answered [].
    assert_error(
        search(&node, json!({"vector": q, "limit": u64::MAX, "offset": 1})),
        400,
        "too large",
    );
    assert_error(
        search(&node, json!({"vector": q, "limit": u64::MAX})),
        400,
        "Limit exceeded",
    );
    // The same through /points/query and its batch.
    assert_error(
        node.post(
            "/collections/c/points/query",
            &json!({"query": q, "limit": 10, "offset": 1u64 << 63}),
        ),
        400,
        "offset",
    );
    assert_error(
        node.post(
            "/collections/c/points/query/batch",
            &json!({"searches": [{"query": q, "limit": 100_001}]}),
        ),
        400,
        "Limit exceeded",
    );
    // A scroll page is bounded by the same cap.
    assert_error(
        node.post("/collections/c/points/scroll", &json!({"limit": 100_001})),
        400,
        "Limit exceeded",
    );

    // At the cap a search is served, and sized by the 200 points, not by the limit.
    let hits = node.ok(search(&node, json!({"vector": q, "limit": 100_000})));
    assert_eq!(hits.as_array().unwrap().len(), 200);
    let hits = node.ok(search(
        &node,
        json!({"vector": q, "limit": 50_000, "offset": 50_000, "params": {"hnsw_ef": 1u64 << 62}}),
    ));
    assert_eq!(hits.as_array().unwrap().len(), 0);
    let page = node.ok(node.post("/collections/c/points/scroll", &json!({"limit": 100_000})));
    assert_eq!(page["points"].as_array().unwrap().len(), 200);
    still_serves(&node, 7);
}

#[test]
fn batches_are_bounded_in_count_and_in_total_results() {
    let node = TestNode::start_with_env(&[
        ("QDRANT__SERVICE__MAX_QUERY_LIMIT", "1000"),
        ("QDRANT__SERVICE__SEARCH_MAX_BATCHSIZE", "4"),
        ("QDRANT__SERVICE__MAX_BATCH_RESULTS", "1500"),
    ]);
    fill(&node, "c", 600);
    let q = [0.4, 0.3, 0.2, 0.1];
    let s = |limit: usize, offset: usize| json!({"vector": q, "limit": limit, "offset": offset});

    // Count: four searches pass, five do not.
    let answer = node.ok(batch(&node, vec![s(1, 0); 4]));
    assert_eq!(answer.as_array().unwrap().len(), 4);
    assert_error(batch(&node, vec![s(1, 0); 5]), 400, "5 > 4");
    assert_error(
        node.post(
            "/collections/c/points/query/batch",
            &json!({"searches": vec![json!({"query": q, "limit": 1}); 5]}),
        ),
        400,
        "5 > 4",
    );

    // Per search: limit + offset against max_query_limit.
    node.ok(search(&node, s(600, 400)));
    assert_error(search(&node, s(600, 401)), 400, "1001 > 1000");

    // Total: each window counts at most the 600 points the collection holds.
    node.ok(batch(&node, vec![s(1000, 0), s(500, 0)]));
    assert_error(
        batch(&node, vec![s(1000, 0), s(1000, 0), s(301, 0)]),
        400,
        "1501 > 1500",
    );
    assert_error(
        batch(&node, vec![s(300, 300), s(600, 0), s(1, 300)]),
        400,
        "1501 > 1500",
    );
    still_serves(&node, 3);
}

#[test]
fn query_vectors_and_scores_that_are_not_finite_are_400() {
    let node = TestNode::start();
    fill(&node, "c", 20);
    // 1e300 does not fit an f32 (it was read as infinity and scored `null`).
    assert_error(
        search(&node, json!({"vector": [1e300, 0.0, 0.0, 0.0], "limit": 3})),
        400,
        "finite",
    );
    assert_error(
        node.post(
            "/collections/c/points/query",
            &json!({"query": [0.0, -1e300, 0.0, 0.0], "limit": 3}),
        ),
        400,
        "finite",
    );
    // Finite values whose squares overflow.
    assert_error(
        search(&node, json!({"vector": [1e20, 1.0, 0.0, 0.0], "limit": 3})),
        400,
        "overflow",
    );
    // A stored vector whose score with a sane query overflows: refused, never `null`.
    node.ok(node.put(
        "/collections/c/points?wait=true",
        &json!({"points": [{"id": 1000, "vector": [3e19, 0.0, 0.0, 0.0]}]}),
    ));
    assert_error(
        search(
            &node,
            json!({"vector": [1.3e19, 0.0, 0.0, 0.0], "limit": 3}),
        ),
        400,
        "overflow",
    );
    // Scores in range are served, including with that point present.
    let hits = node.ok(search(
        &node,
        json!({"vector": [1.0, 0.0, 0.0, 0.0], "limit": 3}),
    ));
    assert_eq!(hits[0]["id"], 1000);
    assert!(hits[0]["score"].is_number(), "{hits}");
    still_serves(&node, 3);
}

fn code_of(err: QdrantError) -> tonic::Code {
    match err {
        QdrantError::ResponseError { status } => status.code(),
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

#[test]
fn grpc_search_query_and_scroll_use_the_same_limits() {
    let node = TestNode::start();
    fill(&node, "c", 50);
    let client = Qdrant::from_url(&format!("http://127.0.0.1:{}", node.grpc_port))
        .skip_compatibility_check()
        .build()
        .expect("client");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let q = vec![0.1, 0.2, 0.3, 0.4];
        let huge = SearchPointsBuilder::new("c", q.clone(), 1_000_000_000).build();
        let err = client
            .search_batch_points(SearchBatchPointsBuilder::new("c", vec![huge; 6]))
            .await
            .unwrap_err();
        assert_eq!(code_of(err), tonic::Code::InvalidArgument);
        let err = client
            .search_points(SearchPointsBuilder::new("c", q.clone(), 10).offset(1u64 << 63))
            .await
            .unwrap_err();
        assert_eq!(code_of(err), tonic::Code::InvalidArgument);
        let err = client
            .search_points(SearchPointsBuilder::new("c", q.clone(), u64::MAX).offset(1))
            .await
            .unwrap_err();
        assert_eq!(code_of(err), tonic::Code::InvalidArgument);
        let err = client
            .query(
                QueryPointsBuilder::new("c")
                    .query(vec![f32::INFINITY, 0.0, 0.0, 0.0])
                    .limit(3),
            )
            .await
            .unwrap_err();
        assert_eq!(code_of(err), tonic::Code::InvalidArgument);
        let err = client
            .scroll(ScrollPointsBuilder::new("c").limit(100_001))
            .await
            .unwrap_err();
        assert_eq!(code_of(err), tonic::Code::InvalidArgument);
        let hits = client
            .search_points(SearchPointsBuilder::new("c", q, 100_000))
            .await
            .unwrap()
            .result;
        assert_eq!(hits.len(), 50);
    });
}
