"""Collections: create / get / list / exists / update / delete, through the client and raw HTTP."""

import pytest
from qdrant_client import models
from qdrant_client.http.exceptions import UnexpectedResponse

from helpers import error_message, http, ok_result, poll

DISTANCES = [models.Distance.COSINE, models.Distance.EUCLID, models.Distance.DOT, models.Distance.MANHATTAN]


@pytest.mark.parametrize("distance", DISTANCES, ids=[d.value for d in DISTANCES])
def test_create_and_get_single_vector(client, collection_name, distance):
    assert client.create_collection(collection_name, vectors_config=models.VectorParams(size=7, distance=distance)) is True
    info = client.get_collection(collection_name)
    assert info.status == models.CollectionStatus.GREEN
    assert info.optimizer_status == models.OptimizersStatusOneOf.OK
    assert info.points_count == 0
    vectors = info.config.params.vectors
    assert isinstance(vectors, models.VectorParams), vectors
    assert vectors.size == 7
    assert vectors.distance == distance


def test_create_named_vectors(client, collection_name):
    client.create_collection(
        collection_name,
        vectors_config={
            "image": models.VectorParams(size=4, distance=models.Distance.DOT),
            "text": models.VectorParams(size=3, distance=models.Distance.EUCLID),
        },
    )
    vectors = client.get_collection(collection_name).config.params.vectors
    assert isinstance(vectors, dict), vectors
    assert set(vectors) == {"image", "text"}
    assert (vectors["image"].size, vectors["image"].distance) == (4, models.Distance.DOT)
    assert (vectors["text"].size, vectors["text"].distance) == (3, models.Distance.EUCLID)


def test_create_params_are_stored(client, base_url, collection_name):
    client.create_collection(
        collection_name,
        vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE),
        shard_number=2,
        replication_factor=2,
        write_consistency_factor=1,
        on_disk_payload=False,  # Qdrant's default is true
    )
    params = client.get_collection(collection_name).config.params
    assert params.shard_number == 2
    assert params.replication_factor == 2
    assert params.write_consistency_factor == 1
    assert params.on_disk_payload is False

    raw = ok_result(http("GET", base_url, f"/collections/{collection_name}"))
    p = raw["config"]["params"]
    assert (p["shard_number"], p["replication_factor"], p["write_consistency_factor"], p["on_disk_payload"]) == (2, 2, 1, False)


def test_create_on_disk_payload_true_is_stored(client, collection_name):
    client.create_collection(
        collection_name,
        vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT),
        on_disk_payload=True,
    )
    assert client.get_collection(collection_name).config.params.on_disk_payload is True


def test_get_collection_raw_shape(base_url, collection_name):
    r = http("PUT", base_url, f"/collections/{collection_name}", {"vectors": {"size": 3, "distance": "Euclid"}})
    assert ok_result(r) is True
    info = ok_result(http("GET", base_url, f"/collections/{collection_name}"))
    assert info["status"] == "green"
    assert info["optimizer_status"] == "ok"
    assert isinstance(info["segments_count"], int)
    assert info["points_count"] == 0
    assert isinstance(info["payload_schema"], dict)
    cfg = info["config"]
    assert cfg["params"]["vectors"]["size"] == 3
    assert cfg["params"]["vectors"]["distance"] == "Euclid"
    for key in ("m", "ef_construct", "full_scan_threshold"):
        assert isinstance(cfg["hnsw_config"][key], int), cfg["hnsw_config"]
    for key in ("default_segment_number", "flush_interval_sec"):
        assert isinstance(cfg["optimizer_config"][key], int), cfg["optimizer_config"]


def test_points_count_follows_upserts(client, collection_name):
    client.create_collection(collection_name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    client.upsert(collection_name, points=[models.PointStruct(id=i, vector=[i, 1.0]) for i in range(1, 6)])
    assert client.get_collection(collection_name).points_count == 5


def test_list_collections(client, collection_name):
    other = collection_name + "_b"
    for name in (collection_name, other):
        client.create_collection(name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    names = [c.name for c in client.get_collections().collections]
    assert collection_name in names and other in names
    assert len(names) == len(set(names)), f"duplicate names: {names}"
    client.delete_collection(other)
    names = [c.name for c in client.get_collections().collections]
    assert collection_name in names and other not in names


def test_collection_exists(client, base_url, collection_name):
    assert client.collection_exists(collection_name) is False
    client.create_collection(collection_name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    assert client.collection_exists(collection_name) is True
    assert ok_result(http("GET", base_url, f"/collections/{collection_name}/exists")) == {"exists": True}
    assert ok_result(http("GET", base_url, f"/collections/{collection_name}_nope/exists")) == {"exists": False}


def test_update_collection_optimizers(client, collection_name):
    client.create_collection(collection_name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    assert client.update_collection(
        collection_name, optimizers_config=models.OptimizersConfigDiff(indexing_threshold=12345)
    ) is True
    assert client.get_collection(collection_name).config.optimizer_config.indexing_threshold == 12345


def test_update_collection_hnsw(client, collection_name):
    client.create_collection(collection_name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    assert client.update_collection(collection_name, hnsw_config=models.HnswConfigDiff(m=24, ef_construct=123)) is True
    hnsw = client.get_collection(collection_name).config.hnsw_config
    assert (hnsw.m, hnsw.ef_construct) == (24, 123)


def test_update_collection_params(client, collection_name):
    client.create_collection(
        collection_name,
        vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT),
        on_disk_payload=True,
    )
    assert client.update_collection(
        collection_name, collection_params=models.CollectionParamsDiff(on_disk_payload=False)
    ) is True
    assert client.get_collection(collection_name).config.params.on_disk_payload is False


def test_update_collection_raw_patch(base_url, collection_name):
    ok_result(http("PUT", base_url, f"/collections/{collection_name}", {"vectors": {"size": 2, "distance": "Dot"}}))
    r = http("PATCH", base_url, f"/collections/{collection_name}", {"optimizers_config": {"indexing_threshold": 777}})
    assert ok_result(r) is True
    info = ok_result(http("GET", base_url, f"/collections/{collection_name}"))
    assert info["config"]["optimizer_config"]["indexing_threshold"] == 777


def test_update_unknown_collection_is_404(base_url, collection_name):
    r = http("PATCH", base_url, f"/collections/{collection_name}", {"optimizers_config": {"indexing_threshold": 1}})
    error_message(r, 404)


def test_delete_collection(client, collection_name):
    client.create_collection(collection_name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    client.upsert(collection_name, points=[models.PointStruct(id=1, vector=[1.0, 2.0])])
    assert client.delete_collection(collection_name) is True
    assert client.collection_exists(collection_name) is False
    with pytest.raises(UnexpectedResponse) as e:
        client.get_collection(collection_name)
    assert e.value.status_code == 404


def test_delete_then_recreate_starts_empty(client, collection_name):
    client.create_collection(collection_name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    client.upsert(collection_name, points=[models.PointStruct(id=1, vector=[1.0, 2.0])])
    client.delete_collection(collection_name)
    client.create_collection(collection_name, vectors_config=models.VectorParams(size=3, distance=models.Distance.EUCLID))
    info = client.get_collection(collection_name)
    assert info.points_count == 0
    assert info.config.params.vectors.size == 3
    assert client.retrieve(collection_name, ids=[1]) == []


def test_delete_unknown_collection_answers_false(base_url, collection_name):
    # Qdrant: 200 with result false when there was nothing to delete.
    r = http("DELETE", base_url, f"/collections/{collection_name}")
    assert ok_result(r) is False


def test_create_existing_collection_is_rejected(client, base_url, collection_name):
    client.create_collection(collection_name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    r = http("PUT", base_url, f"/collections/{collection_name}", {"vectors": {"size": 5, "distance": "Cosine"}})
    msg = error_message(r, (400, 409))
    assert "exist" in msg.lower(), msg
    vectors = client.get_collection(collection_name).config.params.vectors
    assert (vectors.size, vectors.distance) == (2, models.Distance.DOT)


@pytest.mark.parametrize(
    "body",
    [
        {"vectors": {"size": 4, "distance": "Hamming"}},
        {"vectors": {"size": 0, "distance": "Cosine"}},
        {"vectors": {"size": "four", "distance": "Cosine"}},
        {"vectors": {"size": -3, "distance": "Cosine"}},
        {"vectors": {"size": 4, "distance": "Cosine"}, "shard_number": "two"},
    ],
    ids=["unknown-distance", "zero-size", "string-size", "negative-size", "string-shard-number"],
)
def test_create_with_bad_config_is_rejected(client, base_url, collection_name, body):
    r = http("PUT", base_url, f"/collections/{collection_name}", body)
    error_message(r, (400, 422))
    assert client.collection_exists(collection_name) is False


def test_client_create_get_via_http_match(client, base_url, collection_name):
    client.create_collection(collection_name, vectors_config=models.VectorParams(size=5, distance=models.Distance.MANHATTAN))
    raw = ok_result(http("GET", base_url, f"/collections/{collection_name}"))
    assert raw["config"]["params"]["vectors"]["size"] == 5
    assert raw["config"]["params"]["vectors"]["distance"] == "Manhattan"


def test_status_is_yellow_while_optimizing_and_green_once_settled(client, collection_name):
    # Segments are sealed (then indexed, and merged in pairs up to 20 KB) every 10 KB
    # of vectors: 3000 points of 8 floats are ~94 KB, so background work is certain.
    client.create_collection(
        collection_name,
        vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE),
        optimizers_config=models.OptimizersConfigDiff(indexing_threshold=10, max_segment_size=20),
    )
    for start in range(0, 3000, 500):
        client.upsert(collection_name, points=models.Batch(
            ids=list(range(start, start + 500)),
            vectors=[[float((i * 7 + d) % 13) + 1.0 for d in range(8)] for i in range(start, start + 500)],
        ))
    seen = []

    def green():
        info = client.get_collection(collection_name)
        seen.append(info.status)
        return info.status == models.CollectionStatus.GREEN

    assert poll(green, timeout=120, interval=0.2), f"still {seen[-1]} after 120 s"
    assert set(seen) <= {models.CollectionStatus.GREEN, models.CollectionStatus.YELLOW}, seen
    info = client.get_collection(collection_name)
    assert info.optimizer_status == models.OptimizersStatusOneOf.OK
    # Green means nothing is left to do: every sealed segment carries its index.
    assert info.indexed_vectors_count > 0
    assert info.points_count == 3000
