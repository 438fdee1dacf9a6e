"""A stdlib stand-in of the em server API v1: the subset the client uses, persisted in a
directory so that it survives SIGKILL. It lets the client's tests run where the server's
extra is not installed; the same tests also run against the real server.

    python _standin_server.py DATA PORT KEY USER
"""

from __future__ import annotations

import json
import os
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from em_core._upload import valid_end

DATA = Path(sys.argv[1])
PORT = int(sys.argv[2])
KEY = sys.argv[3]
USER = sys.argv[4]
LOCK = threading.Lock()


def resolved(meta: dict, runs: dict, arts: dict) -> dict:
    """The associations as the server sends them: the server path of each other side."""
    out = {}
    for key, entries in (meta.get("associations") or {}).items():
        out[key] = []
        for e in entries:
            e = {k: v for k, v in e.items() if k != "local"}
            table = runs if e.get("kind") == "run" else arts
            for oid, o in table.items():
                if o["alt"] == e.get("alternative_name"):
                    e.update(id=oid, path=o["path"])
            out[key].append(e)
    return out


def load(name: str) -> dict:
    p = DATA / name
    return json.loads(p.read_text()) if p.exists() else {}


def save(name: str, d: dict) -> None:
    tmp = DATA / (name + ".tmp")
    tmp.write_text(json.dumps(d))
    os.replace(tmp, DATA / name)


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a: object) -> None:
        pass

    def send(self, code: int, body: object = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        self.send_response(code)
        self.send_header("Content-Type", "application/octet-stream" if raw is not None
                         else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n)

    def handle_any(self) -> None:  # noqa: C901 - the stand-in server's route table: one branch per endpoint it answers
        u = urlparse(self.path)
        q = {k: v[0] for k, v in parse_qs(u.query).items()}
        path = u.path[len("/api/v1"):]
        raw = self.body()
        if path == "/health":
            return self.send(200, {"status": "ok"})
        if self.headers.get("Authorization") != f"Bearer {KEY}":
            return self.send(401, {"detail": "invalid or revoked API key"})
        m = self.command
        with LOCK:
            runs = load("runs.json")
            arts = load("arts.json")
            if path == "/whoami":
                return self.send(200, {"user": USER, "key_id": 1})
            if path in ("/runs", "/artifacts") and m == "POST":
                kind = "run" if path == "/runs" else "artifact"
                table = runs if kind == "run" else arts
                b = json.loads(raw)
                meta = b["meta"]
                if kind == "artifact":
                    missing = [o["sha256"] for o in meta["objects"].values()
                               if o["kind"] == "file"
                               and not (DATA / "blobs" / o["sha256"]).exists()]
                    if missing:
                        return self.send(409, {"detail": "missing", "missing": missing})
                for rid, r in table.items():
                    if r["folder"] == b["folder"] and r["alt"] == meta["alternative_name"]:
                        ml = (DATA / "m" / rid).stat().st_size if (DATA / "m" / rid).exists() else 0
                        return self.send(200, {"state": "existing", "id": rid, "path": r["path"],
                                               "metrics_length": ml})
                name = meta["name"]
                if any(r["folder"] == b["folder"] and r["path"].endswith("/" + name)
                       for r in table.values()):
                    name = meta["alternative_name"]
                rid = str(uuid.uuid4())
                table[rid] = {"folder": b["folder"], "alt": meta["alternative_name"],
                              "path": b["folder"] + "/" + name, "meta": meta}
                save("runs.json" if kind == "run" else "arts.json", table)
                return self.send(201, {"state": "created", "id": rid, "path": table[rid]["path"],
                                       "metrics_length": 0})
            if path in ("/runs/by-path", "/artifacts/by-path"):
                table = runs if path.startswith("/runs") else arts
                for rid, r in table.items():
                    if r["path"] == q["path"]:
                        f = DATA / "m" / rid
                        n = f.stat().st_size if f.exists() else 0
                        return self.send(200, {"id": rid, "path": r["path"], "meta": r["meta"],
                                               "status": r["meta"].get("status"),
                                               "metrics_length": n,
                                               "associations": resolved(r["meta"], runs, arts)})
                return self.send(404, {"detail": f"{q['path']!r} not found"})
            parts = path.strip("/").split("/")
            if parts[0] == "runs" and len(parts) >= 3:
                rid = parts[1]
                if rid not in runs:
                    return self.send(404, {"detail": "no run"})
                f = DATA / "m" / rid
                length = f.stat().st_size if f.exists() else 0
                if parts[2] == "meta":
                    runs[rid]["meta"] = json.loads(raw)["meta"]
                    save("runs.json", runs)
                    return self.send(200, {"id": rid})
                if parts[2] == "series":
                    from em_core._metricfile import read_records
                    c = {}
                    for rec in (read_records(f) if f.exists() else []):
                        for k in rec.values:
                            c[(rec.type, k)] = c.get((rec.type, k), 0) + 1
                    return self.send(200, {"series": [{"type": t, "name": n, "count": v}
                                                      for (t, n), v in c.items()]})
                if parts[2] == "metrics.bin":
                    return self.send(200, raw=f.read_bytes() if f.exists() else b"")
                if parts[2] == "metrics" and len(parts) == 4:
                    return self.send(200, {"length": length})
                if parts[2] == "metrics":
                    off = int(q["offset"])
                    if off > length:
                        return self.send(409, {"detail": "gap", "length": length})
                    if off + len(raw) <= length:
                        return self.send(200, {"length": length, "applied": 0})
                    start = 16 if off == 0 else off
                    if valid_end(raw, start, off) != off + len(raw):
                        return self.send(400, {"detail": "bad records"})
                    f.parent.mkdir(exist_ok=True)
                    with open(f, "ab") as fh:
                        fh.write(raw[length - off:])
                    return self.send(200, {"length": off + len(raw), "applied": 1})
            if parts[0] == "uploads":
                ups = load("ups.json")
                if m == "POST" and len(parts) == 1:
                    b = json.loads(raw)
                    uid = str(uuid.uuid4())
                    ups[uid] = {"sha256": b["sha256"], "size": b["size"]}
                    save("ups.json", ups)
                    (DATA / ("u_" + uid)).write_bytes(b"")
                    return self.send(201, {"upload_id": uid, "offset": 0})
                f = DATA / ("u_" + parts[1])
                if m == "PUT":
                    off = int(q["offset"])
                    if off != f.stat().st_size:
                        return self.send(409, {"offset": f.stat().st_size})
                    with open(f, "ab") as fh:
                        fh.write(raw)
                    return self.send(200, {"offset": f.stat().st_size})
                if m == "POST" and parts[2] == "complete":
                    import hashlib
                    if hashlib.sha256(f.read_bytes()).hexdigest() != ups[parts[1]]["sha256"]:
                        return self.send(400, {"detail": "sha mismatch"})
                    (DATA / "blobs").mkdir(exist_ok=True)
                    os.replace(f, DATA / "blobs" / ups[parts[1]]["sha256"])
                    return self.send(201, {"sha256": ups[parts[1]]["sha256"]})
            if parts[0] == "blobs":
                b = DATA / "blobs" / parts[1]
                if m == "HEAD":
                    return self.send(200 if b.exists() else 404)
                b.parent.mkdir(exist_ok=True)
                b.write_bytes(raw)
                return self.send(201, {})
            if parts[0] == "artifacts" and len(parts) >= 4 and parts[2] == "files":
                a = arts.get(parts[1])
                if a is None:
                    return self.send(404, {"detail": "no artifact"})
                o = a["meta"]["objects"][unquote("/".join(parts[3:]))]
                return self.send(200, raw=(DATA / "blobs" / o["sha256"]).read_bytes())
            if path == "/folders":
                return self.send(200, {"path": q["path"], "folders": [], "runs": 0, "artifacts": 0})
            if path == "/runs":
                rs = [{"path": r["path"], "status": r["meta"]["status"],
                       "start_timestamp": r["meta"].get("start_timestamp")}
                      for r in runs.values() if r["folder"] == q["folder"]]
                return self.send(200, {"runs": rs, "total": len(rs)})
            if path == "/artifacts":
                rs = [{"path": r["path"]} for r in arts.values() if r["folder"] == q["folder"]]
                return self.send(200, {"artifacts": rs, "total": len(rs)})
        self.send(404, {"detail": "no such endpoint"})

    do_GET = do_POST = do_PUT = do_HEAD = handle_any


DATA.mkdir(parents=True, exist_ok=True)
ThreadingHTTPServer(("127.0.0.1", PORT), H).serve_forever()
