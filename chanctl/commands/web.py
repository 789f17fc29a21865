"""`chanctl web [NAME]`: print (and on a desktop open) the URL of the daemon's live web view.

Over the unix socket, the daemon is asked to open its loopback TCP listener if it has none
(``POST /v1/web``) and answers with the address and token. With ``--url http://...`` the
address and ``CHANCTL_TOKEN`` are used as they are. The token travels in the URL fragment
(``#token=``), which browsers never send to a server; see ``daemon/http/web.py``.

The daemon remembers that its listener was asked for and opens it again, on the same port, when
it restarts, so an open page reconnects by itself. ``chanctl web --stop`` closes the listener,
cuts the page's connections and forgets that request (``DELETE /v1/web``); with no daemon
running it only forgets, without starting one.

Opening a browser with that URL would put the token on the browser's command line, which other
users can read in /proc. So, as Jupyter does, we open a 0600 redirect file instead, and the
URL itself only reaches the browser through that file.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

import typer

from ..errors import ChanctlError, ChannelNotFound, ConfigError, RequestFailed
from ._common import complete_channels, make_client
from .options import QuietOpt, UrlOpt

if TYPE_CHECKING:
    from ..client import Client

WEB_PATH = "/v1/web"
OPEN_FILE = "web-open.html"


def web(
    name: Annotated[
        str | None,
        typer.Argument(
            metavar="[NAME]",
            help="Open this channel's view directly.",
            autocompletion=complete_channels,
        ),
    ] = None,
    open_: Annotated[
        bool | None,
        typer.Option(
            "--open/--no-open", help="Open a browser (default: when a desktop session is found)."
        ),
    ] = None,
    stop: Annotated[
        bool,
        typer.Option(
            "--stop", help="Close the TCP listener opened for the web view, and keep it closed."
        ),
    ] = False,
    quiet: QuietOpt = False,
    url: UrlOpt = None,
) -> None:
    """Print the URL of the live web view (channel list, or one channel) and open it."""
    if stop:
        _stop(url, quiet)
        return
    client = make_client(url, quiet)
    base, token = _access(client)
    if name is not None:
        try:
            client.info(name)
        except ChannelNotFound:
            if not quiet:
                sys.stderr.write(f"chanctl: channel {name} does not exist yet; the page waits\n")
    page = view_url(base, token, name)
    sys.stdout.write(page + "\n")
    sys.stdout.flush()
    if open_ if open_ is not None else _desktop():
        _open_browser(page, quiet)


def view_url(base: str, token: str, name: str | None) -> str:
    """``BASE/ui/[?channel=NAME]#token=TOKEN`` (BASE without a trailing slash)."""
    query = f"?channel={quote(name, safe='')}" if name else ""
    return f"{base}/ui/{query}#token={quote(token, safe='')}"


def _access(client: Client) -> tuple[str, str]:
    """(base URL, token) of the web view, opening the daemon's TCP listener if needed."""
    from .._core import Request
    from ..transport import Transport

    ep = client.endpoint
    if ep.socket_path is None:  # already talking TCP: the page lives at the same address
        if not ep.token:
            raise ConfigError(
                "the web view needs the daemon's bearer token",
                hint="set CHANCTL_TOKEN (the token file is ~/.config/chanctl/token)",
            )
        client.health()  # fails clearly now rather than in the browser later
        return ep.url, ep.token
    transport = Transport(ep, timeout=10.0)
    try:
        resp = client.send_via(transport, Request("POST", WEB_PATH))
    finally:
        transport.close()
    doc = _json(resp.body)
    if resp.status == 404:
        raise RequestFailed(
            "this daemon has no web view",
            status=404,
            hint="restart it with this version: `chanctl daemon stop && chanctl daemon start`",
        )
    if resp.status != 200 or not isinstance(doc.get("url"), str):
        raise RequestFailed(
            f"the daemon cannot serve the web view: {doc.get('error') or resp.status}",
            status=resp.status,
        )
    return str(doc["url"]).removesuffix("/ui/"), str(doc["token"])


def _stop(url: str | None, quiet: bool) -> None:
    """Close the on-demand listener; never starts a daemon just to close it."""
    from .._core import Request
    from ..client import Client
    from ..errors import DaemonUnavailable
    from ..transport import Transport
    from ._common import Globals

    client = Client(url or Globals.url, autostart=False)
    ep = client.endpoint
    if ep.socket_path is None:
        raise ConfigError(
            "`chanctl web --stop` talks to the daemon over its unix socket",
            hint="run it on the daemon's machine, without --url http://...",
        )
    transport = Transport(ep, timeout=10.0)
    try:
        resp = client.send_via(transport, Request("DELETE", WEB_PATH))
    except DaemonUnavailable:  # nothing is listening: only the next start must not reopen it
        from .. import paths

        paths.web_request_file(Path(ep.socket_path)).unlink(missing_ok=True)
        if not quiet:
            sys.stderr.write("chanctl: no daemon runs; its web view will stay closed\n")
        return
    finally:
        transport.close()
    if resp.status != 204:
        raise RequestFailed(
            f"the daemon cannot close the web view: {_json(resp.body).get('error') or resp.status}",
            status=resp.status,
        )
    if not quiet:
        sys.stderr.write("chanctl: the web view's TCP listener is closed\n")


def _json(body: bytes | None) -> dict[str, object]:
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _desktop() -> bool:
    return sys.platform == "darwin" or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )


def _open_browser(page: str, quiet: bool) -> None:
    """Open ``page`` through a private redirect file, keeping the token off any argv."""
    import html
    import webbrowser

    from .. import paths

    target = paths.runtime_dir() / OPEN_FILE
    try:
        _write_private(target, _redirect_html(html.escape(page, quote=True)))
        opened = webbrowser.open(target.as_uri())
    except (OSError, webbrowser.Error, ChanctlError):
        opened = False
    if not quiet:
        note = "opened it in your browser" if opened else "could not open a browser; open the URL"
        sys.stderr.write(f"chanctl: {note}\n")


def _redirect_html(escaped_url: str) -> str:
    return (
        '<!doctype html><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="0;url={escaped_url}">'
        f'<title>chanctl</title><a href="{escaped_url}">Open the chanctl web view</a>\n'
    )


def _write_private(path: Path, text: str) -> None:
    from .. import paths

    paths.ensure_private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
