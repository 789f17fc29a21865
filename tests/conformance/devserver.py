"""Serve the Durable Streams API for the conformance suite, without the daemon's process code.

A stand-in until the real daemon runs the suite (``chanctl daemon start --foreground ...``).
It uses the in-memory store by default; ``--store local`` runs the local-disk engine in a fresh
temporary directory instead, so both engines can be checked against the suite.

    python tests/conformance/devserver.py --port 4437 --long-poll-timeout 0.5 [--store local]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from aiohttp import web
from chanctl.daemon.config import FsyncPolicy, Limits, Settings
from chanctl.daemon.http.app import build_app
from chanctl.daemon.service import StreamService
from chanctl.daemon.store.base import ChannelStore
from chanctl.daemon.store.memory import MemoryStore


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Durable Streams dev server for conformance")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4437)
    parser.add_argument("--long-poll-timeout", type=float, default=0.5, metavar="SECONDS")
    parser.add_argument("--store", choices=("memory", "local"), default="memory")
    parser.add_argument("--fsync", default="always", help="local store: always|never|interval:MS")
    return parser.parse_args()


def _make_store(kind: str, settings: Settings) -> ChannelStore:
    if kind == "memory":
        return MemoryStore()
    from chanctl.daemon.store.local import LocalStore

    return LocalStore(settings)


def main() -> None:
    args = _parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="chanctl-devserver-"))
    settings = Settings(
        data_dir=data_dir,
        socket_path=None,
        listen=(args.host, args.port),
        no_auth=True,
        fsync=FsyncPolicy.parse(args.fsync),
        limits=replace(Limits(), long_poll_timeout_s=args.long_poll_timeout),
        store=args.store,
    )
    store = _make_store(args.store, settings)
    app = build_app(StreamService(store, settings), settings)

    async def start_store(_: web.Application) -> None:
        await store.start()

    async def stop_store(_: web.Application) -> None:
        await store.stop()
        shutil.rmtree(data_dir, ignore_errors=True)

    app.on_startup.insert(0, start_store)
    app.on_cleanup.append(stop_store)
    web.run_app(app, host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
