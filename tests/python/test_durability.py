"""Durability: writes acknowledged with wait=true survive kill -9 and a restart
on the same dirs. Each test runs its own node."""

from qdrant_client import models

from helpers import assert_vector_close, rand_vectors, scroll_all

UUID_A = "5c56c793-69f3-4fbf-87e6-c4bf54c28c26"


def state(client, name):
    """(id, payload, vector) of every point, and the collection's vector config."""
    points = scroll_all(client, name, page=64, with_payload=True, with_vectors=True)
    info = client.get_collection(name)
    return {p.id: (p.payload, p.vector) for p in points}, info.config.params.vectors


def assert_same_state(after, before):
    points_after, cfg_after = after
    points_before, cfg_before = before
    assert cfg_after == cfg_before
    assert set(points_after) == set(points_before), (
        f"lost {set(points_before) - set(points_after)}, gained {set(points_after) - set(points_before)}"
    )
    for pid, (payload, vector) in points_before.items():
        assert points_after[pid][0] == payload, f"payload of {pid}"
        if isinstance(vector, dict):
            assert set(points_after[pid][1]) == set(vector)
            for k in vector:
                assert_vector_close(points_after[pid][1][k], vector[k])
        else:
            assert_vector_close(points_after[pid][1], vector)


def test_points_survive_kill_9(fresh_node):
    client = fresh_node.client(check_compatibility=False)
    name = "durable"
    client.create_collection(name, vectors_config=models.VectorParams(size=6, distance=models.Distance.EUCLID))
    vectors = rand_vectors(11, 300, 6)
    for start in range(0, 300, 50):  # several acknowledged requests, list and batch forms
        chunk = range(start, start + 50)
        if start % 100 == 0:
            client.upsert(name, wait=True, points=[
                models.PointStruct(id=i + 1, vector=vectors[i], payload={"i": i + 1, "tag": f"t{i % 7}"}) for i in chunk
            ])
        else:
            client.upsert(name, wait=True, points=models.Batch(
                ids=[i + 1 for i in chunk], vectors=[vectors[i] for i in chunk],
                payloads=[{"i": i + 1, "tag": f"t{i % 7}"} for i in chunk],
            ))
    client.upsert(name, wait=True, points=[models.PointStruct(id=UUID_A, vector=[1, 2, 3, 4, 5, 6], payload={"u": 1})])
    # later operations of every kind must survive too
    client.set_payload(name, payload={"extra": {"x": 1}}, points=[1, 2, 3], wait=True)
    client.overwrite_payload(name, payload={"only": True}, points=[4], wait=True)
    client.delete_payload(name, keys=["tag"], points=[5], wait=True)
    client.clear_payload(name, points_selector=[6], wait=True)
    client.delete(name, points_selector=models.PointIdsList(points=[7, 8, 9]), wait=True)
    client.upsert(name, wait=True, points=[models.PointStruct(id=10, vector=[0, 0, 0, 0, 0, 1], payload={"new": 1})])

    before = state(client, name)
    assert len(before[0]) == 298
    hits_before = client.query_points(name, query=vectors[100], limit=5).points

    fresh_node.restart(hard=True)  # SIGKILL, same dirs and ports
    client = fresh_node.client(check_compatibility=False)

    after = state(client, name)
    assert_same_state(after, before)
    assert client.count(name, exact=True).count == 298
    assert client.get_collection(name).points_count == 298
    hits_after = client.query_points(name, query=vectors[100], limit=5).points
    assert [(h.id, round(h.score, 4)) for h in hits_after] == [(h.id, round(h.score, 4)) for h in hits_before]


def test_collections_and_aliases_survive_kill_9(fresh_node):
    client = fresh_node.client(check_compatibility=False)
    client.create_collection("keep_a", vectors_config=models.VectorParams(size=2, distance=models.Distance.COSINE),
                             shard_number=2, on_disk_payload=False)
    client.create_collection("keep_b", vectors_config={
        "img": models.VectorParams(size=3, distance=models.Distance.DOT),
        "txt": models.VectorParams(size=2, distance=models.Distance.MANHATTAN),
    })
    client.create_collection("dropped", vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    client.delete_collection("dropped")
    client.update_collection_aliases(change_aliases_operations=[
        models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name="keep_a", alias_name="alias_a")),
    ])
    client.update_collection("keep_a", optimizers_config=models.OptimizersConfigDiff(indexing_threshold=4321))
    client.upsert("keep_b", points=[models.PointStruct(id=1, vector={"img": [1, 2, 3], "txt": [4, 5]}, payload={"k": 1})])
    before_b = state(client, "keep_b")

    fresh_node.restart(hard=True)
    client = fresh_node.client(check_compatibility=False)

    names = {c.name for c in client.get_collections().collections}
    assert names == {"keep_a", "keep_b"}
    a = client.get_collection("keep_a")
    assert (a.config.params.vectors.size, a.config.params.vectors.distance) == (2, models.Distance.COSINE)
    assert a.config.params.shard_number == 2
    assert a.config.params.on_disk_payload is False
    assert a.config.optimizer_config.indexing_threshold == 4321
    assert {(x.alias_name, x.collection_name) for x in client.get_aliases().aliases} == {("alias_a", "keep_a")}
    assert_same_state(state(client, "keep_b"), before_b)


def test_two_crash_cycles(fresh_node):
    client = fresh_node.client(check_compatibility=False)
    name = "cycles"
    client.create_collection(name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    client.upsert(name, points=[models.PointStruct(id=i, vector=[i, 1], payload={"gen": 1}) for i in range(1, 21)])
    fresh_node.restart(hard=True)
    client = fresh_node.client(check_compatibility=False)
    assert client.count(name).count == 20
    # writes after a recovery are durable as well
    client.upsert(name, points=[models.PointStruct(id=i, vector=[i, 2], payload={"gen": 2}) for i in range(15, 31)])
    client.delete(name, points_selector=models.PointIdsList(points=[1, 2]))
    before = state(client, name)
    fresh_node.restart(hard=True)
    client = fresh_node.client(check_compatibility=False)
    after = state(client, name)
    assert_same_state(after, before)
    assert sorted(after[0]) == list(range(3, 31))
    assert after[0][20][0] == {"gen": 2} and after[0][3][0] == {"gen": 1}


def test_graceful_restart_keeps_data(fresh_node):
    client = fresh_node.client(check_compatibility=False)
    name = "graceful"
    client.create_collection(name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    client.upsert(name, points=[models.PointStruct(id=i, vector=[i, 0], payload={"i": i}) for i in range(1, 11)])
    before = state(client, name)
    fresh_node.restart(hard=False)  # SIGTERM
    client = fresh_node.client(check_compatibility=False)
    assert_same_state(state(client, name), before)
