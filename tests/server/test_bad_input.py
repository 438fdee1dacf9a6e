"""Bad input never gets a 5xx nor a partial write: wrong types, unknown fields, traversal,
control characters, metric bytes at the wrong offset, a client gone mid-upload."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

from .conftest import Server

OCT = {"Content-Type": "application/octet-stream"}


def test_a_client_gone_mid_upload_leaves_nothing_visible(server: Server, alice: str) -> None:
    data = b"x" * 200_000
    h = hashlib.sha256(data).hexdigest()
    u = urlparse(server.url)
    with socket.create_connection((u.hostname, u.port)) as s:
        s.sendall((f"PUT /api/v1/blobs/{h} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                   f"{alice}\r\nContent-Type: application/octet-stream\r\n"
                   f"Content-Length: {len(data)}\r\n\r\n").encode() + data[:100_000])
        time.sleep(0.3)
    with server.client(alice) as c:
        time.sleep(0.3)
        assert c.head(f"/blobs/{h}").status_code == 404
        assert c.put(f"/blobs/{h}", content=data, headers=OCT).status_code == 201
        assert c.get("/health").status_code == 200


@pytest.mark.parametrize("method,url,kw", [
    ("get", "/runs", {"params": {"folder": "/alice", "page": "x"}}),
    ("get", "/runs", {"params": {"folder": "/alice", "page_size": 10**9}}),
    ("get", "/runs", {"params": {"folder": "relative"}}),
    ("get", "/runs/not-a-run", {}),
    ("get", "/runs/by-path", {"params": {"path": "/"}}),
    ("get", "/runs/by-path", {"params": {"path": "/alice"}}),
    ("get", "/folders", {"params": {"path": "/alice/%2e%2e"}}),
    ("get", "/folders", {"params": {"path": "/alice/\x1b[31m"}}),
    ("post", "/folders", {"json": {"path": "/alice/x", "parents": "maybe"}}),
    ("post", "/folders", {"json": ["not", "an", "object"]}),
    ("post", "/folders/move", {"json": {"src": "/alice", "dst": "/bob/x"}}),
    ("post", "/folders/move", {"json": {"src": "/alice/a", "dst": "/alice/a/b"}}),
    ("put", "/runs/x/metrics", {"params": {"offset": -1}, "content": b"", "headers": OCT}),
    ("put", "/blobs/../../etc/passwd", {"content": b"x", "headers": OCT}),
    ("put", "/blobs/" + "g" * 64, {"content": b"x", "headers": OCT}),
    ("post", "/uploads", {"json": {"sha256": "00", "size": -5}}),
    ("put", "/uploads/nope", {"params": {"offset": 0}, "content": b"x", "headers": OCT}),
    ("get", "/artifacts/x/files/../../etc/passwd", {}),
    ("get", "/runs/x/series/points", {"params": {"type": "t", "name": "n",
                                                  "max_points": 0}}),
])
def test_bad_requests_get_a_4xx_with_a_message(server: Server, alice: str, method: str,
                                               url: str, kw: dict[str, object]) -> None:
    with server.client(alice) as c:
        r = getattr(c, method)(url, **kw)
        assert 400 <= r.status_code < 500, (r.status_code, r.text)
        assert r.json()["detail"] and alice not in r.text


def test_metric_bytes_that_do_not_parse_change_nothing(server: Server, alice: str) -> None:
    with server.client(alice) as c:
        rid = c.post("/runs", json={"folder": "/alice/bad", "meta": {
            "name": "b", "alternative_name": "b_1"}}).json()["id"]
        for body in (b"NOTMAGIC" + bytes(8), b"EMMETRIC\x01\x00\x00\x00\x10\x00\x00\x00" +
                     b"\x10\x00\x00\x00\x05\x00\x00\x00" + bytes(8),
                     b"EMMETRIC\x01\x00\x00\x00\x10\x00\x00\x00\xff\xff"):
            r = c.put(f"/runs/{rid}/metrics", params={"offset": 0}, content=body, headers=OCT)
            assert r.status_code == 400 and "nothing applied" in r.json()["detail"]
        assert c.get(f"/runs/{rid}/metrics/length").json() == {"length": 0}
        assert c.get(f"/runs/{rid}/metrics.bin").content == b""
        assert c.get(f"/runs/{rid}/series").json() == {"series": []}


def test_a_chunked_json_body_over_the_limit_gets_413_and_writes_nothing(
        server: Server, alice: str) -> None:
    from em_server.app import JSON_LIMIT

    def body() -> Iterator[bytes]:  # no Content-Length: sent with chunked transfer
        yield b'{"folder": "/alice/chunked", "make_folder": true, "meta": {"name": "c", ' \
              b'"alternative_name": "c_1", "description": "'
        for _ in range((JSON_LIMIT >> 20) + 1):
            yield b"x" * (1 << 20)
        yield b'"}}'

    with server.client(alice) as c:
        r = c.post("/runs", content=body(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and str(JSON_LIMIT) in r.json()["detail"]
        assert c.get("/folders", params={"path": "/alice/chunked"}).status_code == 404
        assert c.get("/runs/by-path", params={"path": "/alice/chunked/c"}).status_code == 404
        # the same body under the limit, chunked too, is taken
        small = [b'{"folder": "/alice/chunked", "make_folder": true, "meta": {"name": "c", '
                 b'"alternative_name": "c_1"}}']
        r = c.post("/runs", content=iter(small), headers={"Content-Type": "application/json"})
        assert r.status_code == 201, r.text
