"""Nearest-neighbour correctness against plain-python expectations, for every
distance, through query_points / query_batch_points and raw /points/search."""

import math
import uuid

import pytest
from qdrant_client import models

from helpers import (assert_same_ranking, assert_vector_close, higher_is_better, http, ok_result, poll,
                     rand_vectors, ranked, score)

DIM = 8
N = 60
DISTANCES = ["Cosine", "Euclid", "Dot", "Manhattan"]


def build(client, name, distance, seed=1):
    """N points with seeded random vectors and a small payload; returns {id: vector}."""
    client.create_collection(name, vectors_config=models.VectorParams(size=DIM, distance=models.Distance(distance)))
    vectors = rand_vectors(seed, N, DIM)
    points = {i + 1: v for i, v in enumerate(vectors)}
    client.upsert(name, points=[
        models.PointStruct(id=pid, vector=vec, payload={"i": pid, "parity": "even" if pid % 2 == 0 else "odd"})
        for pid, vec in points.items()
    ])
    return points


def hits(result):
    return [(p.id, p.score) for p in result.points]


@pytest.fixture(scope="module")
def corpora(client):
    """One collection per distance, shared by the read-only tests of this module."""
    out = {}
    for distance in DISTANCES:
        name = f"search_{distance.lower()}_{uuid.uuid4().hex[:8]}"
        out[distance] = (name, build(client, name, distance, seed=len(distance)))
    return out


QUERY = rand_vectors(99, 1, DIM)[0]


@pytest.mark.parametrize("distance", DISTANCES)
def test_query_vector_top_k(client, corpora, distance):
    name, points = corpora[distance]
    res = client.query_points(name, query=QUERY, limit=10)
    assert_same_ranking(hits(res), ranked(distance, QUERY, points)[:10])


@pytest.mark.parametrize("distance", DISTANCES)
def test_query_exact_search(client, corpora, distance):
    name, points = corpora[distance]
    res = client.query_points(name, query=QUERY, limit=N, search_params=models.SearchParams(exact=True))
    assert_same_ranking(hits(res), ranked(distance, QUERY, points))


@pytest.mark.parametrize("distance", DISTANCES)
def test_query_by_point_id_excludes_that_point(client, corpora, distance):
    name, points = corpora[distance]
    target = 17
    others = {pid: v for pid, v in points.items() if pid != target}
    # Cosine collections store normalised vectors; the score is the same either way.
    res = client.query_points(name, query=target, limit=5)
    assert target not in [p.id for p in res.points]
    assert_same_ranking(hits(res), ranked(distance, points[target], others)[:5])


@pytest.mark.parametrize("distance", DISTANCES)
def test_query_with_filter(client, corpora, distance):
    name, points = corpora[distance]
    flt = models.Filter(must=[models.FieldCondition(key="parity", match=models.MatchValue(value="even"))],
                        must_not=[models.FieldCondition(key="i", range=models.Range(lt=10))])
    allowed = {pid: v for pid, v in points.items() if pid % 2 == 0 and pid >= 10}
    res = client.query_points(name, query=QUERY, query_filter=flt, limit=7)
    assert_same_ranking(hits(res), ranked(distance, QUERY, allowed)[:7])


@pytest.mark.parametrize("distance", DISTANCES)
def test_query_score_threshold(client, corpora, distance):
    name, points = corpora[distance]
    full = ranked(distance, QUERY, points)
    # a threshold half-way between the 12th and 13th scores: exactly 12 results pass
    threshold = (full[11][1] + full[12][1]) / 2
    res = client.query_points(name, query=QUERY, limit=N, score_threshold=threshold)
    assert_same_ranking(hits(res), full[:12])
    for _, s in hits(res):
        assert s >= threshold if higher_is_better(distance) else s <= threshold


@pytest.mark.parametrize("distance", DISTANCES)
def test_query_offset(client, corpora, distance):
    name, points = corpora[distance]
    res = client.query_points(name, query=QUERY, limit=4, offset=3)
    assert_same_ranking(hits(res), ranked(distance, QUERY, points)[3:7])


def test_query_limit(client, corpora):
    name, _ = corpora["Dot"]
    for limit in (1, 3, N, N + 20):
        assert len(client.query_points(name, query=QUERY, limit=limit).points) == min(limit, N)


def test_query_payload_and_vectors(client, corpora):
    name, points = corpora["Dot"]
    res = client.query_points(name, query=QUERY, limit=3, with_payload=True, with_vectors=True)
    for p in res.points:
        assert p.payload == {"i": p.id, "parity": "even" if p.id % 2 == 0 else "odd"}
        assert_vector_close(p.vector, points[p.id])
        assert isinstance(p.version, int)
    res = client.query_points(name, query=QUERY, limit=3, with_payload=False, with_vectors=False)
    for p in res.points:
        assert p.payload is None and p.vector is None
    res = client.query_points(name, query=QUERY, limit=3, with_payload=["parity"])
    for p in res.points:
        assert set(p.payload) == {"parity"}


def test_query_by_uuid_point(client, collection_name):
    client.create_collection(collection_name, vectors_config=models.VectorParams(size=2, distance=models.Distance.EUCLID))
    a, b, c = ("11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222",
               "33333333-3333-4333-8333-333333333333")
    client.upsert(collection_name, points=[
        models.PointStruct(id=a, vector=[0.0, 0.0]),
        models.PointStruct(id=b, vector=[1.0, 0.0]),
        models.PointStruct(id=c, vector=[5.0, 0.0]),
    ])
    res = client.query_points(collection_name, query=a, limit=5)
    assert_same_ranking(hits(res), [(b, 1.0), (c, 5.0)])


def test_query_named_vectors_using(client, collection_name):
    client.create_collection(collection_name, vectors_config={
        "img": models.VectorParams(size=4, distance=models.Distance.DOT),
        "txt": models.VectorParams(size=3, distance=models.Distance.EUCLID),
    })
    img = {i + 1: v for i, v in enumerate(rand_vectors(5, 30, 4))}
    txt = {i + 1: v for i, v in enumerate(rand_vectors(6, 30, 3))}
    client.upsert(collection_name, points=[
        models.PointStruct(id=pid, vector={"img": img[pid], "txt": txt[pid]}) for pid in img
    ])
    q_img, q_txt = [0.3, -0.2, 0.9, 0.1], [0.5, 0.5, -0.5]
    res = client.query_points(collection_name, query=q_img, using="img", limit=5)
    assert_same_ranking(hits(res), ranked("Dot", q_img, img)[:5])
    res = client.query_points(collection_name, query=q_txt, using="txt", limit=5, with_vectors=["txt"])
    assert_same_ranking(hits(res), ranked("Euclid", q_txt, txt)[:5])
    assert set(res.points[0].vector) == {"txt"}
    # by id, with `using`
    res = client.query_points(collection_name, query=4, using="txt", limit=3)
    assert_same_ranking(hits(res), ranked("Euclid", txt[4], {k: v for k, v in txt.items() if k != 4})[:3])


def test_query_batch_points(client, corpora):
    name, points = corpora["Cosine"]
    q2 = rand_vectors(7, 1, DIM)[0]
    flt = models.Filter(must=[models.FieldCondition(key="parity", match=models.MatchValue(value="odd"))])
    results = client.query_batch_points(name, requests=[
        models.QueryRequest(query=QUERY, limit=3),
        models.QueryRequest(query=q2, limit=4, filter=flt, with_payload=True),
        models.QueryRequest(query=5, limit=2),
    ])
    assert len(results) == 3
    assert_same_ranking(hits(results[0]), ranked("Cosine", QUERY, points)[:3])
    odd = {k: v for k, v in points.items() if k % 2}
    assert_same_ranking(hits(results[1]), ranked("Cosine", q2, odd)[:4])
    assert all(p.payload["parity"] == "odd" for p in results[1].points)
    assert_same_ranking(hits(results[2]), ranked("Cosine", points[5], {k: v for k, v in points.items() if k != 5})[:2])


def test_empty_collection_query(client, collection_name):
    client.create_collection(collection_name, vectors_config=models.VectorParams(size=3, distance=models.Distance.COSINE))
    assert client.query_points(collection_name, query=[1, 2, 3], limit=5).points == []


def test_deleted_points_are_not_found(client, collection_name):
    points = build(client, collection_name, "Euclid", seed=3)
    gone = [pid for pid, _ in ranked("Euclid", QUERY, points)[:5]]
    client.delete(collection_name, points_selector=models.PointIdsList(points=gone))
    rest = {k: v for k, v in points.items() if k not in gone}
    res = client.query_points(collection_name, query=QUERY, limit=5)
    assert_same_ranking(hits(res), ranked("Euclid", QUERY, rest)[:5])


def test_updated_vector_is_searched(client, collection_name):
    points = build(client, collection_name, "Dot", seed=4)
    far = ranked("Dot", QUERY, points)[-1][0]
    new = [x * 10 for x in QUERY]  # now by far the best dot product
    client.upsert(collection_name, points=[models.PointStruct(id=far, vector=new)])
    res = client.query_points(collection_name, query=QUERY, limit=1)
    assert res.points[0].id == far
    assert math.isclose(res.points[0].score, score("Dot", QUERY, new), rel_tol=1e-4)


# ---------------------------------------------------------------- raw HTTP

@pytest.mark.parametrize("distance", DISTANCES)
def test_raw_search(base_url, corpora, distance):
    name, points = corpora[distance]
    res = ok_result(http("POST", base_url, f"/collections/{name}/points/search", {
        "vector": QUERY, "limit": 5, "with_payload": True, "params": {"exact": True},
    }))
    assert isinstance(res, list)
    for p in res:
        assert isinstance(p["version"], int) and isinstance(p["score"], float), p
        assert p["payload"]["i"] == p["id"]
    assert_same_ranking([(p["id"], p["score"]) for p in res], ranked(distance, QUERY, points)[:5])


def test_raw_search_filter_and_threshold(base_url, corpora):
    name, points = corpora["Cosine"]
    full = ranked("Cosine", QUERY, {k: v for k, v in points.items() if k % 2 == 0})
    threshold = (full[3][1] + full[4][1]) / 2
    res = ok_result(http("POST", base_url, f"/collections/{name}/points/search", {
        "vector": QUERY, "limit": 20, "score_threshold": threshold,
        "filter": {"must": [{"key": "parity", "match": {"value": "even"}}]},
    }))
    assert_same_ranking([(p["id"], p["score"]) for p in res], full[:4])


def test_raw_search_named_vector(base_url, client, collection_name):
    client.create_collection(collection_name, vectors_config={
        "a": models.VectorParams(size=2, distance=models.Distance.DOT),
        "b": models.VectorParams(size=2, distance=models.Distance.EUCLID),
    })
    client.upsert(collection_name, points=[
        models.PointStruct(id=1, vector={"a": [1.0, 0.0], "b": [9.0, 9.0]}),
        models.PointStruct(id=2, vector={"a": [0.0, 1.0], "b": [0.0, 0.0]}),
    ])
    res = ok_result(http("POST", base_url, f"/collections/{collection_name}/points/search",
                         {"vector": {"name": "b", "vector": [0.0, 0.1]}, "limit": 2}))
    assert [p["id"] for p in res] == [2, 1]


def test_raw_search_batch(base_url, corpora):
    name, points = corpora["Euclid"]
    q2 = rand_vectors(8, 1, DIM)[0]
    res = ok_result(http("POST", base_url, f"/collections/{name}/points/search/batch", {"searches": [
        {"vector": QUERY, "limit": 3},
        {"vector": q2, "limit": 2, "filter": {"must": [{"key": "i", "range": {"gte": 30}}]}},
    ]}))
    assert isinstance(res, list) and len(res) == 2
    assert_same_ranking([(p["id"], p["score"]) for p in res[0]], ranked("Euclid", QUERY, points)[:3])
    big = {k: v for k, v in points.items() if k >= 30}
    assert_same_ranking([(p["id"], p["score"]) for p in res[1]], ranked("Euclid", q2, big)[:2])


def test_raw_query_plain_vector_and_nearest(base_url, corpora):
    name, points = corpora["Dot"]
    want = ranked("Dot", QUERY, points)[:4]
    for query in (QUERY, {"nearest": QUERY}):
        res = ok_result(http("POST", base_url, f"/collections/{name}/points/query", {"query": query, "limit": 4}))
        assert isinstance(res, dict) and isinstance(res.get("points"), list), res
        assert_same_ranking([(p["id"], p["score"]) for p in res["points"]], want)


def test_raw_query_batch(base_url, corpora):
    name, points = corpora["Manhattan"]
    res = ok_result(http("POST", base_url, f"/collections/{name}/points/query/batch", {"searches": [
        {"query": QUERY, "limit": 2}, {"query": {"nearest": 9}, "limit": 2},
    ]}))
    assert len(res) == 2
    assert_same_ranking([(p["id"], p["score"]) for p in res[0]["points"]], ranked("Manhattan", QUERY, points)[:2])
    others = {k: v for k, v in points.items() if k != 9}
    assert_same_ranking([(p["id"], p["score"]) for p in res[1]["points"]], ranked("Manhattan", points[9], others)[:2])


def test_raw_query_default_has_no_payload(base_url, corpora):
    # Qdrant: with_payload defaults to false on /points/query and /points/search
    name, _ = corpora["Dot"]
    res = ok_result(http("POST", base_url, f"/collections/{name}/points/query", {"query": QUERY, "limit": 2}))
    for p in res["points"]:
        assert p.get("payload") in (None, {}), p
        assert p.get("vector") is None, p


def test_indexed_collection_search(client, collection_name):
    """Enough points, and a low indexing threshold, for an ANN index to be built:
    exact=True must still be exact, and the default search must find the true
    neighbours (recall@10 >= 0.9 over 20 queries)."""
    dim, count = 16, 3000
    client.create_collection(
        collection_name,
        vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
        optimizers_config=models.OptimizersConfigDiff(indexing_threshold=100),
        hnsw_config=models.HnswConfigDiff(full_scan_threshold=10),
    )
    vectors = rand_vectors(2024, count, dim)
    points = {i + 1: v for i, v in enumerate(vectors)}
    for start in range(0, count, 500):
        client.upsert(collection_name, points=models.Batch(
            ids=list(range(start + 1, start + 501)), vectors=vectors[start:start + 500]))
    assert client.count(collection_name).count == count
    # let background indexing settle if the server reports it (bounded; not an assertion)
    poll(lambda: client.get_collection(collection_name).status == models.CollectionStatus.GREEN, timeout=60, interval=0.5)

    queries = rand_vectors(77, 20, dim)
    found = total = 0
    for q in queries:
        want = ranked("Cosine", q, points)[:10]
        exact = client.query_points(collection_name, query=q, limit=10, search_params=models.SearchParams(exact=True))
        assert_same_ranking(hits(exact), want)
        approx = client.query_points(collection_name, query=q, limit=10)
        got_ids = [p.id for p in approx.points]
        assert len(got_ids) == 10 and len(set(got_ids)) == 10
        for p in approx.points:  # whatever is returned carries its true score
            assert math.isclose(p.score, score("Cosine", q, points[p.id]), rel_tol=1e-4, abs_tol=1e-4)
        found += len(set(got_ids) & {w[0] for w in want})
        total += 10
    assert found / total >= 0.9, f"recall@10 = {found / total:.3f}"
