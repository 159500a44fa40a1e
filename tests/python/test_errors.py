"""Bad input over raw HTTP: status codes, the error envelope, and that a
rejected request changes nothing."""

import pytest
from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse

from helpers import error_message, http, ok_result

BAD_REQUEST = (400, 422)


@pytest.fixture
def coll(client, collection_name):
    client.create_collection(collection_name, vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT))
    client.upsert(collection_name, points=[
        models.PointStruct(id=i, vector=[i, 0, 0, 1], payload={"i": i}) for i in range(1, 6)
    ])
    return collection_name


def snapshot(client, coll):
    """Everything stored in a small collection, to compare before/after a rejected request."""
    points, _ = client.scroll(coll, limit=1000, with_payload=True, with_vectors=True)
    return [(p.id, p.payload, p.vector) for p in points]


# ---------------------------------------------------------------- unknown collection

@pytest.mark.parametrize("method,path,body", [
    ("GET", "/collections/{c}", None),
    ("PUT", "/collections/{c}/points?wait=true", {"points": [{"id": 1, "vector": [1, 2, 3, 4]}]}),
    ("POST", "/collections/{c}/points", {"ids": [1]}),
    ("GET", "/collections/{c}/points/1", None),
    ("POST", "/collections/{c}/points/scroll", {"limit": 1}),
    ("POST", "/collections/{c}/points/count", {"exact": True}),
    ("POST", "/collections/{c}/points/query", {"query": [1, 2, 3, 4]}),
    ("POST", "/collections/{c}/points/search", {"vector": [1, 2, 3, 4], "limit": 1}),
    ("POST", "/collections/{c}/points/delete?wait=true", {"points": [1]}),
    ("POST", "/collections/{c}/points/payload?wait=true", {"payload": {"a": 1}, "points": [1]}),
], ids=["get", "upsert", "retrieve", "get-point", "scroll", "count", "query", "search", "delete", "set-payload"])
def test_unknown_collection_is_404(base_url, collection_name, method, path, body):
    r = http(method, base_url, path.format(c=collection_name + "_missing"), body)
    msg = error_message(r, 404)
    assert collection_name + "_missing" in msg, f"message should name the collection: {msg!r}"


def test_client_raises_404_for_unknown_collection(client, collection_name):
    with pytest.raises(UnexpectedResponse) as e:
        client.get_collection(collection_name)
    assert e.value.status_code == 404
    with pytest.raises(UnexpectedResponse) as e:
        client.upsert(collection_name, points=[models.PointStruct(id=1, vector=[1, 2])])
    assert e.value.status_code == 404


# ---------------------------------------------------------------- wrong vector size

def test_upsert_wrong_dimension(client, base_url, coll):
    before = snapshot(client, coll)
    r = http("PUT", base_url, f"/collections/{coll}/points?wait=true",
             {"points": [{"id": 99, "vector": [1.0, 2.0, 3.0]}]})
    msg = error_message(r, BAD_REQUEST).lower()
    assert "dim" in msg or "size" in msg or "length" in msg, msg
    assert "4" in msg, f"message should say the expected size 4: {msg!r}"
    assert snapshot(client, coll) == before


def test_upsert_batch_with_one_bad_vector_stores_nothing(client, base_url, coll):
    before = snapshot(client, coll)
    r = http("PUT", base_url, f"/collections/{coll}/points?wait=true", {"points": [
        {"id": 50, "vector": [1, 1, 1, 1]},
        {"id": 3, "vector": [9, 9, 9, 9], "payload": {"changed": True}},
        {"id": 51, "vector": [1, 1, 1, 1, 1]},
    ]})
    error_message(r, BAD_REQUEST)
    assert snapshot(client, coll) == before
    assert client.count(coll).count == 5


def test_upsert_batch_form_wrong_dimension(client, base_url, coll):
    before = snapshot(client, coll)
    r = http("PUT", base_url, f"/collections/{coll}/points?wait=true",
             {"batch": {"ids": [60, 61], "vectors": [[1, 2, 3, 4], [1, 2]]}})
    error_message(r, BAD_REQUEST)
    assert snapshot(client, coll) == before


def test_client_upsert_wrong_dimension_raises(client, coll):
    with pytest.raises(UnexpectedResponse) as e:
        client.upsert(coll, points=[models.PointStruct(id=77, vector=[1.0, 2.0])])
    assert e.value.status_code in BAD_REQUEST
    assert client.retrieve(coll, ids=[77]) == []


def test_query_wrong_dimension(base_url, coll):
    r = http("POST", base_url, f"/collections/{coll}/points/query", {"query": [1, 2], "limit": 3})
    error_message(r, BAD_REQUEST)
    r = http("POST", base_url, f"/collections/{coll}/points/search", {"vector": [1, 2, 3, 4, 5], "limit": 3})
    error_message(r, BAD_REQUEST)


def test_unknown_vector_name(client, base_url, coll):
    before = snapshot(client, coll)
    r = http("PUT", base_url, f"/collections/{coll}/points?wait=true",
             {"points": [{"id": 70, "vector": {"nope": [1, 2, 3, 4]}}]})
    error_message(r, BAD_REQUEST)
    assert snapshot(client, coll) == before
    r = http("POST", base_url, f"/collections/{coll}/points/query", {"query": [1, 2, 3, 4], "using": "nope"})
    error_message(r, (400, 404, 422))


def test_missing_vector(client, base_url, coll):
    before = snapshot(client, coll)
    r = http("PUT", base_url, f"/collections/{coll}/points?wait=true", {"points": [{"id": 71, "payload": {"a": 1}}]})
    error_message(r, BAD_REQUEST)
    assert snapshot(client, coll) == before


# ---------------------------------------------------------------- malformed JSON / wrong types

@pytest.mark.parametrize("raw", [b"{", b"{\"points\": [", b"not json at all", b"{\"points\": [{\"id\": 1,}]}"],
                         ids=["open-brace", "truncated", "text", "trailing-comma"])
def test_malformed_json_is_400(client, base_url, coll, raw):
    before = snapshot(client, coll)
    r = http("PUT", base_url, f"/collections/{coll}/points?wait=true", raw=raw)
    error_message(r, 400)
    assert snapshot(client, coll) == before


def test_malformed_json_on_create_collection(client, base_url, collection_name):
    error_message(http("PUT", base_url, f"/collections/{collection_name}", raw=b"{\"vectors\": {\"size\": 4,"), 400)
    assert client.collection_exists(collection_name) is False


@pytest.mark.parametrize("bad_id", [-1, 1.5, "not-a-uuid", "", True, None, [1], {"id": 1}],
                         ids=["negative", "float", "non-uuid-string", "empty-string", "bool", "null", "list", "object"])
def test_bad_point_id_is_rejected(client, base_url, coll, bad_id):
    before = snapshot(client, coll)
    r = http("PUT", base_url, f"/collections/{coll}/points?wait=true",
             {"points": [{"id": bad_id, "vector": [1, 2, 3, 4]}]})
    error_message(r, BAD_REQUEST)
    assert snapshot(client, coll) == before


@pytest.mark.parametrize("bad_id", ["-1", "1.5", "not-a-uuid"])
def test_bad_point_id_in_path(base_url, coll, bad_id):
    r = http("GET", base_url, f"/collections/{coll}/points/{bad_id}")
    assert r.status_code in (400, 404, 422), r.text
    assert r.status_code != 200


@pytest.mark.parametrize("path,body", [
    ("/points/scroll", {"limit": "ten"}),
    ("/points/scroll", {"limit": -1}),
    ("/points/count", {"exact": "yes"}),
    ("/points/query", {"query": [1, 2, 3, 4], "limit": "five"}),
    ("/points/query", {"query": ["a", "b", "c", "d"]}),
    ("/points/search", {"vector": [1, 2, 3, 4], "limit": "x"}),
    ("/points/search", {"limit": 3}),
    ("/points/scroll", {"filter": {"must": [{"key": "i", "range": {"gte": "one"}}]}}),
    ("/points/scroll", {"filter": {"must": "not-a-list"}}),
    ("/points", {"ids": "1"}),
], ids=["scroll-limit-str", "scroll-limit-negative", "count-exact-str", "query-limit-str", "query-vector-strings",
        "search-limit-str", "search-no-vector", "range-str", "must-not-list", "retrieve-ids-str"])
def test_wrong_types_in_read_requests(base_url, coll, path, body):
    error_message(http("POST", base_url, f"/collections/{coll}{path}", body), BAD_REQUEST)


@pytest.mark.parametrize("body", [
    {"points": [{"id": 80, "vector": [1, 2, 3, 4], "payload": 5}]},
    {"points": [{"id": 80, "vector": [1, 2, 3, 4], "payload": [1, 2]}]},
    {"points": [{"id": 80, "vector": ["a", "b", "c", "d"]}]},
    {"points": [{"id": 80, "vector": [1, 2, None, 4]}]},
    {"points": {"id": 80, "vector": [1, 2, 3, 4]}},
    {"batch": {"ids": [80, 81], "vectors": [[1, 2, 3, 4]]}},
    {},
], ids=["payload-number", "payload-list", "vector-strings", "vector-null-component", "points-object",
        "batch-length-mismatch", "empty-body"])
def test_wrong_types_in_upsert(client, base_url, coll, body):
    before = snapshot(client, coll)
    error_message(http("PUT", base_url, f"/collections/{coll}/points?wait=true", body), BAD_REQUEST)
    assert snapshot(client, coll) == before


def test_set_payload_wrong_type(client, base_url, coll):
    before = snapshot(client, coll)
    r = http("POST", base_url, f"/collections/{coll}/points/payload?wait=true", {"payload": "x", "points": [1]})
    error_message(r, BAD_REQUEST)
    assert snapshot(client, coll) == before


# ---------------------------------------------------------------- envelope

def test_success_envelope(base_url, coll):
    r = http("POST", base_url, f"/collections/{coll}/points/count", {"exact": True})
    assert r.headers.get("content-type", "").startswith("application/json")
    assert ok_result(r) == {"count": 5}
    body = r.json()
    assert set(body) >= {"result", "status", "time"}
    assert body["time"] >= 0


def test_error_envelope_has_no_ok_status(base_url, collection_name):
    r = http("GET", base_url, f"/collections/{collection_name}_missing")
    error_message(r, 404)
    assert r.headers.get("content-type", "").startswith("application/json")
    body = r.json()
    assert body.get("result") is None
    assert body["time"] >= 0


def test_query_by_missing_point_id(base_url, coll):
    r = http("POST", base_url, f"/collections/{coll}/points/query", {"query": {"nearest": 12345}, "limit": 3})
    msg = error_message(r, (400, 404))
    assert "12345" in msg, msg
