"""Filters: must / should / must_not, match value / any / except, range,
is_empty, is_null, has_id, dotted keys, array keys and the nested condition.

Each case is checked through count, scroll and query_points against the ids
computed in python from the same payloads."""

import pytest
from qdrant_client import models as m

from helpers import http, ok_result, scroll_all

UUID_X = "aaaaaaaa-0000-4000-8000-000000000001"


def payload_of(i: int) -> dict:
    p = {
        "n": i,
        "price": i * 1.5,
        "color": ["red", "green", "blue"][i % 3],
        "ok": i % 4 == 0,
        "tags": [f"t{i % 5}", f"t{(i + 1) % 5}"],
        "city": {"name": ["Paris", "Berlin", "Oslo"][i % 3], "pop": 1000 * i},
        # one element with x=i%3, y="a"; another with x=(i+1)%3, y="b"
        "items": [{"x": i % 3, "y": "a"}, {"x": (i + 1) % 3, "y": "b"}],
    }
    # the "maybe" key: missing, null, empty list, or a value
    kind = i % 4
    if kind == 1:
        p["maybe"] = None
    elif kind == 2:
        p["maybe"] = []
    elif kind == 3:
        p["maybe"] = "here"
    return p


IDS = list(range(1, 31))
DATA = {i: payload_of(i) for i in IDS}
DATA[UUID_X] = {"n": 100, "color": "red", "city": {"name": "Paris"}, "tags": ["t0"], "items": []}


@pytest.fixture(scope="module")
def coll(client):
    name = "filters_" + UUID_X[-6:]
    client.create_collection(name, vectors_config=m.VectorParams(size=2, distance=m.Distance.DOT))
    client.upsert(name, points=[m.PointStruct(id=pid, vector=[1.0, 0.5], payload=p) for pid, p in DATA.items()])
    return name


def ids_where(pred):
    return {pid for pid, p in DATA.items() if pred(p, pid)}


def check(client, coll, flt: m.Filter, want: set):
    assert want, "a filter case must select something"
    assert want != set(DATA), "a filter case must exclude something"
    got_scroll = {p.id for p in scroll_all(client, coll, page=7, scroll_filter=flt)}
    assert got_scroll == want, f"scroll: extra {got_scroll - want}, missing {want - got_scroll}"
    assert client.count(coll, count_filter=flt, exact=True).count == len(want)
    got_query = {p.id for p in client.query_points(coll, query=[1.0, 1.0], query_filter=flt, limit=100).points}
    assert got_query == want, f"query: extra {got_query - want}, missing {want - got_query}"


def fc(key, **kw):
    return m.FieldCondition(key=key, **kw)


CASES = {
    "match-keyword": (
        m.Filter(must=[fc("color", match=m.MatchValue(value="red"))]),
        lambda p, _: p.get("color") == "red"),
    "match-int": (
        m.Filter(must=[fc("n", match=m.MatchValue(value=7))]),
        lambda p, _: p.get("n") == 7),
    "match-bool": (
        m.Filter(must=[fc("ok", match=m.MatchValue(value=True))]),
        lambda p, _: p.get("ok") is True),
    "must-two": (
        m.Filter(must=[fc("color", match=m.MatchValue(value="green")), fc("ok", match=m.MatchValue(value=True))]),
        lambda p, _: p.get("color") == "green" and p.get("ok") is True),
    "should": (
        m.Filter(should=[fc("color", match=m.MatchValue(value="blue")), fc("n", match=m.MatchValue(value=1))]),
        lambda p, _: p.get("color") == "blue" or p.get("n") == 1),
    "must-not": (
        m.Filter(must_not=[fc("color", match=m.MatchValue(value="red"))]),
        lambda p, _: p.get("color") != "red"),
    "must-should-must-not": (
        m.Filter(
            must=[fc("n", range=m.Range(gte=5, lte=25))],
            should=[fc("color", match=m.MatchValue(value="red")), fc("ok", match=m.MatchValue(value=True))],
            must_not=[fc("n", match=m.MatchAny(any=[12, 15]))],
        ),
        lambda p, _: 5 <= p["n"] <= 25 and (p.get("color") == "red" or p.get("ok") is True) and p["n"] not in (12, 15)),
    "match-any-keyword": (
        m.Filter(must=[fc("color", match=m.MatchAny(any=["red", "blue"]))]),
        lambda p, _: p.get("color") in ("red", "blue")),
    "match-any-int": (
        m.Filter(must=[fc("n", match=m.MatchAny(any=[2, 3, 100]))]),
        lambda p, _: p.get("n") in (2, 3, 100)),
    "match-except": (
        m.Filter(must=[fc("color", match=m.MatchExcept(**{"except": ["red", "green"]}))]),
        lambda p, _: "color" in p and p["color"] not in ("red", "green")),
    "range-int": (
        m.Filter(must=[fc("n", range=m.Range(gt=10, lt=20))]),
        lambda p, _: 10 < p["n"] < 20),
    "range-float": (
        m.Filter(must=[fc("price", range=m.Range(gte=4.5, lte=12.0))]),
        lambda p, _: "price" in p and 4.5 <= p["price"] <= 12.0),
    "range-open": (
        m.Filter(must=[fc("n", range=m.Range(gte=28))]),
        lambda p, _: p["n"] >= 28),
    "is-empty": (
        m.Filter(must=[m.IsEmptyCondition(is_empty=m.PayloadField(key="maybe"))]),
        lambda p, _: p.get("maybe") in (None, [])),
    "not-is-empty": (
        m.Filter(must_not=[m.IsEmptyCondition(is_empty=m.PayloadField(key="maybe"))]),
        lambda p, _: p.get("maybe") not in (None, [])),
    "is-null": (
        m.Filter(must=[m.IsNullCondition(is_null=m.PayloadField(key="maybe"))]),
        lambda p, _: "maybe" in p and p["maybe"] is None),
    "has-id": (
        m.Filter(must=[m.HasIdCondition(has_id=[1, 5, 9, UUID_X, 999])]),
        lambda p, pid: pid in (1, 5, 9, UUID_X)),
    "must-not-has-id": (
        m.Filter(must_not=[m.HasIdCondition(has_id=list(range(1, 26)))]),
        lambda p, pid: pid not in range(1, 26)),
    "dotted-key": (
        m.Filter(must=[fc("city.name", match=m.MatchValue(value="Oslo"))]),
        lambda p, _: p["city"]["name"] == "Oslo"),
    "dotted-key-range": (
        m.Filter(must=[fc("city.pop", range=m.Range(gte=10000, lt=15000))]),
        lambda p, _: 10000 <= p["city"].get("pop", -1) < 15000),
    "array-of-values": (
        m.Filter(must=[fc("tags", match=m.MatchValue(value="t3"))]),
        lambda p, _: "t3" in p["tags"]),
    "array-of-objects-key": (
        m.Filter(must=[fc("items[].y", match=m.MatchValue(value="b"))]),
        lambda p, _: any(it["y"] == "b" for it in p["items"])),
    "array-key-two-conditions-any-element": (
        # without `nested`, the two conditions may be met by different elements
        m.Filter(must=[fc("items[].x", match=m.MatchValue(value=1)), fc("items[].y", match=m.MatchValue(value="b"))]),
        lambda p, _: any(it["x"] == 1 for it in p["items"]) and any(it["y"] == "b" for it in p["items"])),
    "nested-same-element": (
        m.Filter(must=[m.NestedCondition(nested=m.Nested(key="items", filter=m.Filter(must=[
            fc("x", match=m.MatchValue(value=1)), fc("y", match=m.MatchValue(value="b"))])))]),
        lambda p, _: any(it["x"] == 1 and it["y"] == "b" for it in p["items"])),
    "filter-inside-filter": (
        m.Filter(should=[
            m.Filter(must=[fc("color", match=m.MatchValue(value="red")), fc("n", range=m.Range(lt=10))]),
            m.Filter(must=[fc("color", match=m.MatchValue(value="blue")), fc("n", range=m.Range(gt=20))]),
        ]),
        lambda p, _: (p["color"] == "red" and p["n"] < 10) or (p["color"] == "blue" and p["n"] > 20)),
    "missing-key-never-matches": (
        m.Filter(must=[fc("price", range=m.Range(gte=0))]),
        lambda p, _: "price" in p),
}


@pytest.mark.parametrize("case", list(CASES))
def test_filter(client, coll, case):
    flt, pred = CASES[case]
    check(client, coll, flt, ids_where(pred))


def test_nested_differs_from_flat(client, coll):
    # the data set is built so that these two really select different points
    flat, _ = CASES["array-key-two-conditions-any-element"]
    nested, _ = CASES["nested-same-element"]
    a = {p.id for p in scroll_all(client, coll, scroll_filter=flat)}
    b = {p.id for p in scroll_all(client, coll, scroll_filter=nested)}
    assert b < a, (a, b)


def test_raw_filter_json(base_url, coll):
    body = {"filter": {
        "must": [{"key": "city.name", "match": {"value": "Berlin"}}, {"key": "n", "range": {"gte": 10}}],
        "must_not": [{"has_id": [13]}],
        "should": [{"key": "tags", "match": {"any": ["t0", "t1"]}}, {"is_empty": {"key": "maybe"}}],
    }, "exact": True}
    want = ids_where(lambda p, pid: p["city"]["name"] == "Berlin" and p["n"] >= 10 and pid != 13
                     and (set(p["tags"]) & {"t0", "t1"} or p.get("maybe") in (None, [])))
    assert ok_result(http("POST", base_url, f"/collections/{coll}/points/count", body)) == {"count": len(want)}
    got = ok_result(http("POST", base_url, f"/collections/{coll}/points/scroll", {**body, "limit": 100}))
    assert {p["id"] for p in got["points"]} == want
