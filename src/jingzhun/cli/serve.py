"""``jingzhun serve``: the REST API (Segment tracking protocol, profiles, recommendations …)."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import sys
from typing import Annotated

import typer

from jingzhun.cli.common import Globals, err, text
from jingzhun.errors import InputError

#: A host name or an IPv4/IPv6 address (letters, digits, '.', '-', ':', '%' for a zone).
_HOST = re.compile(r"[A-Za-z0-9.:%-]{1,253}")


def serve(
    ctx: typer.Context,
    host: Annotated[
        str | None,
        typer.Option("--host", help="Address to listen on (default [server] host, 127.0.0.1)."),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port", min=0, max=65535, help="Port (default [server] port, 8000; 0: any free)."
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--workers-threads",
            min=1,
            max=64,
            help="Threads answering requests (default [server] threads, 8).",
        ),
    ] = None,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="One JSON line per request.")
    ] = True,
) -> None:
    """Serve the store over HTTP until stopped (Ctrl-C or SIGTERM write everything accepted).

    Every /v1 route needs an API key: jingzhun apikey create --scope ingest|read|admin.
    """
    import uvicorn

    from jingzhun.api import create_app
    from jingzhun.store.store import server_note

    g: Globals = ctx.obj
    ws = g.workspace(create=True)
    settings = ws.settings.server
    updates = {
        k: v for k, v in {"host": host, "port": port, "threads": threads}.items() if v is not None
    }
    ws.settings = ws.settings.model_copy(update={"server": settings.model_copy(update=updates)})
    s = ws.settings.server
    if not _HOST.fullmatch(s.host):
        ws.store.close()
        raise InputError(
            f"--host {s.host[:80]!r} is not a host name or IP address",
            hint="use an address such as 127.0.0.1, ::1 or 0.0.0.0",
        )
    try:
        family = socket.AF_INET6 if ":" in s.host else socket.AF_INET
        # IPPROTO_TCP named: asyncio turns Nagle's algorithm off only on sockets that say they
        # are TCP; with it on, every answer written in two parts waits 40 ms for an ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:
        ws.store.close()
        raise InputError(f"cannot open a socket: {exc.strerror}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((s.host, s.port))
    except (OSError, UnicodeError, ValueError, TypeError) as exc:
        sock.close()
        ws.store.close()
        why = getattr(exc, "strerror", None) or str(exc).splitlines()[0][:80]
        raise InputError(
            f"--host {s.host[:80]!r} --port {s.port}: cannot listen there ({why})",
            hint="pick another --port (0 takes any free one) or a local address",
        ) from exc
    bound = sock.getsockname()[1]
    shown = f"[{s.host}]" if family == socket.AF_INET6 else s.host
    url = f"http://{shown}:{bound}"
    note = server_note(ws.path)
    try:
        note.write_text(json.dumps({"url": url, "pid": os.getpid()}), encoding="utf-8")
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
        logging.getLogger("jingzhun.access").setLevel(
            logging.INFO if access_log else logging.WARNING
        )
        logging.getLogger("jingzhun.server").setLevel(logging.INFO)
        try:
            app = create_app(ws)  # from here on the app owns the store, and closes it
        except BaseException:
            ws.store.close()
            raise
        err.print(text(f"jingzhun serving {ws.path} at {url} (API docs: {url}/docs)"))
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=30,
            timeout_keep_alive=s.keep_alive_seconds,
            lifespan="on",
        )
        # Uvicorn catches SIGTERM and SIGINT for its graceful shutdown, then raises the signal
        # again for the handler it found: with Python's defaults the process would die there,
        # before the note is removed. A stop asked for and carried out is a success (exit 0).
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: None)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        note.unlink(missing_ok=True)
