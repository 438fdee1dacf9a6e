"""``em server ...``: start the server and administer users, keys and grants.

Admin commands act on the database directly (``--data DIR`` or ``--db URL``), upgrading it
first; keys are printed once and stored only hashed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone

from sqlalchemy import delete, insert, select, update

from . import db
from .auth import add_key, add_user, check_path


def _engine(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    engine = db.make_engine(db.db_url(args.data, args.db))
    db.upgrade(engine)
    return engine


def _user_id(conn, name: str) -> int:  # type: ignore[no-untyped-def]
    uid = conn.execute(select(db.users.c.id).where(db.users.c.name == name)).scalar()
    if uid is None:
        raise SystemExit(f"em server: no user {name!r}")
    return int(uid)


def _iso(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, timezone.utc).isoformat(
        timespec="seconds")


def main(argv: Sequence[str] | None = None) -> int:  # noqa: C901 - argparse set-up and one branch per sub-command
    """Entry point of ``em server``; returns the exit status."""
    p = argparse.ArgumentParser(prog="em server")
    p.add_argument("--data", default=None, help="data directory (default ./em-server-data)")
    p.add_argument("--db", default=None, help="database URL (postgresql://...)")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="run the server")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8745)
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--objects", default=None,
                   help="artifact bytes in s3://bucket/prefix (default: DATA/objects)")
    s.add_argument("--s3-endpoint", default=None,
                   help="S3 endpoint URL (else EM_S3_ENDPOINT, else AWS_ENDPOINT_URL)")
    u = sub.add_parser("user").add_subparsers(dest="sub", required=True)
    u.add_parser("add").add_argument("name")
    k = sub.add_parser("key").add_subparsers(dest="sub", required=True)
    k.add_parser("add").add_argument("user")
    k.add_parser("list").add_argument("user", nargs="?")
    k.add_parser("revoke").add_argument("id", type=int)
    g = sub.add_parser("grant")
    g.add_argument("folder")
    g.add_argument("user")
    mode = g.add_mutually_exclusive_group(required=True)
    mode.add_argument("--read", action="store_true")
    mode.add_argument("--write", action="store_true")
    r = sub.add_parser("revoke-grant")
    r.add_argument("folder")
    r.add_argument("user")
    # global options are also accepted after the command
    for sp in (s,):
        sp.add_argument("--data", dest="data2", default=None)
        sp.add_argument("--db", dest="db2", default=None)
    args = p.parse_args(argv)
    args.data = getattr(args, "data2", None) or args.data
    args.db = getattr(args, "db2", None) or args.db
    if args.cmd == "start":
        import uvicorn

        if args.data:
            os.environ["EM_SERVER_DATA"] = os.path.abspath(args.data)
        if args.db:
            os.environ["EM_SERVER_DB"] = args.db
        if args.objects:
            os.environ["EM_SERVER_OBJECTS"] = args.objects
        if args.s3_endpoint:
            os.environ["EM_S3_ENDPOINT"] = args.s3_endpoint
        if args.workers < 1:
            raise SystemExit(f"em server: --workers {args.workers}: expected at least 1")
        _engine(args).dispose()  # migrate once, before workers start
        from .storage import store_from_env

        try:
            store = store_from_env()
        except ValueError as e:
            raise SystemExit(f"em server: {e}") from None
        store.prepare()  # the bucket created once, before workers start
        print(f"em server: artifact bytes in {store.describe()}", file=sys.stderr, flush=True)
        uvicorn.run("em_server.app:create_app", factory=True, host=args.host, port=args.port,
                    workers=args.workers, log_level="info")
        return 0
    engine = _engine(args)
    with engine.begin() as conn:
        if args.cmd == "user":
            print(add_user(conn, args.name))
        elif args.cmd == "key" and args.sub == "add":
            print(add_key(conn, _user_id(conn, args.user)))
        elif args.cmd == "key" and args.sub == "list":
            q = select(db.api_keys.c.id, db.users.c.name, db.api_keys.c.created_at,
                       db.api_keys.c.revoked_at).join(
                db.users, db.users.c.id == db.api_keys.c.user_id).order_by(db.api_keys.c.id)
            if args.user:
                q = q.where(db.users.c.name == args.user)
            for kid, name, created, revoked in conn.execute(q):
                print(f"{kid}\t{name}\tcreated {_iso(created)}\trevoked {_iso(revoked)}")
        elif args.cmd == "key" and args.sub == "revoke":
            n = conn.execute(update(db.api_keys).where(db.api_keys.c.id == args.id)
                             .values(revoked_at=db.now())).rowcount
            if not n:
                raise SystemExit(f"em server: no key {args.id}")
        elif args.cmd == "grant":
            folder = _check(args.folder)
            uid = _user_id(conn, args.user)
            conn.execute(delete(db.grants).where((db.grants.c.folder == folder)
                                                 & (db.grants.c.user_id == uid)))
            conn.execute(insert(db.grants).values(folder=folder, user_id=uid, write=args.write))
        elif args.cmd == "revoke-grant":
            uid = _user_id(conn, args.user)
            conn.execute(delete(db.grants).where((db.grants.c.folder == _check(args.folder))
                                                 & (db.grants.c.user_id == uid)))
    return 0


def _check(path: str) -> str:
    from fastapi import HTTPException

    try:
        return check_path(path)
    except HTTPException as e:
        raise SystemExit(f"em server: {e.detail}") from None


if __name__ == "__main__":
    sys.exit(main())
