"""GET /, /healthz, /livez, /readyz and the client's connect-time version check."""

import warnings

from qdrant_client.common.version_check import get_server_version, is_compatible, parse_version
from qdrant_client.qdrant_remote import QdrantRemote

from helpers import http

CLIENT_VERSION = "1.20.0"


def test_root_has_title_and_version_without_envelope(base_url):
    r = http("GET", base_url, "/")
    assert r.status_code == 200, r.text
    body = r.json()
    # The client reads these at the top level: GET / is not wrapped in {"result": ...}.
    assert isinstance(body.get("title"), str) and body["title"], body
    assert isinstance(body.get("version"), str), body
    major, minor, _ = parse_version(body["version"])
    assert major == 1, body


def test_root_version_is_compatible_with_client(base_url):
    # Exactly what QdrantClient.__init__ runs in its background thread.
    version = get_server_version(base_url, {}, None, 10)
    assert version, "client could not read a server version from GET /"
    assert is_compatible(CLIENT_VERSION, version), (
        f"qdrant-client {CLIENT_VERSION} would warn that server version {version} is incompatible"
    )


def test_client_compatibility_check_does_not_warn(base_url):
    # The very function QdrantClient runs in a thread at connect time.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        QdrantRemote._check_compatibility(base_url, {}, None, 10)
    messages = [str(w.message) for w in caught]
    assert messages == [], messages


def test_client_info_matches_root(client, base_url):
    info = client.info()
    raw = http("GET", base_url, "/").json()
    assert info.title == raw["title"]
    assert info.version == raw["version"]


def test_healthz(base_url):
    r = http("GET", base_url, "/healthz")
    assert r.status_code == 200
    assert r.text.strip(), "empty /healthz body"


def test_livez(base_url):
    r = http("GET", base_url, "/livez")
    assert r.status_code == 200
    assert r.text.strip(), "empty /livez body"


def test_readyz(base_url):
    r = http("GET", base_url, "/readyz")
    assert r.status_code == 200
    assert r.text.strip(), "empty /readyz body"


def test_unknown_path_is_404(base_url):
    r = http("GET", base_url, "/no/such/endpoint")
    assert r.status_code == 404
