"""Telemetry, cluster telemetry and issues through qdrant-client's own generated API
(`client.http.service_api`, `distributed_api`, `beta_api`): every answer must parse into
the client's pydantic models of Qdrant 1.19's schemas (TelemetryData,
DistributedTelemetryData). Metrics text is checked over plain HTTP (the Rust suite,
tests/telemetry.rs, parses it with a Prometheus parser)."""

from qdrant_client import models

from helpers import http, ok_result


def make(client, name, count=5):
    client.create_collection(name, vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
    client.upsert(
        name,
        points=[models.PointStruct(id=i + 1, vector=[1.0, float(i)]) for i in range(count)],
        wait=True,
    )


def test_telemetry_parses_at_every_details_level(client, collection_name):
    make(client, collection_name)
    client.get_collection(collection_name)
    for level in (0, 1, 2, 3):
        data = client.http.service_api.telemetry(details_level=level).result
        assert isinstance(data, models.TelemetryData), data
        assert data.collections.number_of_collections >= 1
        assert data.app is not None and data.app.version
        assert data.cluster is not None and data.cluster.enabled is False
        if level == 0:
            assert data.collections.collections is None
            continue
        listed = data.collections.collections
        if level == 1:
            # Qdrant's aggregated form carries no name.
            assert all(isinstance(c, models.CollectionsAggregatedTelemetry) for c in listed), listed
            assert 5 in {c.vectors for c in listed}
            continue
        mine = [c for c in listed if isinstance(c, models.CollectionTelemetry) and c.id == collection_name]
        assert len(mine) == 1, listed
        assert mine[0].config.params.vectors.size == 2
        assert mine[0].shards[0].local.num_points == 5
    rest = data.requests.rest.responses
    assert rest["GET /collections/{name}"]["200"].count >= 1, rest.keys()


def test_telemetry_anonymized_hides_collection_names(client, collection_name):
    make(client, collection_name, count=1)
    data = client.http.service_api.telemetry(details_level=2, anonymize=True).result
    ids = {c.id for c in data.collections.collections}
    assert collection_name not in ids
    assert all(i.isdigit() for i in ids), ids


def test_cluster_telemetry_parses(client, collection_name):
    make(client, collection_name, count=3)
    data = client.http.distributed_api.cluster_telemetry(details_level=1).result
    assert isinstance(data, models.DistributedTelemetryData), data
    shards = data.collections[collection_name].shards
    assert shards[0].replicas[0].state == models.ReplicaState.ACTIVE
    assert shards[0].replicas[0].num_points == 3


def test_metrics_text_and_issues(client, base_url, collection_name):
    make(client, collection_name, count=2)
    # Not through `service_api.metrics()`: the generated client decodes every answer as
    # JSON, which fails on Qdrant's Prometheus text just the same.
    r = http("GET", base_url, "/metrics", params={"per_collection": "true"})
    assert r.status_code == 200, r.text
    text = r.text
    assert "# TYPE collections_total gauge" in text
    assert f'collection_points{{id="{collection_name}"}} 2' in text, text
    assert 'rest_responses_total{method="PUT",endpoint="/collections/{name}",status="200"}' in text
    issues = client.http.beta_api.get_issues()
    assert issues["result"] == {"issues": []}, issues
    assert client.http.beta_api.clear_issues().result is True


def test_metrics_content_type(base_url):
    r = http("GET", base_url, "/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4"
    r = http("GET", base_url, "/telemetry", params={"details_level": "x"})
    assert r.status_code == 400, r.text
    assert ok_result(http("GET", base_url, "/issues")) == {"issues": []}
