"""Small helpers shared by the tests: raw HTTP with envelope checks, plain-python
distances and expected neighbours, bounded polling."""

import json
import math
import random
import time
from numbers import Real

import requests

HTTP_TIMEOUT_S = 10
SCORE_TOL = 1e-4


# ---------------------------------------------------------------- raw HTTP

def http(method: str, base_url: str, path: str, body=None, raw: bytes | str | None = None, **kwargs):
    """One request; `body` is sent as JSON, `raw` as-is with a JSON content type."""
    headers = kwargs.pop("headers", {})
    if raw is not None:
        headers.setdefault("Content-Type", "application/json")
        return requests.request(method, base_url + path, data=raw, headers=headers,
                                timeout=HTTP_TIMEOUT_S, **kwargs)
    return requests.request(method, base_url + path, json=body, headers=headers,
                            timeout=HTTP_TIMEOUT_S, **kwargs)


def is_number(x) -> bool:
    return isinstance(x, Real) and not isinstance(x, bool)


def ok_result(resp, code: int = 200):
    """Assert a success envelope {"result", "status": "ok", "time": number}; return result."""
    assert resp.status_code == code, f"{resp.request.method} {resp.request.url} -> {resp.status_code}: {resp.text[:500]}"
    body = resp.json()
    assert body.get("status") == "ok", body
    assert "result" in body, body
    assert is_number(body.get("time")), f"time must be a number: {body!r}"
    return body["result"]


def error_message(resp, codes) -> str:
    """Assert an error envelope {"status": {"error": str}, "time": number} with a status in `codes`."""
    codes = (codes,) if isinstance(codes, int) else tuple(codes)
    assert resp.status_code in codes, (
        f"{resp.request.method} {resp.request.url} -> {resp.status_code} (want one of {codes}): {resp.text[:500]}"
    )
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError(f"error body is not JSON: {resp.text[:500]!r}")
    assert isinstance(body.get("status"), dict), f"status must be an object: {body!r}"
    msg = body["status"].get("error")
    assert isinstance(msg, str) and msg.strip(), f"status.error must be a non-empty string: {body!r}"
    assert is_number(body.get("time")), f"time must be a number: {body!r}"
    return msg


# ---------------------------------------------------------------- vectors

def rand_vectors(seed: int, count: int, dim: int) -> list[list[float]]:
    rng = random.Random(seed)
    return [[round(rng.uniform(-1, 1), 4) for _ in range(dim)] for _ in range(count)]


def dot(a, b) -> float:
    return sum(x * y for x, y in zip(a, b))


def norm(a) -> list[float]:
    n = math.sqrt(dot(a, a))
    return [x / n for x in a] if n > 0 else list(a)


def euclid(a, b) -> float:
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))


def manhattan(a, b) -> float:
    return sum(abs(x - y) for x, y in zip(a, b))


def score(distance: str, query, vector) -> float:
    """The score Qdrant reports for `vector` against `query`."""
    if distance == "Cosine":
        return dot(norm(query), norm(vector))
    if distance == "Dot":
        return dot(query, vector)
    if distance == "Euclid":
        return euclid(query, vector)
    if distance == "Manhattan":
        return manhattan(query, vector)
    raise ValueError(distance)


def higher_is_better(distance: str) -> bool:
    return distance in ("Cosine", "Dot")


def ranked(distance: str, query, points: dict) -> list[tuple]:
    """All (id, score) of `points` {id: vector}, best first."""
    scored = [(pid, score(distance, query, vec)) for pid, vec in points.items()]
    scored.sort(key=lambda t: t[1], reverse=higher_is_better(distance))
    return scored


def assert_same_ranking(got: list[tuple], want: list[tuple], tol: float = SCORE_TOL) -> None:
    """`got`/`want`: lists of (id, score). Same ids in the same order, scores within tol."""
    assert [g[0] for g in got] == [w[0] for w in want], f"ids differ:\n got  {got}\n want {want}"
    for (gid, gs), (_, ws) in zip(got, want):
        assert math.isclose(gs, ws, rel_tol=tol, abs_tol=tol), f"score of {gid}: got {gs}, want {ws}"


def assert_vector_close(got, want, tol: float = 1e-5) -> None:
    assert got is not None, "vector missing"
    assert len(got) == len(want), f"vector length {len(got)} != {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        assert math.isclose(g, w, rel_tol=tol, abs_tol=tol), f"component {i}: got {g}, want {w}"


# ---------------------------------------------------------------- misc

def poll(fn, timeout: float = 10.0, interval: float = 0.05):
    """Call fn() until it returns a truthy value or `timeout` passes; return the last value."""
    deadline = time.monotonic() + timeout
    value = fn()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = fn()
    return value


def scroll_all(client, collection: str, page: int = 100, max_pages: int = 1000, **kwargs) -> list:
    """Every point of a collection via offset paging (bounded)."""
    out, offset = [], None
    for _ in range(max_pages):
        points, offset = client.scroll(collection, limit=page, offset=offset, **kwargs)
        out.extend(points)
        if offset is None:
            return out
    raise AssertionError(f"scroll of {collection} did not end within {max_pages} pages")


def dumps(x) -> str:
    return json.dumps(x, sort_keys=True)


# ---------------------------------------------------------------- whole-collection state

def all_points(client, collection: str) -> dict:
    """{id: (payload, vector)} of every point of a collection, read through the client."""
    points = scroll_all(client, collection, page=256, with_payload=True, with_vectors=True)
    out = {p.id: (p.payload, p.vector) for p in points}
    assert len(out) == len(points), f"scroll of {collection} returned some point twice"
    return out


def assert_same_points(got: dict, want: dict, what: str = "") -> None:
    """Exactly the same ids, payloads and vectors (as returned by all_points)."""
    missing, extra = set(want) - set(got), set(got) - set(want)
    assert not missing and not extra, (
        f"{what}: {len(missing)} points missing (e.g. {sorted(map(str, missing))[:5]}), "
        f"{len(extra)} unexpected (e.g. {sorted(map(str, extra))[:5]})"
    )
    differ = [pid for pid in want if got[pid] != want[pid]]
    assert not differ, (
        f"{what}: {len(differ)} of {len(want)} points differ; e.g. {differ[0]!r}:\n"
        f" got  {got[differ[0]]!r}\n want {want[differ[0]]!r}"
    )


# ---------------------------------------------------------------- snapshot sources

class SnapshotHttpServer:
    """A real HTTP server on 127.0.0.1 serving `files` {path: bytes} as snapshot sources.

    With `cut_after=n` a GET announces the full length but sends only n bytes and
    closes the connection. With `stall_after=n` a GET sends its headers and the first n bytes, then waits
    (at most `stall_timeout` s) until `release()` before sending the rest, so that a
    recovery reading from it is observably in progress. Use as a context manager.
    """

    def __init__(self, files: dict, stall_after: int | None = None, stall_timeout: float = 30.0,
                 cut_after: int | None = None):
        import http.server
        import threading

        self.files = dict(files)
        self.requests: list[str] = []
        self.headers: list[dict] = []  # request headers, lower-case names
        self.cut_after = cut_after  # announce the full length, send this many bytes, close
        self.stall_after = stall_after
        self.stall_timeout = stall_timeout
        self.released = threading.Event()
        self.stalled = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.requests.append(self.path)
                outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                body = outer.files.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "9")
                    self.end_headers()
                    self.wfile.write(b"not found")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    if outer.cut_after is not None:
                        self.wfile.write(body[: outer.cut_after])
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    if outer.stall_after is not None:
                        self.wfile.write(body[: outer.stall_after])
                        self.wfile.flush()
                        outer.stalled.set()
                        outer.released.wait(outer.stall_timeout)
                        self.wfile.write(body[outer.stall_after:])
                    else:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def release(self) -> None:
        self.released.set()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.release()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
