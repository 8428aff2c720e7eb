"""``python app.py --share``: Gradio's public share link to the whole app.

Gradio's own ``launch(share=True)`` does not apply to an app mounted in
FastAPI, so the tunnel is opened here with Gradio's networking API once
uvicorn listens: the share server (``*.gradio.live``) forwards to the local
port, which serves the login page, the app and the share-link pages alike.

It needs the internet. Without it the attempt fails at the first request, a
Swedish message goes to stderr, and the local app carries on as if
``--share`` had not been given.
"""

from __future__ import annotations

import logging
import secrets
import sys
import threading
import time
from typing import Protocol
from urllib.parse import urlsplit

from pipeline.errors import PedagogiskError

log = logging.getLogger(__name__)

FAILED_MESSAGE = (
    "Kunde inte skapa en publik länk: Gradios delningstjänst gick inte att nå"
    " (ingen internetanslutning, eller så blockeras den). Appen fortsätter"
    " lokalt på {local}."
)
WAIT_STEP_S = 0.1


class TunnelError(PedagogiskError):
    """The share server could not be reached or refused the tunnel."""

    status = 502


class _Server(Protocol):
    started: bool
    should_exit: bool


def open_when_started(server: _Server, host: str, port: int) -> threading.Thread:
    """Open the public link in the background once ``server`` is listening."""
    thread = threading.Thread(
        target=_open_and_report,
        args=(server, host, port),
        name="share-tunnel",
        daemon=True,
    )
    thread.start()
    return thread


def open_tunnel(host: str, port: int) -> str:
    """The public https address now forwarding to ``host:port``."""
    from gradio import networking

    local_host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    started = time.monotonic()
    log.info("opening the share tunnel for %s:%d", local_host, port)
    try:
        address = networking.setup_tunnel(
            local_host=local_host,
            local_port=port,
            share_token=secrets.token_urlsafe(32),
            share_server_address=None,
            share_server_tls_certificate=None,
        )
    except Exception as exc:
        log.warning(
            "share tunnel failed after %.2f s: %s", time.monotonic() - started, exc
        )
        local = f"http://{local_host}:{port}/login"
        raise TunnelError(FAILED_MESSAGE.format(local=local)) from exc

    # The share server answers with http; the default server serves https.
    public = "https://" + (urlsplit(address).netloc or address)
    log.info("share tunnel open in %.2f s", time.monotonic() - started)
    return public


def _open_and_report(server: _Server, host: str, port: int) -> None:
    while not server.started:
        if server.should_exit:
            return
        time.sleep(WAIT_STEP_S)
    try:
        public = open_tunnel(host, port)
    except TunnelError as exc:
        print(f"fel: {exc.message}", file=sys.stderr, flush=True)
        return
    print(
        f"PedagogiskDialog: publik länk {public}/login (gäller högst en vecka;"
        " alla med länken kommer till inloggningen)",
        flush=True,
    )
