"""Points: upsert (list and batch forms, int and UUID ids), retrieve, delete,
payload operations, scroll, count, and wait=false."""

import uuid

import pytest
from qdrant_client import models

from helpers import assert_vector_close, error_message, http, is_number, norm, ok_result, poll, scroll_all

UUID_A = "5c56c793-69f3-4fbf-87e6-c4bf54c28c26"
UUID_B = "0f0e0d0c-0b0a-4908-8706-050403020100"


def make(client, name, size=3, distance=models.Distance.DOT):
    client.create_collection(name, vectors_config=models.VectorParams(size=size, distance=distance))


def by_id(records):
    return {r.id: r for r in records}


# ---------------------------------------------------------------- upsert / retrieve

def test_upsert_list_form_int_and_uuid_ids(client, collection_name):
    make(client, collection_name)
    result = client.upsert(collection_name, points=[
        models.PointStruct(id=1, vector=[0.1, 0.2, 0.3], payload={"name": "one", "n": 1}),
        models.PointStruct(id=UUID_A, vector=[1.0, -2.0, 3.5], payload={"name": "uuid"}),
        models.PointStruct(id=2**40, vector=[0.0, 0.0, 1.0]),
    ])
    assert result.status == models.UpdateStatus.COMPLETED
    assert isinstance(result.operation_id, int)

    got = by_id(client.retrieve(collection_name, ids=[1, UUID_A, 2**40], with_payload=True, with_vectors=True))
    assert set(got) == {1, UUID_A, 2**40}
    assert type(got[1].id) is int and type(got[2**40].id) is int
    assert got[UUID_A].id == UUID_A
    assert got[1].payload == {"name": "one", "n": 1}
    assert_vector_close(got[1].vector, [0.1, 0.2, 0.3])
    assert got[UUID_A].payload == {"name": "uuid"}
    assert_vector_close(got[UUID_A].vector, [1.0, -2.0, 3.5])
    assert got[2**40].payload == {}
    assert_vector_close(got[2**40].vector, [0.0, 0.0, 1.0])


def test_ids_keep_their_json_types(base_url, client, collection_name):
    make(client, collection_name)
    client.upsert(collection_name, points=[
        models.PointStruct(id=7, vector=[1, 2, 3]),
        models.PointStruct(id=UUID_B, vector=[1, 2, 3]),
    ])
    records = ok_result(http("POST", base_url, f"/collections/{collection_name}/points", {"ids": [7, UUID_B]}))
    ids = {type(r["id"]).__name__: r["id"] for r in records}
    assert ids == {"int": 7, "str": UUID_B}, records


def test_upsert_batch_form(client, collection_name):
    make(client, collection_name)
    client.upsert(collection_name, points=models.Batch(
        ids=[10, 11, UUID_A],
        vectors=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        payloads=[{"i": 10}, {"i": 11}, {"i": "u"}],
    ))
    got = by_id(client.retrieve(collection_name, ids=[10, 11, UUID_A], with_vectors=True))
    assert {k: v.payload for k, v in got.items()} == {10: {"i": 10}, 11: {"i": 11}, UUID_A: {"i": "u"}}
    assert_vector_close(got[11].vector, [0.0, 1.0, 0.0])
    assert client.count(collection_name).count == 3


def test_upsert_batch_without_payloads(client, collection_name):
    make(client, collection_name)
    client.upsert(collection_name, points=models.Batch(ids=[1, 2], vectors=[[1, 1, 1], [2, 2, 2]]))
    got = by_id(client.retrieve(collection_name, ids=[1, 2], with_vectors=True))
    assert_vector_close(got[2].vector, [2, 2, 2])
    assert not got[1].payload


def test_upsert_overwrites_existing_point(client, collection_name):
    make(client, collection_name)
    client.upsert(collection_name, points=[models.PointStruct(id=5, vector=[1, 1, 1], payload={"a": 1, "b": 2})])
    client.upsert(collection_name, points=[models.PointStruct(id=5, vector=[3, 2, 1], payload={"c": 3})])
    [rec] = client.retrieve(collection_name, ids=[5], with_vectors=True)
    assert rec.payload == {"c": 3}  # replaced, not merged
    assert_vector_close(rec.vector, [3, 2, 1])
    assert client.count(collection_name).count == 1


def test_uuid_ids_are_normalised(client, collection_name):
    make(client, collection_name)
    upper = UUID_A.upper()
    client.upsert(collection_name, points=[models.PointStruct(id=upper, vector=[1, 2, 3])])
    [rec] = client.retrieve(collection_name, ids=[UUID_A])
    assert rec.id == UUID_A
    # the same point, whichever spelling is used
    assert [r.id for r in client.retrieve(collection_name, ids=[upper])] == [UUID_A]


def test_retrieve_skips_missing_ids(client, collection_name):
    make(client, collection_name)
    client.upsert(collection_name, points=[models.PointStruct(id=1, vector=[1, 2, 3])])
    got = client.retrieve(collection_name, ids=[1, 2, UUID_A])
    assert [r.id for r in got] == [1]


def test_retrieve_without_payload_and_vector(client, collection_name):
    make(client, collection_name)
    client.upsert(collection_name, points=[models.PointStruct(id=1, vector=[1, 2, 3], payload={"a": 1})])
    [rec] = client.retrieve(collection_name, ids=[1], with_payload=False, with_vectors=False)
    assert rec.id == 1
    assert rec.payload is None
    assert rec.vector is None


def test_retrieve_payload_selector(client, collection_name):
    make(client, collection_name)
    client.upsert(collection_name, points=[models.PointStruct(id=1, vector=[1, 2, 3], payload={"a": 1, "b": 2, "c": 3})])
    [rec] = client.retrieve(collection_name, ids=[1], with_payload=["a", "c"])
    assert rec.payload == {"a": 1, "c": 3}
    [rec] = client.retrieve(collection_name, ids=[1], with_payload=models.PayloadSelectorExclude(exclude=["a"]))
    assert rec.payload == {"b": 2, "c": 3}


def test_raw_get_point(base_url, client, collection_name):
    make(client, collection_name)
    client.upsert(collection_name, points=[
        models.PointStruct(id=3, vector=[1.5, 2.5, 3.5], payload={"k": "v", "nested": {"x": [1, 2]}}),
        models.PointStruct(id=UUID_A, vector=[1, 1, 1], payload={"u": True}),
    ])
    rec = ok_result(http("GET", base_url, f"/collections/{collection_name}/points/3"))
    assert rec["id"] == 3
    assert rec["payload"] == {"k": "v", "nested": {"x": [1, 2]}}
    assert_vector_close(rec["vector"], [1.5, 2.5, 3.5])

    rec = ok_result(http("GET", base_url, f"/collections/{collection_name}/points/{UUID_A}"))
    assert rec["id"] == UUID_A
    assert rec["payload"] == {"u": True}


def test_raw_get_missing_point_is_404(base_url, client, collection_name):
    make(client, collection_name)
    error_message(http("GET", base_url, f"/collections/{collection_name}/points/424242"), 404)
    error_message(http("GET", base_url, f"/collections/{collection_name}/points/{UUID_B}"), 404)


def test_named_vectors_roundtrip(client, collection_name):
    client.create_collection(collection_name, vectors_config={
        "image": models.VectorParams(size=2, distance=models.Distance.DOT),
        "text": models.VectorParams(size=3, distance=models.Distance.EUCLID),
    })
    client.upsert(collection_name, points=[
        models.PointStruct(id=1, vector={"image": [1.0, 2.0], "text": [3.0, 4.0, 5.0]}),
    ])
    [rec] = client.retrieve(collection_name, ids=[1], with_vectors=True)
    assert isinstance(rec.vector, dict) and set(rec.vector) == {"image", "text"}
    assert_vector_close(rec.vector["image"], [1.0, 2.0])
    assert_vector_close(rec.vector["text"], [3.0, 4.0, 5.0])
    [rec] = client.retrieve(collection_name, ids=[1], with_vectors=["text"])
    assert set(rec.vector) == {"text"}


def test_cosine_vectors_are_stored_normalised(client, collection_name):
    # Qdrant normalises vectors of Cosine collections on upsert and returns the normalised form.
    make(client, collection_name, distance=models.Distance.COSINE)
    client.upsert(collection_name, points=[models.PointStruct(id=1, vector=[3.0, 0.0, 4.0])])
    [rec] = client.retrieve(collection_name, ids=[1], with_vectors=True)
    assert_vector_close(rec.vector, norm([3.0, 0.0, 4.0]))


# ---------------------------------------------------------------- delete

def test_delete_by_ids(client, collection_name):
    make(client, collection_name)
    client.upsert(collection_name, points=[models.PointStruct(id=i, vector=[i, 0, 0]) for i in range(1, 6)]
                  + [models.PointStruct(id=UUID_A, vector=[1, 1, 1])])
    result = client.delete(collection_name, points_selector=models.PointIdsList(points=[2, 4, UUID_A, 999]))
    assert result.status == models.UpdateStatus.COMPLETED
    assert client.count(collection_name).count == 3
    assert sorted(r.id for r in client.retrieve(collection_name, ids=[1, 2, 3, 4, 5, UUID_A])) == [1, 3, 5]


def test_delete_by_filter(client, collection_name):
    make(client, collection_name)
    client.upsert(collection_name, points=[
        models.PointStruct(id=i, vector=[i, 0, 0], payload={"group": "a" if i % 2 else "b", "i": i}) for i in range(1, 11)
    ])
    client.delete(collection_name, points_selector=models.FilterSelector(
        filter=models.Filter(must=[models.FieldCondition(key="group", match=models.MatchValue(value="a"))])
    ))
    remaining = scroll_all(client, collection_name)
    assert sorted(p.id for p in remaining) == [2, 4, 6, 8, 10]
    # a bare Filter is accepted by the client as a selector too
    client.delete(collection_name, points_selector=models.Filter(
        must=[models.FieldCondition(key="i", range=models.Range(gte=8))]
    ))
    assert sorted(p.id for p in scroll_all(client, collection_name)) == [2, 4, 6]


# ---------------------------------------------------------------- payload operations

@pytest.fixture
def payload_collection(client, collection_name):
    make(client, collection_name)
    client.upsert(collection_name, points=[
        models.PointStruct(id=1, vector=[1, 0, 0], payload={"a": 1, "b": "x", "obj": {"p": 1}}),
        models.PointStruct(id=2, vector=[0, 1, 0], payload={"a": 2, "b": "y"}),
        models.PointStruct(id=3, vector=[0, 0, 1], payload={"a": 3}),
    ])
    return collection_name


def payloads(client, name, ids=(1, 2, 3)):
    return {r.id: r.payload for r in client.retrieve(name, ids=list(ids))}


def test_set_payload_merges(client, payload_collection):
    r = client.set_payload(payload_collection, payload={"b": "new", "c": [1, 2]}, points=[1, 3])
    assert r.status == models.UpdateStatus.COMPLETED
    assert payloads(client, payload_collection) == {
        1: {"a": 1, "b": "new", "c": [1, 2], "obj": {"p": 1}},
        2: {"a": 2, "b": "y"},
        3: {"a": 3, "b": "new", "c": [1, 2]},
    }


def test_set_payload_with_nested_key(client, payload_collection):
    client.set_payload(payload_collection, payload={"q": 2}, points=[1], key="obj")
    assert payloads(client, payload_collection, [1])[1]["obj"] == {"p": 1, "q": 2}
    # a path that does not exist yet is created
    client.set_payload(payload_collection, payload={"deep": True}, points=[2], key="x.y")
    assert payloads(client, payload_collection, [2])[2] == {"a": 2, "b": "y", "x": {"y": {"deep": True}}}


def test_set_payload_by_filter(client, payload_collection):
    client.set_payload(payload_collection, payload={"flag": True}, points=models.Filter(
        must=[models.FieldCondition(key="a", range=models.Range(gte=2))]
    ))
    got = payloads(client, payload_collection)
    assert "flag" not in got[1]
    assert got[2]["flag"] is True and got[3]["flag"] is True


def test_overwrite_payload_replaces(client, payload_collection):
    client.overwrite_payload(payload_collection, payload={"only": "this"}, points=[1, 2])
    assert payloads(client, payload_collection) == {1: {"only": "this"}, 2: {"only": "this"}, 3: {"a": 3}}


def test_delete_payload_keys(client, payload_collection):
    client.delete_payload(payload_collection, keys=["a", "obj", "missing"], points=[1, 2])
    assert payloads(client, payload_collection) == {1: {"b": "x"}, 2: {"b": "y"}, 3: {"a": 3}}


def test_delete_payload_nested_key(client, payload_collection):
    client.set_payload(payload_collection, payload={"q": 2}, points=[1], key="obj")
    client.delete_payload(payload_collection, keys=["obj.p"], points=[1])
    assert payloads(client, payload_collection, [1])[1]["obj"] == {"q": 2}


def test_clear_payload(client, payload_collection):
    client.clear_payload(payload_collection, points_selector=[1, 3])
    got = payloads(client, payload_collection)
    assert not got[1] and not got[3]
    assert got[2] == {"a": 2, "b": "y"}
    # vectors are untouched
    [rec] = client.retrieve(payload_collection, ids=[1], with_vectors=True)
    assert_vector_close(rec.vector, [1, 0, 0])


def test_payload_values_roundtrip(client, collection_name):
    make(client, collection_name)
    payload = {
        "int": -7, "big": 2**53, "float": 0.25, "bool": False, "null": None, "str": "héllo ✓",
        "list": [1, "two", 3.0, None, {"k": []}], "obj": {"a": {"b": {"c": "deep"}}}, "empty": {},
    }
    client.upsert(collection_name, points=[models.PointStruct(id=1, vector=[1, 2, 3], payload=payload)])
    [rec] = client.retrieve(collection_name, ids=[1])
    assert rec.payload == payload


# ---------------------------------------------------------------- scroll / count

@pytest.fixture
def fifty(client, collection_name):
    make(client, collection_name)
    client.upsert(collection_name, points=[
        models.PointStruct(id=i, vector=[i, 1, 0], payload={"i": i, "even": i % 2 == 0}) for i in range(1, 51)
    ])
    return collection_name


def test_scroll_paging_covers_every_point_once(client, fifty):
    seen, offset, pages = [], None, 0
    for _ in range(100):  # bounded
        points, offset = client.scroll(fifty, limit=7, offset=offset)
        pages += 1
        assert len(points) <= 7
        seen.extend(p.id for p in points)
        if offset is None:
            break
    else:
        pytest.fail("scroll never returned next_page_offset=None")
    assert sorted(seen) == list(range(1, 51))
    assert len(seen) == len(set(seen)), "a point was returned twice"
    assert seen == sorted(seen), "scroll must go in id order"
    assert pages == 8  # 7 full pages + 1 page of 1


def test_scroll_offset_is_inclusive_start_id(client, fifty):
    points, nxt = client.scroll(fifty, limit=5, offset=20)
    assert [p.id for p in points] == [20, 21, 22, 23, 24]
    assert nxt == 25


def test_scroll_last_page_has_no_next_offset(client, fifty):
    points, nxt = client.scroll(fifty, limit=50)
    assert len(points) == 50
    assert nxt is None


def test_scroll_with_filter(client, fifty):
    flt = models.Filter(must=[
        models.FieldCondition(key="even", match=models.MatchValue(value=True)),
        models.FieldCondition(key="i", range=models.Range(gt=10, lte=30)),
    ])
    got = scroll_all(client, fifty, page=3, scroll_filter=flt)
    assert [p.id for p in got] == list(range(12, 31, 2))


def test_scroll_with_payload_and_vectors_flags(client, fifty):
    points, _ = client.scroll(fifty, limit=2, with_payload=True, with_vectors=True)
    assert points[0].payload == {"i": 1, "even": False}
    assert_vector_close(points[0].vector, [1, 1, 0])
    points, _ = client.scroll(fifty, limit=2, with_payload=False, with_vectors=False)
    assert points[0].payload is None and points[0].vector is None


def test_scroll_raw_shape(base_url, fifty):
    res = ok_result(http("POST", base_url, f"/collections/{fifty}/points/scroll",
                         {"limit": 3, "with_payload": True, "with_vector": False}))
    assert [p["id"] for p in res["points"]] == [1, 2, 3]
    assert res["next_page_offset"] == 4
    assert res["points"][0]["payload"] == {"i": 1, "even": False}


def test_count(client, fifty):
    assert client.count(fifty, exact=True).count == 50
    flt = models.Filter(must=[models.FieldCondition(key="i", range=models.Range(lt=11))])
    assert client.count(fifty, count_filter=flt, exact=True).count == 10
    none = models.Filter(must=[models.FieldCondition(key="i", match=models.MatchValue(value=1000))])
    assert client.count(fifty, count_filter=none).count == 0


def test_count_raw(base_url, fifty):
    assert ok_result(http("POST", base_url, f"/collections/{fifty}/points/count", {"exact": True})) == {"count": 50}
    assert ok_result(http("POST", base_url, f"/collections/{fifty}/points/count", {})) == {"count": 50}


# ---------------------------------------------------------------- wait=false

def test_upsert_wait_false_is_acknowledged_then_visible(client, base_url, collection_name):
    make(client, collection_name)
    r = http("PUT", base_url, f"/collections/{collection_name}/points?wait=false",
             {"points": [{"id": i, "vector": [i, 0, 1], "payload": {"i": i}} for i in range(1, 21)]})
    result = ok_result(r)
    assert result["status"] == "acknowledged", result
    assert isinstance(result["operation_id"], int) and not isinstance(result["operation_id"], bool), result

    assert poll(lambda: client.count(collection_name).count == 20, timeout=10), \
        f"only {client.count(collection_name).count} of 20 points visible after 10s"
    assert client.retrieve(collection_name, ids=[20])[0].payload == {"i": 20}


def test_client_upsert_wait_false(client, collection_name):
    make(client, collection_name)
    result = client.upsert(collection_name, wait=False,
                           points=[models.PointStruct(id=1, vector=[1, 2, 3], payload={"x": 1})])
    assert result.status == models.UpdateStatus.ACKNOWLEDGED
    assert poll(lambda: client.retrieve(collection_name, ids=[1]), timeout=10), "point never became visible"


def test_operation_ids_increase(client, collection_name):
    make(client, collection_name)
    ids = [
        client.upsert(collection_name, points=[models.PointStruct(id=i, vector=[i, 0, 0])]).operation_id
        for i in range(1, 5)
    ]
    assert all(isinstance(i, int) for i in ids), ids
    assert ids == sorted(ids) and len(set(ids)) == len(ids), ids


def test_update_result_raw_shape(base_url, client, collection_name):
    make(client, collection_name)
    res = ok_result(http("PUT", base_url, f"/collections/{collection_name}/points?wait=true",
                         {"points": [{"id": 1, "vector": [1, 2, 3]}]}))
    assert res["status"] == "completed"
    assert is_number(res["operation_id"])


def test_scroll_mixed_int_and_uuid_ids(client, collection_name):
    make(client, collection_name)
    uuids = [str(uuid.UUID(int=(i + 1) * 0x1111_1111_1111_4111_8111_1111_1111_1111 % (1 << 128), version=4))
             for i in range(9)]
    ids = list(range(1, 12)) + uuids
    client.upsert(collection_name, points=[models.PointStruct(id=pid, vector=[1, 2, 3]) for pid in ids])
    seen, offset = [], None
    for _ in range(50):  # bounded
        points, offset = client.scroll(collection_name, limit=4, offset=offset, with_payload=False)
        seen.extend(p.id for p in points)
        if offset is None:
            break
    assert sorted(map(str, seen)) == sorted(map(str, ids))
    assert len(seen) == len(ids), "a point was returned twice"


def test_scroll_offset_past_the_end(client, fifty):
    points, nxt = client.scroll(fifty, limit=5, offset=1000)
    assert points == [] and nxt is None


def test_raw_with_vectors_alias(base_url, client, collection_name):
    # Qdrant accepts both `with_vector` (what the client sends) and `with_vectors`.
    make(client, collection_name)
    client.upsert(collection_name, points=[models.PointStruct(id=1, vector=[1, 2, 3], payload={"a": 1})])
    for key in ("with_vector", "with_vectors"):
        res = ok_result(http("POST", base_url, f"/collections/{collection_name}/points/scroll", {"limit": 1, key: True}))
        assert_vector_close(res["points"][0]["vector"], [1, 2, 3])
        [rec] = ok_result(http("POST", base_url, f"/collections/{collection_name}/points", {"ids": [1], key: True}))
        assert_vector_close(rec["vector"], [1, 2, 3])


def test_concurrent_upserts_all_land(node, collection_name):
    from concurrent.futures import ThreadPoolExecutor

    setup = node.client()
    make(setup, collection_name)

    def writer(w):
        c = node.client(check_compatibility=False)
        try:
            for k in range(25):
                pid = w * 1000 + k
                c.upsert(collection_name, points=[models.PointStruct(id=pid, vector=[w, k, 1], payload={"w": w, "k": k})])
        finally:
            c.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(writer, range(8), timeout=120))
    assert setup.count(collection_name, exact=True).count == 200
    got = {p.id: p.payload for p in scroll_all(setup, collection_name)}
    assert got == {w * 1000 + k: {"w": w, "k": k} for w in range(8) for k in range(25)}
    setup.close()
