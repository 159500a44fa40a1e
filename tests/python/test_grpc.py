"""The python qdrant-client with prefer_grpc=True against shoal's public gRPC port.

Everything goes over gRPC here (the client falls back to REST only for calls gRPC
does not have); the REST-side checks use `requests` to see the same data.
"""

import grpc
import pytest
import requests
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from conftest import CLIENT_TIMEOUT_S


def grpc_client(node, api_key=None) -> QdrantClient:
    return QdrantClient(
        host="127.0.0.1",
        port=node.http_port,
        grpc_port=node.grpc_port,
        prefer_grpc=True,
        https=False,
        api_key=api_key,
        timeout=CLIENT_TIMEOUT_S,
        check_compatibility=False,
    )


@pytest.fixture(scope="module")
def gclient(node):
    c = grpc_client(node)
    yield c
    c.close()


def make_collection(client, name, size=4, distance=models.Distance.COSINE):
    client.create_collection(name, vectors_config=models.VectorParams(size=size, distance=distance))


POINTS = [
    models.PointStruct(id=1, vector=[1.0, 0.0, 0.0, 0.0], payload={"city": "Berlin", "n": 1}),
    models.PointStruct(id=2, vector=[0.9, 0.1, 0.0, 0.0], payload={"city": "London", "n": 2}),
    models.PointStruct(id=3, vector=[0.0, 1.0, 0.0, 0.0], payload={"city": "Berlin", "n": 3}),
    models.PointStruct(
        id="5c56c793-69f3-4fbf-87e6-c4bf54c28c26",
        vector=[0.0, 0.0, 1.0, 0.0],
        payload={"city": "Paris", "n": 4.5, "tags": ["a", "b"], "meta": {"x": None}},
    ),
]


def test_collections_and_aliases(gclient, collection_name):
    make_collection(gclient, collection_name)
    assert gclient.collection_exists(collection_name)
    assert collection_name in [c.name for c in gclient.get_collections().collections]
    info = gclient.get_collection(collection_name)
    assert info.config.params.vectors.size == 4
    assert info.config.params.vectors.distance == models.Distance.COSINE
    gclient.update_collection(collection_name, optimizers_config=models.OptimizersConfigDiff(indexing_threshold=0))
    assert gclient.get_collection(collection_name).config.optimizer_config.indexing_threshold == 0
    alias = collection_name + "_alias"
    gclient.update_collection_aliases(
        change_aliases_operations=[
            models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection_name, alias_name=alias))
        ]
    )
    assert [a.alias_name for a in gclient.get_collection_aliases(collection_name).aliases] == [alias]
    assert gclient.get_collection(alias).points_count == 0
    assert gclient.delete_collection(collection_name)
    assert not gclient.collection_exists(collection_name)


def test_points_search_query_scroll_count(gclient, base_url, collection_name):
    make_collection(gclient, collection_name)
    result = gclient.upsert(collection_name, points=POINTS, wait=True)
    assert result.status == models.UpdateStatus.COMPLETED

    got = gclient.retrieve(collection_name, ids=[1, "5c56c793-69f3-4fbf-87e6-c4bf54c28c26"], with_vectors=True)
    by_id = {str(p.id): p for p in got}
    assert by_id["1"].payload == {"city": "Berlin", "n": 1}
    assert by_id["5c56c793-69f3-4fbf-87e6-c4bf54c28c26"].payload == {
        "city": "Paris", "n": 4.5, "tags": ["a", "b"], "meta": {"x": None}
    }
    assert by_id["1"].vector == pytest.approx([1.0, 0.0, 0.0, 0.0])
    # The same payload over REST.
    rest = requests.post(f"{base_url}/collections/{collection_name}/points", json={"ids": [1]}).json()
    assert rest["result"][0]["payload"] == {"city": "Berlin", "n": 1}

    berlin = models.Filter(must=[models.FieldCondition(key="city", match=models.MatchValue(value="Berlin"))])
    hits = gclient.query_points(collection_name, query=[1.0, 0.0, 0.0, 0.0], limit=2, with_payload=True).points
    assert [h.id for h in hits] == [1, 2]
    assert hits[0].payload["city"] == "Berlin"
    hits = gclient.query_points(collection_name, query=[1.0, 0.0, 0.0, 0.0], query_filter=berlin).points
    assert sorted(h.id for h in hits) == [1, 3]
    hits = gclient.query_points(collection_name, query=1, limit=1).points
    assert [h.id for h in hits] == [2]
    ranged = models.Filter(must=[models.FieldCondition(key="n", range=models.Range(gt=1.5, lte=3))])
    assert gclient.count(collection_name, count_filter=ranged).count == 2
    assert gclient.count(collection_name).count == 4

    page, offset = gclient.scroll(collection_name, limit=3)
    assert len(page) == 3 and offset is not None
    rest_page, end = gclient.scroll(collection_name, limit=3, offset=offset)
    assert len(rest_page) == 1 and end is None

    gclient.set_payload(collection_name, payload={"tag": "x"}, points=[1], wait=True)
    gclient.delete_payload(collection_name, keys=["n"], points=[1], wait=True)
    assert gclient.retrieve(collection_name, ids=[1])[0].payload == {"city": "Berlin", "tag": "x"}
    gclient.overwrite_payload(collection_name, payload={"only": 1}, points=[1], wait=True)
    assert gclient.retrieve(collection_name, ids=[1])[0].payload == {"only": 1}
    gclient.clear_payload(collection_name, points_selector=[1], wait=True)
    assert gclient.retrieve(collection_name, ids=[1])[0].payload == {}
    # Point 1 lost its city with its payload: only point 3 is left in Berlin.
    gclient.delete(collection_name, points_selector=models.FilterSelector(filter=berlin), wait=True)
    assert gclient.count(collection_name).count == 3
    assert gclient.retrieve(collection_name, ids=[3]) == []


def test_snapshots(gclient, collection_name):
    make_collection(gclient, collection_name)
    gclient.upsert(collection_name, points=POINTS, wait=True)
    snap = gclient.create_snapshot(collection_name)
    assert snap.size > 0 and snap.name.endswith(".snapshot")
    assert [s.name for s in gclient.list_snapshots(collection_name)] == [snap.name]
    gclient.delete_snapshot(collection_name, snap.name)
    assert gclient.list_snapshots(collection_name) == []
    full = gclient.create_full_snapshot()
    assert full.name in [s.name for s in gclient.list_full_snapshots()]
    gclient.delete_full_snapshot(full.name)
    assert full.name not in [s.name for s in gclient.list_full_snapshots()]


def test_errors_carry_grpc_codes(gclient, collection_name):
    with pytest.raises(grpc.RpcError) as missing:
        gclient.get_collection("no_such_collection_here")
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert "doesn't exist" in missing.value.details()
    make_collection(gclient, collection_name)
    with pytest.raises(grpc.RpcError) as wrong:
        gclient.upsert(collection_name, points=[models.PointStruct(id=1, vector=[1.0, 2.0])], wait=True)
    assert wrong.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
def test_api_keys_over_grpc(node_factory):
    keyed = node_factory(extra_env={
        "QDRANT__SERVICE__API_KEY": "py-full",
        "QDRANT__SERVICE__READ_ONLY_API_KEY": "py-read",
    })
    full = grpc_client(keyed, api_key="py-full")
    read = grpc_client(keyed, api_key="py-read")
    anonymous = grpc_client(keyed)
    make_collection(full, "keyed")
    full.upsert("keyed", points=POINTS, wait=True)
    assert read.count("keyed").count == 4
    with pytest.raises(grpc.RpcError) as denied:
        read.upsert("keyed", points=POINTS[:1], wait=True)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as unauthenticated:
        anonymous.count("keyed")
    assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # REST with the python client's own key handling agrees.
    rest_read = QdrantClient(url=keyed.base_url, api_key="py-read", timeout=CLIENT_TIMEOUT_S, check_compatibility=False)
    assert rest_read.count("keyed").count == 4
    with pytest.raises(UnexpectedResponse) as forbidden:
        rest_read.delete_collection("keyed")
    assert forbidden.value.status_code == 403
    for c in (full, read, anonymous, rest_read):
        c.close()
