"""Aliases: create / rename / delete, listing, and using an alias in place of a collection name."""

from qdrant_client import models

from helpers import error_message, http, ok_result


def make(client, name):
    client.create_collection(name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))


def alias_pairs(response):
    return {(a.alias_name, a.collection_name) for a in response.aliases}


def create_alias(client, collection, alias):
    return client.update_collection_aliases(
        change_aliases_operations=[
            models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection, alias_name=alias))
        ]
    )


def test_create_alias_and_list(client, collection_name):
    make(client, collection_name)
    alias = collection_name + "_alias"
    assert create_alias(client, collection_name, alias) is True
    assert (alias, collection_name) in alias_pairs(client.get_aliases())
    assert alias_pairs(client.get_collection_aliases(collection_name)) == {(alias, collection_name)}


def test_collection_aliases_lists_only_its_own(client, collection_name):
    other = collection_name + "_other"
    make(client, collection_name)
    make(client, other)
    create_alias(client, collection_name, collection_name + "_a1")
    create_alias(client, collection_name, collection_name + "_a2")
    create_alias(client, other, other + "_a3")
    assert alias_pairs(client.get_collection_aliases(collection_name)) == {
        (collection_name + "_a1", collection_name),
        (collection_name + "_a2", collection_name),
    }
    assert alias_pairs(client.get_collection_aliases(other)) == {(other + "_a3", other)}


def test_rename_alias(client, collection_name):
    make(client, collection_name)
    old, new = collection_name + "_old", collection_name + "_new"
    create_alias(client, collection_name, old)
    assert client.update_collection_aliases(
        change_aliases_operations=[
            models.RenameAliasOperation(rename_alias=models.RenameAlias(old_alias_name=old, new_alias_name=new))
        ]
    ) is True
    pairs = alias_pairs(client.get_aliases())
    assert (new, collection_name) in pairs
    assert all(a != old for a, _ in pairs)


def test_delete_alias(client, collection_name):
    make(client, collection_name)
    alias = collection_name + "_gone"
    create_alias(client, collection_name, alias)
    assert client.update_collection_aliases(
        change_aliases_operations=[models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))]
    ) is True
    assert all(a != alias for a, _ in alias_pairs(client.get_aliases()))
    assert alias_pairs(client.get_collection_aliases(collection_name)) == set()
    # the collection itself is untouched
    assert client.collection_exists(collection_name) is True


def test_several_actions_in_one_request(client, collection_name):
    make(client, collection_name)
    a, b, c = (collection_name + s for s in ("_x", "_y", "_z"))
    client.update_collection_aliases(
        change_aliases_operations=[
            models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection_name, alias_name=a)),
            models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=collection_name, alias_name=b)),
            models.RenameAliasOperation(rename_alias=models.RenameAlias(old_alias_name=a, new_alias_name=c)),
            models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=b)),
        ]
    )
    assert alias_pairs(client.get_collection_aliases(collection_name)) == {(c, collection_name)}


def test_alias_reassigned_to_another_collection(client, collection_name):
    first, second = collection_name, collection_name + "_2"
    make(client, first)
    make(client, second)
    alias = collection_name + "_live"
    create_alias(client, first, alias)
    # Qdrant's blue/green switch: delete + create in one request
    client.update_collection_aliases(
        change_aliases_operations=[
            models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)),
            models.CreateAliasOperation(create_alias=models.CreateAlias(collection_name=second, alias_name=alias)),
        ]
    )
    assert (alias, second) in alias_pairs(client.get_aliases())
    assert alias_pairs(client.get_collection_aliases(first)) == set()


def test_points_and_search_through_alias(client, collection_name):
    make(client, collection_name)
    alias = collection_name + "_via"
    create_alias(client, collection_name, alias)

    client.upsert(alias, points=[
        models.PointStruct(id=1, vector=[1.0, 0.0], payload={"k": "a"}),
        models.PointStruct(id=2, vector=[0.0, 1.0], payload={"k": "b"}),
    ])
    # written through the alias, visible through the real name and vice versa
    assert client.count(collection_name).count == 2
    client.upsert(collection_name, points=[models.PointStruct(id=3, vector=[1.0, 1.0], payload={"k": "c"})])
    assert client.count(alias).count == 3

    got = client.retrieve(alias, ids=[1, 3])
    assert {p.id: p.payload for p in got} == {1: {"k": "a"}, 3: {"k": "c"}}

    hits = client.query_points(alias, query=[1.0, 0.1], limit=2).points
    assert [h.id for h in hits] == [3, 1]

    points, _ = client.scroll(alias, limit=10)
    assert sorted(p.id for p in points) == [1, 2, 3]

    client.set_payload(alias, payload={"extra": True}, points=[2])
    client.delete(alias, points_selector=models.PointIdsList(points=[1]))
    assert {p.id: p.payload for p in client.retrieve(collection_name, ids=[1, 2])} == {2: {"k": "b", "extra": True}}


def test_get_collection_through_alias(client, collection_name):
    make(client, collection_name)
    alias = collection_name + "_info"
    create_alias(client, collection_name, alias)
    assert client.get_collection(alias).config.params.vectors.size == 2


def test_deleted_alias_no_longer_resolves(client, base_url, collection_name):
    make(client, collection_name)
    alias = collection_name + "_tmp"
    create_alias(client, collection_name, alias)
    client.update_collection_aliases(
        change_aliases_operations=[models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))]
    )
    error_message(http("POST", base_url, f"/collections/{alias}/points/scroll", {"limit": 1}), 404)


def test_alias_to_unknown_collection_is_rejected(client, base_url, collection_name):
    r = http("POST", base_url, "/collections/aliases", {
        "actions": [{"create_alias": {"collection_name": collection_name + "_missing", "alias_name": collection_name}}]
    })
    error_message(r, (400, 404))
    assert all(a != collection_name for a, _ in alias_pairs(client.get_aliases()))


def test_deleting_collection_drops_its_aliases(client, collection_name):
    make(client, collection_name)
    alias = collection_name + "_orphan"
    create_alias(client, collection_name, alias)
    client.delete_collection(collection_name)
    assert all(a != alias for a, _ in alias_pairs(client.get_aliases()))


def test_aliases_raw_shape(client, base_url, collection_name):
    make(client, collection_name)
    alias = collection_name + "_raw"
    r = http("POST", base_url, "/collections/aliases", {
        "actions": [{"create_alias": {"collection_name": collection_name, "alias_name": alias}}]
    })
    assert ok_result(r) is True
    listed = ok_result(http("GET", base_url, f"/collections/{collection_name}/aliases"))
    assert listed == {"aliases": [{"alias_name": alias, "collection_name": collection_name}]}
    everything = ok_result(http("GET", base_url, "/aliases"))
    assert {"alias_name": alias, "collection_name": collection_name} in everything["aliases"]


def test_get_collection_aliases_of_unknown_collection(base_url, collection_name):
    # Qdrant versions differ here: an empty list or a 404; anything else is wrong.
    r = http("GET", base_url, f"/collections/{collection_name}_nope/aliases")
    if r.status_code == 404:
        error_message(r, 404)
    else:
        assert ok_result(r) == {"aliases": []}
