//! Tests of `LocalShard` as the collection layer uses it: ops, reads, search, recovery,
//! sealing, checkpoints, freezing and the indexing plumbing.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::*;
use crate::collection::config::Distance;
use crate::collection::point::{Payload, PointRecord};

pub(crate) fn config(
    dim: usize,
    distance: Distance,
    segment_max_kb: usize,
    indexing_threshold_kb: usize,
) -> ShardConfig {
    let params = VectorParams {
        size: dim,
        distance,
        hnsw_config: None,
        on_disk: None,
    };
    ShardConfig {
        vectors: BTreeMap::from([(String::new(), params)]),
        hnsw: HnswConfig::default(),
        indexing_threshold_kb,
        segment_max_kb,
        merge_max_kb: 0,
    }
}

fn payload(v: Value) -> Payload {
    serde_json::from_value(v).unwrap()
}

fn point(id: u64, v: Vec<f32>, p: Value) -> PointRecord {
    PointRecord {
        id: PointId::Num(id),
        vectors: NamedVectors::from([(String::new(), v)]),
        payload: payload(p),
    }
}

fn filter(v: Value) -> Filter {
    serde_json::from_value(v).unwrap()
}

fn ids(n: std::ops::Range<u64>) -> Vec<PointId> {
    n.map(PointId::Num).collect()
}

fn all(shard: &LocalShard) -> Vec<Record> {
    shard
        .scroll(
            None,
            None,
            usize::MAX,
            &WithPayload::Enable(true),
            &WithVector::Enable(true),
        )
        .0
}

fn random_points(n: u64, dim: usize, seed: u64) -> Vec<PointRecord> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let v = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            point(i, v, json!({"i": i, "even": i % 2 == 0}))
        })
        .collect()
}

fn upsert_in_batches(shard: &LocalShard, points: Vec<PointRecord>, batch: usize) {
    for chunk in points.chunks(batch) {
        shard.apply(ShardOp::Upsert(chunk.to_vec()), false).unwrap();
    }
}

fn get_payload(shard: &LocalShard, id: u64) -> Value {
    let r = shard.retrieve(
        &[PointId::Num(id)],
        &WithPayload::Enable(true),
        &WithVector::Enable(false),
    );
    Value::Object(r[0].payload.clone().unwrap())
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("segments"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn upsert_retrieve_and_replace() {
    let dir = tempfile::tempdir().unwrap();
    let shard = LocalShard::open(dir.path(), config(2, Distance::Cosine, 0, 0)).unwrap();
    let s1 = shard
        .apply(
            ShardOp::Upsert(vec![point(1, vec![3.0, 4.0], json!({"a": 1}))]),
            true,
        )
        .unwrap();
    let s2 = shard
        .apply(
            ShardOp::Upsert(vec![point(2, vec![1.0, 0.0], json!({}))]),
            false,
        )
        .unwrap();
    assert!(s2 > s1);
    let got = shard.retrieve(
        &ids(1..4),
        &WithPayload::Enable(true),
        &WithVector::Enable(true),
    );
    assert_eq!(got.len(), 2, "missing id 3 is skipped");
    assert_eq!(
        got[0].vector,
        Some(VectorOutput::Single(vec![0.6, 0.8])),
        "cosine vectors are normalised"
    );
    assert_eq!(got[0].payload, Some(payload(json!({"a": 1}))));
    let order = shard.retrieve(
        &[PointId::Num(2), PointId::Num(1)],
        &WithPayload::Enable(false),
        &WithVector::Enable(false),
    );
    assert_eq!(
        order.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![PointId::Num(2), PointId::Num(1)]
    );
    assert_eq!(order[0].payload, None);

    shard
        .apply(
            ShardOp::Upsert(vec![point(1, vec![0.0, 2.0], json!({"b": 2}))]),
            false,
        )
        .unwrap();
    assert_eq!(shard.count(None), 2);
    assert_eq!(
        shard.get_vectors(PointId::Num(1)).unwrap()[""],
        vec![0.0, 1.0]
    );
    assert_eq!(
        get_payload(&shard, 1),
        json!({"b": 2}),
        "upsert replaces the payload"
    );
}

#[test]
fn payload_ops_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let shard = LocalShard::open(dir.path(), config(2, Distance::Dot, 0, 0)).unwrap();
    let points = (0..6)
        .map(|i| point(i, vec![i as f32, 1.0], json!({"n": i, "keep": {"x": 1}})))
        .collect();
    shard.apply(ShardOp::Upsert(points), false).unwrap();
    let evens = PointSelector::Filter(filter(json!({"must": [{"key": "n", "range": {"lte": 4}}]})));

    let set = ShardOp::SetPayload {
        selector: evens.clone(),
        payload: payload(json!({"tag": "x"})),
        key: None,
    };
    let seq = shard.apply(set, false).unwrap();
    assert_eq!(
        get_payload(&shard, 0),
        json!({"n": 0, "keep": {"x": 1}, "tag": "x"})
    );
    assert_eq!(get_payload(&shard, 5), json!({"n": 5, "keep": {"x": 1}}));

    let nested = ShardOp::SetPayload {
        selector: PointSelector::Ids(vec![PointId::Num(1)]),
        payload: payload(json!({"y": 2})),
        key: Some("keep".into()),
    };
    shard.apply(nested, false).unwrap();
    assert_eq!(
        get_payload(&shard, 1),
        json!({"n": 1, "keep": {"x": 1, "y": 2}, "tag": "x"})
    );

    let del = ShardOp::DeletePayload {
        selector: PointSelector::Ids(ids(0..3)),
        keys: vec!["keep.x".into(), "tag".into()],
    };
    shard.apply(del, false).unwrap();
    assert_eq!(get_payload(&shard, 2), json!({"n": 2, "keep": {}}));

    let over = ShardOp::OverwritePayload {
        selector: PointSelector::Ids(vec![PointId::Num(3)]),
        payload: payload(json!({"o": 1})),
    };
    shard.apply(over, false).unwrap();
    assert_eq!(get_payload(&shard, 3), json!({"o": 1}));

    shard
        .apply(
            ShardOp::ClearPayload {
                selector: PointSelector::Ids(vec![PointId::Num(4)]),
            },
            false,
        )
        .unwrap();
    assert_eq!(get_payload(&shard, 4), json!({}));
    assert_eq!(
        shard.get_vectors(PointId::Num(4)).unwrap()[""],
        vec![4.0, 1.0],
        "payload ops keep vectors"
    );

    shard
        .apply(
            ShardOp::Delete(PointSelector::Ids(vec![PointId::Num(0), PointId::Num(99)])),
            false,
        )
        .unwrap();
    let odd = filter(json!({"must": [{"key": "n", "match": {"any": [1, 5]}}]}));
    shard
        .apply(ShardOp::Delete(PointSelector::Filter(odd)), false)
        .unwrap();
    let left: Vec<PointId> = all(&shard).iter().map(|r| r.id).collect();
    assert_eq!(left, ids(2..5));

    // Versions are the sequence number of the last op that wrote the point.
    let req = search_req(vec![1.0, 0.0], 10);
    let hits = shard.search(&req).unwrap();
    let v2 = hits
        .iter()
        .find(|h| h.id == PointId::Num(2))
        .unwrap()
        .version;
    assert!(v2 > seq);
}

#[test]
fn a_directory_opens_once_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let shard = LocalShard::open(dir.path(), config(2, Distance::Dot, 0, 0)).unwrap();
    let second = LocalShard::open(dir.path(), config(2, Distance::Dot, 0, 0));
    assert!(matches!(second, Err(Error::Unavailable(_))));
    drop(shard);
    LocalShard::open(dir.path(), config(2, Distance::Dot, 0, 0)).unwrap();
}

#[test]
fn invalid_ops_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let shard = LocalShard::open(dir.path(), config(2, Distance::Dot, 0, 0)).unwrap();
    let s1 = shard
        .apply(
            ShardOp::Upsert(vec![point(1, vec![1.0, 1.0], json!({}))]),
            false,
        )
        .unwrap();
    let bad_dim = ShardOp::Upsert(vec![
        point(2, vec![1.0, 1.0], json!({})),
        point(3, vec![1.0], json!({})),
    ]);
    let err = shard.apply(bad_dim, false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Wrong input: Vector dimension error: expected dim: 2, got 1"
    );
    let mut named = point(4, vec![1.0, 1.0], json!({}));
    named.vectors = NamedVectors::from([("img".to_string(), vec![1.0])]);
    let err = shard
        .apply(ShardOp::Upsert(vec![named]), false)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("Not existing vector name error: img"),
        "{err}"
    );
    let bad_key = ShardOp::SetPayload {
        selector: PointSelector::Ids(ids(1..2)),
        payload: Payload::new(),
        key: Some("a[".into()),
    };
    assert!(matches!(
        shard.apply(bad_key, false),
        Err(Error::BadInput(_))
    ));
    assert_eq!(shard.count(None), 1);
    drop(shard);
    let shard = LocalShard::open(dir.path(), config(2, Distance::Dot, 0, 0)).unwrap();
    assert_eq!(shard.count(None), 1, "failed ops were never logged");
    let s2 = shard
        .apply(ShardOp::Delete(PointSelector::Ids(vec![])), false)
        .unwrap();
    assert_eq!(s2, s1 + 1, "failed ops consume no sequence numbers");
}

#[test]
fn crash_reopen_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(4, Distance::Euclid, 0, 0);
    let expected = {
        let shard = LocalShard::open(dir.path(), cfg.clone()).unwrap();
        for p in random_points(50, 4, 1) {
            shard.apply(ShardOp::Upsert(vec![p]), true).unwrap();
        }
        shard
            .apply(ShardOp::Delete(PointSelector::Ids(ids(10..20))), true)
            .unwrap();
        let set = ShardOp::SetPayload {
            selector: PointSelector::Ids(ids(0..5)),
            payload: payload(json!({"s": 1})),
            key: None,
        };
        shard.apply(set, true).unwrap();
        all(&shard)
        // dropped without flush: only the WAL has these ops
    };
    let shard = LocalShard::open(dir.path(), cfg).unwrap();
    assert_eq!(all(&shard), expected);
    assert_eq!(shard.count(None), 40);
}

#[test]
fn reopen_after_seal_and_deletes_in_sealed_segments() {
    let dir = tempfile::tempdir().unwrap();
    // 8-d vectors are 32 bytes: a 1 KB segment seals after 33 points.
    let cfg = config(8, Distance::Dot, 1, 0);
    let shard = LocalShard::open(dir.path(), cfg.clone()).unwrap();
    upsert_in_batches(&shard, random_points(200, 8, 2), 7);
    assert!(shard.info().segments_count >= 4, "{:?}", shard.info());
    shard.flush().unwrap();
    // Deletes and updates that hit sealed segments, then more points.
    shard
        .apply(ShardOp::Delete(PointSelector::Ids(ids(0..10))), false)
        .unwrap();
    let set = ShardOp::SetPayload {
        selector: PointSelector::Ids(ids(20..25)),
        payload: payload(json!({"u": true})),
        key: None,
    };
    shard.apply(set, false).unwrap();
    upsert_in_batches(
        &shard,
        random_points(5, 8, 3)
            .into_iter()
            .map(|mut p| {
                if let PointId::Num(n) = p.id {
                    p.id = PointId::Num(n + 1000)
                }
                p
            })
            .collect(),
        5,
    );
    let before = all(&shard);
    assert_eq!(before.len(), 195);

    // Reopen from the WAL alone (no flush since the deletes) ...
    drop(shard);
    let shard = LocalShard::open(dir.path(), cfg.clone()).unwrap();
    assert_eq!(all(&shard), before);
    // ... and from a checkpoint that recorded the deletions in deletion files.
    shard.flush().unwrap();
    let wal_files = std::fs::read_dir(dir.path().join("wal")).unwrap().count();
    assert_eq!(wal_files, 1, "a checkpoint drops older WAL files");
    assert!(segment_files(dir.path())
        .iter()
        .any(|f| f.ends_with(".deleted")));
    drop(shard);
    let shard = LocalShard::open(dir.path(), cfg).unwrap();
    assert_eq!(all(&shard), before);
    assert_eq!(get_payload(&shard, 22)["u"], json!(true));
}

#[test]
fn checkpoints_write_only_new_rows_and_remove_superseded_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(2, Distance::Dot, 0, 0);
    let shard = LocalShard::open(dir.path(), cfg.clone()).unwrap();
    shard
        .apply(
            ShardOp::Upsert(vec![point(1, vec![1.0, 0.0], json!({}))]),
            false,
        )
        .unwrap();
    shard.flush().unwrap();
    shard.flush().unwrap();
    assert_eq!(
        segment_files(dir.path()),
        vec!["000001.points".to_string()],
        "an idle flush writes nothing"
    );
    shard
        .apply(
            ShardOp::Upsert(vec![point(2, vec![0.0, 1.0], json!({}))]),
            false,
        )
        .unwrap();
    shard
        .apply(
            ShardOp::Upsert(vec![point(1, vec![0.5, 0.5], json!({"v": 2}))]),
            false,
        )
        .unwrap();
    shard.flush().unwrap();
    assert_eq!(
        segment_files(dir.path()),
        vec!["000001.points", "000002.deleted", "000003.points"]
    );
    let before = all(&shard);
    drop(shard);
    let shard = LocalShard::open(dir.path(), cfg).unwrap();
    assert_eq!(all(&shard), before);
}

#[test]
fn freeze_reproduces_the_shard_while_writes_continue() {
    let dir = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    let cfg = config(8, Distance::Cosine, 1, 0);
    let shard = LocalShard::open(dir.path(), cfg.clone()).unwrap();
    upsert_in_batches(&shard, random_points(100, 8, 4), 10);
    shard.flush().unwrap();
    shard
        .apply(ShardOp::Delete(PointSelector::Ids(ids(0..5))), false)
        .unwrap();
    upsert_in_batches(&shard, random_points(120, 8, 5).split_off(100), 10);
    let at_freeze = all(&shard);

    let frozen = shard.freeze().unwrap();
    assert!(frozen.files().contains(&"manifest.json".to_string()));
    // Whether a WAL file is among them depends on when the background checkpoint last
    // ran; either way the copy must reproduce the state at the freeze (checked below).
    // Writes and checkpoints continue and supersede some frozen files.
    shard
        .apply(ShardOp::Delete(PointSelector::Ids(ids(50..60))), false)
        .unwrap();
    upsert_in_batches(&shard, random_points(200, 8, 6).split_off(150), 10);
    shard.flush().unwrap();
    for f in frozen.files() {
        assert!(dir.path().join(&f).exists(), "pinned file {f} was deleted");
    }
    frozen.copy_to(copy.path()).unwrap();
    let pinned = frozen.files();
    drop(frozen);
    let superseded: Vec<&String> = pinned
        .iter()
        .filter(|f| f.as_str() != "manifest.json" && !dir.path().join(f).exists())
        .collect();
    assert!(
        !superseded.is_empty(),
        "files superseded while frozen are deleted when the guard drops"
    );

    let restored = LocalShard::open(copy.path(), cfg).unwrap();
    assert_eq!(all(&restored), at_freeze);
    assert_ne!(all(&shard), at_freeze);
}

fn search_req(vector: Vec<f32>, limit: usize) -> SearchRequest {
    SearchRequest {
        vector_name: String::new(),
        vector,
        filter: None,
        limit,
        score_threshold: None,
        exact: false,
        hnsw_ef: None,
        with_payload: WithPayload::Enable(false),
        with_vector: WithVector::Enable(false),
    }
}

/// Brute force over user scores: (id, score) best first.
fn brute_force(
    points: &[PointRecord],
    distance: Distance,
    query: &[f32],
    k: usize,
) -> Vec<(PointId, f32)> {
    let q = distance.preprocess(query.to_vec());
    let mut all: Vec<(PointId, f32)> = points
        .iter()
        .map(|p| {
            let v = distance.preprocess(p.vectors[""].clone());
            (p.id, distance.similarity(&v, &q))
        })
        .collect();
    all.sort_by(|a, b| b.1.total_cmp(&a.1));
    all.truncate(k);
    all.into_iter()
        .map(|(id, s)| (id, distance.to_user_score(s)))
        .collect()
}

#[test]
fn exact_search_finds_the_true_top_k_for_every_distance() {
    for distance in [
        Distance::Cosine,
        Distance::Dot,
        Distance::Euclid,
        Distance::Manhattan,
    ] {
        let dir = tempfile::tempdir().unwrap();
        // Small segments so results merge across several sealed segments.
        let shard = LocalShard::open(dir.path(), config(16, distance, 2, 0)).unwrap();
        let points = random_points(300, 16, 7);
        upsert_in_batches(&shard, points.clone(), 50);
        assert!(shard.info().segments_count > 2);
        let query: Vec<f32> = (0..16).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut req = search_req(query.clone(), 10);
        req.with_vector = WithVector::Enable(true);
        let got = shard.search(&req).unwrap();
        let want = brute_force(&points, distance, &query, 10);
        assert_eq!(
            got.iter().map(|h| h.id).collect::<Vec<_>>(),
            want.iter().map(|w| w.0).collect::<Vec<_>>(),
            "{distance:?}"
        );
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g.score - w.1).abs() < 1e-4,
                "{distance:?}: {} vs {}",
                g.score,
                w.1
            );
            assert!(g.vector.is_some());
        }

        // score_threshold keeps only results at least as good as the threshold.
        let threshold = want[4].1;
        req.score_threshold = Some(threshold);
        let got = shard.search(&req).unwrap();
        assert!(
            got.len() >= 5 && got.len() < 10,
            "{distance:?}: {}",
            got.len()
        );
        assert!(got
            .iter()
            .all(|h| distance.passes_threshold(h.score, threshold)));

        // A filter restricts the candidates.
        req.score_threshold = None;
        req.filter = Some(filter(
            json!({"must": [{"key": "even", "match": {"value": true}}]}),
        ));
        let got = shard.search(&req).unwrap();
        let evens: Vec<PointRecord> = points
            .iter()
            .filter(|p| p.payload["even"] == json!(true))
            .cloned()
            .collect();
        let want = brute_force(&evens, distance, &query, 10);
        assert_eq!(
            got.iter().map(|h| h.id).collect::<Vec<_>>(),
            want.iter().map(|w| w.0).collect::<Vec<_>>()
        );
    }
}

#[test]
fn search_rejects_wrong_vectors() {
    let dir = tempfile::tempdir().unwrap();
    let shard = LocalShard::open(dir.path(), config(3, Distance::Dot, 0, 0)).unwrap();
    let err = shard.search(&search_req(vec![1.0], 3)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Wrong input: Vector dimension error: expected dim: 3, got 1"
    );
    let mut req = search_req(vec![1.0, 0.0, 0.0], 3);
    req.vector_name = "nope".into();
    assert!(matches!(shard.search(&req), Err(Error::BadInput(_))));
    assert!(shard
        .search(&search_req(vec![1.0, 0.0, 0.0], 3))
        .unwrap()
        .is_empty());
}

#[test]
fn scroll_pages_cover_every_id_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let shard = LocalShard::open(dir.path(), config(2, Distance::Dot, 1, 0)).unwrap();
    let mut points = random_points(103, 2, 8);
    points.push(PointRecord {
        id: PointId::Uuid(uuid::Uuid::from_u128(7)),
        vectors: NamedVectors::from([(String::new(), vec![1.0, 1.0])]),
        payload: Payload::new(),
    });
    points.reverse();
    upsert_in_batches(&shard, points, 9);
    let mut seen = Vec::new();
    let mut offset = None;
    loop {
        let (page, next) = shard.scroll(
            None,
            offset,
            10,
            &WithPayload::Enable(false),
            &WithVector::Enable(false),
        );
        assert!(page.len() <= 10);
        seen.extend(page.iter().map(|r| r.id));
        match next {
            Some(n) => offset = Some(n),
            None => break,
        }
    }
    let mut want = ids(0..103);
    want.push(PointId::Uuid(uuid::Uuid::from_u128(7)));
    assert_eq!(seen, want);

    let even = filter(json!({"must": [{"key": "even", "match": {"value": true}}]}));
    let (page, next) = shard.scroll(
        Some(&even),
        Some(PointId::Num(10)),
        3,
        &WithPayload::Enable(true),
        &WithVector::Enable(false),
    );
    assert_eq!(
        page.iter().map(|r| r.id).collect::<Vec<_>>(),
        ids(10..15).into_iter().step_by(2).collect::<Vec<_>>()
    );
    assert_eq!(next, Some(PointId::Num(16)));
    assert_eq!(shard.count(Some(&even)), 52);
}

#[test]
fn sealed_segments_get_indexes_that_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let builder: Arc<dyn IndexBuilder> = Arc::new(index::testing::FlatBuilder);
    let cfg = config(8, Distance::Dot, 4, 1);
    let points = random_points(400, 8, 9);
    let shard = LocalShard::open_with_builder(dir.path(), cfg.clone(), builder.clone()).unwrap();
    upsert_in_batches(&shard, points.clone(), 40);
    let sealed_rows: usize = {
        let state = shard.inner.state.read();
        state
            .segments
            .iter()
            .filter(|s| s.is_sealed())
            .map(|s| s.data().len())
            .sum()
    };
    assert!(sealed_rows > 0);
    wait_for(|| shard.info().indexed_vectors_count == sealed_rows);
    let query = vec![0.5; 8];
    let got = shard.search(&search_req(query.clone(), 5)).unwrap();
    let want = brute_force(&points, Distance::Dot, &query, 5);
    assert_eq!(
        got.iter().map(|h| h.id).collect::<Vec<_>>(),
        want.iter().map(|w| w.0).collect::<Vec<_>>()
    );
    wait_for(|| {
        segment_files(dir.path())
            .iter()
            .filter(|f| f.ends_with(".hnsw"))
            .count()
            > 0
    });
    shard.flush().unwrap();
    let index_files: Vec<String> = segment_files(dir.path())
        .into_iter()
        .filter(|f| f.ends_with(".hnsw"))
        .collect();
    drop(shard);

    let shard = LocalShard::open_with_builder(dir.path(), cfg, builder).unwrap();
    assert_eq!(
        shard.info().indexed_vectors_count,
        sealed_rows,
        "indexes are loaded, not rebuilt"
    );
    let after: Vec<String> = segment_files(dir.path())
        .into_iter()
        .filter(|f| f.ends_with(".hnsw"))
        .collect();
    assert_eq!(after, index_files);
    // Deleted points are never returned through an index.
    shard
        .apply(ShardOp::Delete(PointSelector::Ids(vec![want[0].0])), false)
        .unwrap();
    let got = shard.search(&search_req(query, 5)).unwrap();
    assert_eq!(
        got.iter().map(|h| h.id).collect::<Vec<_>>(),
        want[1..]
            .iter()
            .map(|w| w.0)
            .chain(got.last().map(|h| h.id))
            .collect::<Vec<_>>()
    );
}

/// Polls a condition the background worker will make true; gives up after a generous
/// bound so a bug fails the test instead of hanging it.
fn wait_for(cond: impl Fn() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("condition not reached");
}

#[test]
fn hnsw_indexes_serve_approximate_search() {
    let dir = tempfile::tempdir().unwrap();
    // 16-d vectors are 64 bytes: segments of ~1000 points, each indexed.
    let cfg = config(16, Distance::Cosine, 64, 16);
    let points = random_points(3000, 16, 10);
    let shard = LocalShard::open(dir.path(), cfg.clone()).unwrap();
    upsert_in_batches(&shard, points.clone(), 100);
    let sealed_rows: usize = {
        let state = shard.inner.state.read();
        state
            .segments
            .iter()
            .filter(|s| s.is_sealed())
            .map(|s| s.data().len())
            .sum()
    };
    wait_for(|| shard.info().indexed_vectors_count == sealed_rows);
    let mut found = 0;
    for q in 0..20 {
        let query: Vec<f32> = (0..16).map(|i| ((i * 7 + q) as f32 * 0.91).cos()).collect();
        let got = shard.search(&search_req(query.clone(), 10)).unwrap();
        let want = brute_force(&points, Distance::Cosine, &query, 10);
        found += want
            .iter()
            .filter(|w| got.iter().any(|g| g.id == w.0))
            .count();
        let mut exact = search_req(query, 10);
        exact.exact = true;
        let got = shard.search(&exact).unwrap();
        assert_eq!(
            got.iter().map(|h| h.id).collect::<Vec<_>>(),
            want.iter().map(|w| w.0).collect::<Vec<_>>()
        );
    }
    assert!(found >= 180, "recall@10 over 20 queries: {found}/200");
    drop(shard);
    let shard = LocalShard::open(dir.path(), cfg).unwrap();
    assert_eq!(
        shard.info().indexed_vectors_count,
        sealed_rows,
        "HNSW files are loaded on reopen"
    );
}

/// Throughput of the write path, for measuring by hand:
/// `cargo test --release --lib shard::tests::measure_apply -- --ignored --nocapture`.
#[test]
#[ignore = "measurement, not a check"]
fn measure_apply_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let shard = LocalShard::open(dir.path(), config(128, Distance::Cosine, 32 * 1024, 0)).unwrap();
    let points = random_points(200_000, 128, 11);
    let start = std::time::Instant::now();
    for chunk in points.chunks(100) {
        shard.apply(ShardOp::Upsert(chunk.to_vec()), true).unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "durable batches of 100: {:.0} points/s",
        points.len() as f64 / secs
    );
    let start = std::time::Instant::now();
    shard.flush().unwrap();
    println!(
        "flush: {:.2} s, info {:?}",
        start.elapsed().as_secs_f64(),
        shard.info()
    );
}

// ------------------------------------------------------------------ merging

/// 8-d Dot vectors (32 bytes): 1 KB segments seal at 33 points. No background merges;
/// tests drive them with `merge::merge_with_cap`.
fn merge_config() -> ShardConfig {
    config(8, Distance::Dot, 1, 1)
}

fn open_flat(dir: &Path, cfg: ShardConfig) -> LocalShard {
    let builder: Arc<dyn IndexBuilder> = Arc::new(index::testing::FlatBuilder);
    LocalShard::open_with_builder(dir, cfg, builder).unwrap()
}

/// Merges until nothing is left to merge under `cap_kb`; returns how many merges ran.
fn merge_all(shard: &LocalShard, cap_kb: usize) -> usize {
    let mut merges = 0;
    while merge::merge_with_cap(&shard.inner, cap_kb, &|| {}).unwrap() {
        merges += 1;
    }
    merges
}

fn exact_results(shard: &LocalShard) -> Vec<Vec<(PointId, u64, f32)>> {
    (0..5)
        .map(|q| {
            let query: Vec<f32> = (0..8).map(|i| ((i * 3 + q) as f32 * 0.7).sin()).collect();
            let mut req = search_req(query, 20);
            req.exact = true;
            let hits = shard.search(&req).unwrap();
            hits.iter().map(|h| (h.id, h.version, h.score)).collect()
        })
        .collect()
}

fn sealed_rows(shard: &LocalShard) -> (usize, usize) {
    let state = shard.inner.state.read();
    let sealed = state.segments.iter().filter(|s| s.is_sealed());
    let rows: usize = sealed.clone().map(|s| s.data().len()).sum();
    let live: usize = sealed
        .map(|s| s.data().len() - s.deleted.count_ones())
        .sum();
    (rows, live)
}

/// Every file under `segments/` is named by the manifest in force, once the index
/// worker has attached (or dropped) what it is building.
fn assert_no_stray_files(dir: &Path) {
    let listed = || {
        let manifest = manifest::Manifest::load(dir).unwrap().unwrap();
        let mut listed: Vec<String> = manifest
            .files()
            .iter()
            .map(|f| f.as_str().trim_start_matches("segments/").to_string())
            .collect();
        listed.sort();
        listed
    };
    for _ in 0..2000 {
        if segment_files(dir) == listed() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(segment_files(dir), listed());
}

#[test]
fn merging_a_series_of_seals_leaves_fewer_segments() {
    let dir = tempfile::tempdir().unwrap();
    let shard = open_flat(dir.path(), merge_config());
    for p in random_points(330, 8, 20) {
        shard.apply(ShardOp::Upsert(vec![p]), false).unwrap();
    }
    shard.flush().unwrap();
    assert_eq!(shard.info().segments_count, 11, "10 sealed + appendable");
    // 5 KB holds four 1056-byte segments: 4 + 4 + 2, then nothing fits.
    assert_eq!(merge_all(&shard, 5), 3);
    assert_eq!(shard.info().segments_count, 4);
    let sizes: Vec<usize> = {
        let state = shard.inner.state.read();
        state.segments.iter().map(|s| s.data().len()).collect()
    };
    assert_eq!(sizes, vec![132, 132, 66, 0]);
    assert_eq!(shard.info().indexed_vectors_count, 330);
    assert_no_stray_files(dir.path());
}

#[test]
fn merge_keeps_results_and_vacuums_deleted_rows() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = merge_config();
    let shard = open_flat(dir.path(), cfg.clone());
    let mut points = random_points(300, 8, 21);
    points[7].vectors.clear(); // a point without a vector
    upsert_in_batches(&shard, points, 1);
    shard.flush().unwrap();
    shard
        .apply(ShardOp::Delete(PointSelector::Ids(ids(0..40))), false)
        .unwrap();
    let set = ShardOp::SetPayload {
        selector: PointSelector::Ids(ids(100..110)),
        payload: payload(json!({"u": 1})),
        key: None,
    };
    shard.apply(set, false).unwrap();
    shard.flush().unwrap();
    let before = (all(&shard), exact_results(&shard), shard.count(None));
    let segments_before = shard.info().segments_count;

    assert!(merge_all(&shard, 64) >= 1);
    assert!(shard.info().segments_count < segments_before);
    assert_eq!(
        (all(&shard), exact_results(&shard), shard.count(None)),
        before
    );
    let (rows, live) = sealed_rows(&shard);
    assert_eq!(rows, live, "merged segments hold no deleted rows");
    assert_eq!(shard.info().indexed_vectors_count, rows);
    assert_eq!(shard.info().points_count, 260);
    assert_no_stray_files(dir.path());

    drop(shard);
    let shard = open_flat(dir.path(), cfg);
    assert_eq!(
        (all(&shard), exact_results(&shard), shard.count(None)),
        before,
        "reopened after the merge"
    );
    assert!(shard
        .retrieve(
            &ids(0..40),
            &WithPayload::Enable(true),
            &WithVector::Enable(true)
        )
        .is_empty());
    assert_eq!(shard.info().indexed_vectors_count, sealed_rows(&shard).0);
}

#[test]
fn writes_during_a_merge_are_neither_lost_nor_resurrected() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = merge_config();
    let shard = open_flat(dir.path(), cfg.clone());
    upsert_in_batches(&shard, random_points(200, 8, 22), 1);
    shard.flush().unwrap();
    let race = || {
        // Runs after the merge copied the rows, before it swaps them in.
        shard
            .apply(ShardOp::Delete(PointSelector::Ids(ids(0..10))), false)
            .unwrap();
        let set = ShardOp::SetPayload {
            selector: PointSelector::Ids(ids(50..55)),
            payload: payload(json!({"during": true})),
            key: None,
        };
        shard.apply(set, false).unwrap();
        let moved = point(60, vec![9.0; 8], json!({"moved": 1}));
        shard.apply(ShardOp::Upsert(vec![moved]), false).unwrap();
        let fresh = point(1000, vec![1.0; 8], json!({"new": 1}));
        shard.apply(ShardOp::Upsert(vec![fresh]), false).unwrap();
    };
    assert!(merge::merge_with_cap(&shard.inner, 64, &race).unwrap());
    let check = |shard: &LocalShard| {
        assert_eq!(shard.count(None), 191);
        assert!(shard
            .retrieve(
                &ids(0..10),
                &WithPayload::Enable(false),
                &WithVector::Enable(false)
            )
            .is_empty());
        assert_eq!(get_payload(shard, 52)["during"], json!(true));
        assert_eq!(get_payload(shard, 60), json!({"moved": 1}));
        assert_eq!(
            shard.get_vectors(PointId::Num(60)).unwrap()[""],
            vec![9.0; 8]
        );
        assert_eq!(get_payload(shard, 1000), json!({"new": 1}));
        let top = shard.search(&search_req(vec![1.0; 8], 1)).unwrap();
        assert_eq!(top[0].id, PointId::Num(60), "its old row is not searchable");
        let (rows, live) = sealed_rows(shard);
        assert_eq!(rows - live, 16, "rows deleted or updated during the merge");
    };
    check(&shard);
    let expected = all(&shard);
    // More ops after the merge, only in the WAL.
    shard
        .apply(ShardOp::Delete(PointSelector::Ids(ids(10..12))), false)
        .unwrap();
    let expected_after: Vec<Record> = expected
        .into_iter()
        .filter(|r| r.id != PointId::Num(10) && r.id != PointId::Num(11))
        .collect();
    drop(shard);
    let shard = open_flat(dir.path(), cfg.clone());
    assert_eq!(all(&shard), expected_after, "manifest of the swap + WAL");
    shard.flush().unwrap();
    drop(shard);
    let shard = open_flat(dir.path(), cfg);
    assert_eq!(all(&shard), expected_after, "after a checkpoint");
}

#[test]
fn a_crash_before_the_swap_keeps_the_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    // No indexing: the reopened shard then writes no files whose names (from the old
    // manifest's counter) could coincide with the merge's.
    let mut cfg = merge_config();
    cfg.indexing_threshold_kb = 0;
    let shard = open_flat(dir.path(), cfg.clone());
    upsert_in_batches(&shard, random_points(200, 8, 23), 1);
    shard.flush().unwrap();
    let before = all(&shard);
    let old_files = segment_files(dir.path());
    let crash_copy = || {
        // What a kill -9 here would leave: the merged files exist, the manifest is old.
        assert!(segment_files(dir.path()).len() > old_files.len());
        for rel in ["manifest.json"]
            .into_iter()
            .map(String::from)
            .chain(
                segment_files(dir.path())
                    .iter()
                    .map(|f| format!("segments/{f}")),
            )
            .chain(
                std::fs::read_dir(dir.path().join("wal"))
                    .unwrap()
                    .map(|e| format!("wal/{}", e.unwrap().file_name().to_string_lossy())),
            )
        {
            let dest = crashed.path().join(&rel);
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(dir.path().join(&rel), dest).unwrap();
        }
    };
    assert!(merge::merge_with_cap(&shard.inner, 64, &crash_copy).unwrap());
    let merge_files: Vec<String> = segment_files(crashed.path())
        .into_iter()
        .filter(|f| !old_files.contains(f))
        .collect();
    assert!(!merge_files.is_empty());
    let restored = open_flat(crashed.path(), cfg);
    assert_eq!(all(&restored), before);
    let left = segment_files(crashed.path());
    assert!(
        merge_files.iter().all(|f| !left.contains(f)),
        "unnamed merge files are removed on open: {left:?}"
    );
    assert_eq!(all(&shard), before);
}

#[test]
fn freeze_during_a_merge_still_reproduces_the_shard() {
    let dir = tempfile::tempdir().unwrap();
    let copy = tempfile::tempdir().unwrap();
    let cfg = merge_config();
    let shard = open_flat(dir.path(), cfg.clone());
    upsert_in_batches(&shard, random_points(200, 8, 24), 1);
    shard.flush().unwrap();
    shard
        .apply(ShardOp::Delete(PointSelector::Ids(ids(0..5))), false)
        .unwrap();
    let frozen = parking_lot::Mutex::new(None);
    let at_freeze = all(&shard);
    let freeze = || *frozen.lock() = Some(shard.freeze().unwrap());
    assert!(merge::merge_with_cap(&shard.inner, 64, &freeze).unwrap());
    let frozen = frozen.into_inner().unwrap();
    shard
        .apply(ShardOp::Delete(PointSelector::Ids(ids(5..10))), false)
        .unwrap();
    shard.flush().unwrap();
    for f in frozen.files() {
        assert!(dir.path().join(&f).exists(), "pinned file {f} was deleted");
    }
    frozen.copy_to(copy.path()).unwrap();
    drop(frozen);
    assert_no_stray_files(dir.path());
    let restored = open_flat(copy.path(), cfg);
    assert_eq!(all(&restored), at_freeze);
}

#[test]
fn background_merges_settle_with_every_segment_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = merge_config();
    cfg.merge_max_kb = 8;
    let shard = open_flat(dir.path(), cfg.clone());
    let points = random_points(1000, 8, 25);
    upsert_in_batches(&shard, points.clone(), 10);
    shard.flush().unwrap();
    let settled = || {
        let (rows, _) = sealed_rows(&shard);
        let idle = shard.inner.merging.lock().is_empty();
        let done = !merge::has_work(&shard.inner.state.read());
        idle && done && shard.info().indexed_vectors_count == rows
    };
    wait_for(settled);
    // 25 seals of 40 points (batches of 10 pass 1 KB at 40); 1000 x 32 bytes = 31.25 KB
    // in segments of at most 8 KB: at least 4 sealed, and far fewer than 25.
    let sealed_after = shard.info().segments_count - 1;
    assert!((4..=12).contains(&sealed_after), "{sealed_after}");
    let query = vec![0.3; 8];
    let got = shard.search(&search_req(query.clone(), 10)).unwrap();
    let want = brute_force(&points, Distance::Dot, &query, 10);
    assert_eq!(
        got.iter().map(|h| h.id).collect::<Vec<_>>(),
        want.iter().map(|w| w.0).collect::<Vec<_>>()
    );
    assert_eq!(shard.count(None), 1000);
}

#[test]
fn optimizing_is_reported_while_work_is_due_and_cleared_once_settled() {
    // Without background threads the signal is plain state: nothing due on an empty
    // shard; a seal leaves an unpersisted segment, then an index, then a merge due.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = merge_config();
    cfg.merge_max_kb = 8;
    let builder: Arc<dyn IndexBuilder> = Arc::new(index::testing::FlatBuilder);
    {
        let inner = engine::Inner::open(dir.path(), cfg.clone(), builder.clone()).unwrap();
        assert!(!worker::optimizations_pending(&inner));
        for chunk in random_points(200, 8, 31).chunks(10) {
            inner.apply(ShardOp::Upsert(chunk.to_vec()), false).unwrap();
        }
        assert!(
            worker::optimizations_pending(&inner),
            "sealed, not yet checkpointed"
        );
        inner.checkpoint().unwrap();
        assert!(
            worker::optimizations_pending(&inner),
            "persisted, not yet indexed or merged"
        );
    }
    // With them, the shard reports optimizing until every sealed row is indexed and no
    // merge is left; it must not report idle before that.
    let shard = open_flat(dir.path(), cfg);
    upsert_in_batches(&shard, random_points(1000, 8, 32), 10);
    shard.flush().unwrap();
    wait_for(|| !shard.info().optimizing);
    let (rows, _) = sealed_rows(&shard);
    assert_eq!(shard.info().indexed_vectors_count, rows);
    assert!(!merge::has_work(&shard.inner.state.read()));
    assert!(shard.inner.merging.lock().is_empty());
}

/// A segment large enough to be scanned by several threads gives exactly the brute-force
/// top hits (Dot, so scores are plain dot products), with deleted points left out.
#[test]
fn a_parallel_exact_scan_finds_the_brute_force_top_hits() {
    let dir = tempfile::tempdir().unwrap();
    let shard = LocalShard::open(dir.path(), config(4, Distance::Dot, 0, 0)).unwrap();
    let points = random_points(40_000, 4, 11);
    upsert_in_batches(&shard, points.clone(), 5_000);
    shard
        .apply(ShardOp::Delete(PointSelector::Ids(ids(0..100))), false)
        .unwrap();
    let query = vec![0.3, -0.7, 0.5, 0.1];
    let mut expected: Vec<(f32, u64)> = points
        .iter()
        .skip(100)
        .map(|p| {
            let v = &p.vectors[""];
            let score: f32 = v.iter().zip(&query).map(|(a, b)| a * b).sum();
            let PointId::Num(id) = p.id else {
                unreachable!()
            };
            (score, id)
        })
        .collect();
    expected.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut req = search_req(query, 25);
    req.exact = true;
    let hits = shard.search(&req).unwrap();
    let got: Vec<u64> = hits
        .iter()
        .map(|h| match h.id {
            PointId::Num(id) => id,
            PointId::Uuid(_) => unreachable!(),
        })
        .collect();
    let want: Vec<u64> = expected.iter().take(25).map(|(_, id)| *id).collect();
    assert_eq!(got, want);
    for (hit, (score, _)) in hits.iter().zip(&expected) {
        assert!((hit.score - score).abs() < 1e-4, "{} vs {score}", hit.score);
    }
}

// ------------------------------------------------------------ received shard data

/// A dim-8 shard with three points, its data only in the WAL or (`checkpoint`) in
/// segment files; closed afterwards.
fn dim8_shard(dir: &Path, checkpoint: bool) {
    let shard = LocalShard::open(dir, config(8, Distance::Dot, 0, 0)).unwrap();
    let points = (1..=3)
        .map(|i| point(i, vec![i as f32; 8], json!({})))
        .collect();
    shard.apply(ShardOp::Upsert(points), true).unwrap();
    if checkpoint {
        shard.flush().unwrap();
    }
}

#[test]
fn verification_refuses_data_that_does_not_fit_the_config() {
    for checkpoint in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        dim8_shard(dir.path(), checkpoint);
        let fits = verify::verify_shard_dir(dir.path(), &config(8, Distance::Dot, 0, 0)).unwrap();
        assert_eq!(
            fits.rows + fits.wal_records as usize,
            if checkpoint { 3 } else { 1 }
        );
        let err =
            verify::verify_shard_dir(dir.path(), &config(4, Distance::Dot, 0, 0)).unwrap_err();
        assert!(matches!(err, Error::BadInput(_)), "{err}");
        assert!(err.to_string().contains("dim"), "{err}");
        // Opening it with the wrong config is refused the same way, and changes nothing.
        let err = LocalShard::open(dir.path(), config(4, Distance::Dot, 0, 0))
            .err()
            .unwrap();
        assert!(matches!(err, Error::BadInput(_)), "{err}");
        let shard = LocalShard::open(dir.path(), config(8, Distance::Dot, 0, 0)).unwrap();
        assert_eq!(shard.count(None), 3);
    }
}

#[test]
fn a_manifest_naming_files_outside_the_shard_is_refused_and_nothing_is_touched() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("shard");
    dim8_shard(&dir, true);
    let outside = root.path().join("outside.points");
    std::fs::write(&outside, b"keep me").unwrap();
    let text = std::fs::read_to_string(dir.join(manifest::MANIFEST)).unwrap();
    let mut json: Value = serde_json::from_str(&text).unwrap();
    let listed = json["segments"][0]["points"][0]
        .as_str()
        .unwrap()
        .to_string();
    for hostile in [
        "../outside.points",
        "segments/../../outside.points",
        "/etc/passwd",
    ] {
        json["segments"][0]["points"][0] = json!(hostile);
        std::fs::write(
            dir.join(manifest::MANIFEST),
            serde_json::to_vec(&json).unwrap(),
        )
        .unwrap();
        let err = verify::verify_shard_dir(&dir, &config(8, Distance::Dot, 0, 0)).unwrap_err();
        assert!(matches!(err, Error::BadInput(_)), "{err}");
        let err = LocalShard::open(&dir, config(8, Distance::Dot, 0, 0))
            .err()
            .unwrap();
        assert!(matches!(err, Error::BadInput(_)), "{err}");
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep me");
    }
    json["segments"][0]["points"][0] = json!(listed);
    std::fs::write(
        dir.join(manifest::MANIFEST),
        serde_json::to_vec(&json).unwrap(),
    )
    .unwrap();
    assert_eq!(
        LocalShard::open(&dir, config(8, Distance::Dot, 0, 0))
            .unwrap()
            .count(None),
        3
    );
}

#[test]
fn a_listed_file_that_is_missing_or_not_a_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    dim8_shard(dir.path(), true);
    let m = manifest::Manifest::load(dir.path()).unwrap().unwrap();
    let file = m.files()[0].path(dir.path());
    std::fs::remove_file(&file).unwrap();
    let err = verify::verify_shard_dir(dir.path(), &config(8, Distance::Dot, 0, 0)).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    std::fs::create_dir(&file).unwrap();
    let err = verify::verify_shard_dir(dir.path(), &config(8, Distance::Dot, 0, 0)).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

/// Two replicas that took the same points differently (another order, other segments, a
/// payload set afterwards, and one filled by re-upserting the other's stored vectors, as a
/// `stream_records` transfer does) have equal digests; a deleted point shows.
#[test]
fn replicas_with_the_same_points_have_equal_digests() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = LocalShard::open(dir_a.path(), config(16, Distance::Cosine, 1, 0)).unwrap();
    let b = LocalShard::open(dir_b.path(), config(16, Distance::Cosine, 0, 0)).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let points: Vec<PointRecord> = (0..300)
        .map(|id| {
            let v: Vec<f32> = (0..16).map(|_| rng.random_range(-3.0..3.0)).collect();
            point(id, v, json!({"n": id}))
        })
        .collect();
    a.apply(ShardOp::Upsert(points.clone()), false).unwrap();
    a.apply(
        ShardOp::SetPayload {
            selector: PointSelector::Ids(ids(0..10)),
            payload: payload(json!({"x": 1})),
            key: None,
        },
        false,
    )
    .unwrap();
    // b: the stored records of a, re-upserted in reverse order.
    let mut stored: Vec<PointRecord> = all(&a)
        .into_iter()
        .map(|r| PointRecord {
            id: r.id,
            vectors: a.get_vectors(r.id).unwrap(),
            payload: r.payload.unwrap(),
        })
        .collect();
    stored.reverse();
    b.apply(ShardOp::Upsert(stored), false).unwrap();
    assert_eq!(a.digest().points(), 300);
    assert!(a.digest().same_content(&b.digest()));
    assert_ne!(a.digest().last_seq, 0);

    b.apply(ShardOp::Delete(PointSelector::Ids(ids(5..6))), false)
        .unwrap();
    assert!(!a.digest().same_content(&b.digest()));
    assert_eq!(
        a.digest().differing_ranges(&b.digest()),
        vec![digest::range_of(&PointId::Num(5))]
    );
}

#[test]
fn a_huge_limit_or_beam_returns_every_point_without_sizing_by_the_request() {
    // Default HNSW builder, sealed small segments: indexed and exact paths both run.
    let dir = tempfile::tempdir().unwrap();
    let shard = LocalShard::open(dir.path(), config(8, Distance::Dot, 4, 1)).unwrap();
    let points = random_points(300, 8, 21);
    upsert_in_batches(&shard, points.clone(), 30);
    let sealed_rows: usize = {
        let state = shard.inner.state.read();
        state
            .segments
            .iter()
            .filter(|s| s.is_sealed())
            .map(|s| s.data().len())
            .sum()
    };
    assert!(sealed_rows > 0);
    wait_for(|| shard.info().indexed_vectors_count == sealed_rows);
    let query = vec![0.25; 8];
    for exact in [false, true] {
        // Before the heaps were sized by the shard, this limit was a capacity overflow.
        let mut req = search_req(query.clone(), usize::MAX);
        req.exact = exact;
        req.hnsw_ef = Some(usize::MAX);
        let got = shard.search(&req).unwrap();
        assert_eq!(got.len(), 300, "exact: {exact}");
        let mut req = search_req(query.clone(), 1 << 63);
        req.exact = exact;
        assert_eq!(shard.search(&req).unwrap().len(), 300, "exact: {exact}");
    }
    let got = shard.search(&search_req(query.clone(), 1 << 40)).unwrap();
    let want = brute_force(&points, Distance::Dot, &query, 300);
    assert_eq!(got.first().map(|h| h.id), want.first().map(|w| w.0));
}

#[test]
fn a_search_whose_scores_overflow_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let shard = LocalShard::open(dir.path(), config(2, Distance::Dot, 0, 0)).unwrap();
    // Finite stored values whose product with the query's does not fit an f32.
    shard
        .apply(
            ShardOp::Upsert(vec![
                point(1, vec![1e20, 1e20], json!({})),
                point(2, vec![1.0, 1.0], json!({})),
            ]),
            false,
        )
        .unwrap();
    let err = shard.search(&search_req(vec![1e19, 1e19], 10)).unwrap_err();
    assert!(matches!(err, Error::BadInput(_)), "{err}");
    // The overflowing point is not in the top 1 of the opposite query: no error.
    let got = shard.search(&search_req(vec![-1e19, -1e19], 1)).unwrap();
    assert_eq!(got.len(), 1);
    assert!(got[0].score.is_finite());
}
