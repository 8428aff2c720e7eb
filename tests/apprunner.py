"""A real app process on loopback, real users, and a small tus client.

Shared by the app-level tests (``tests/web``) and the browser tests
(``tests/browser``): both start ``python app.py`` in a child process on a free
port, with the tiny English model and a data directory of their own.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
PASSWORDS = {"admin": "admin-lösen-1", "anna": "annas-lösen-1", "bert": "berts-lösen-1"}


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningApp:
    """The app in its child process: where it answers and where it keeps data."""

    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    log: Path

    @contextlib.contextmanager
    def login(self, name: str) -> Iterator[httpx.Client]:
        """An HTTP client holding ``name``'s session and CSRF cookies."""
        with httpx.Client(base_url=self.url, timeout=30) as client:
            answer = client.post(
                "/login", data={"username": name, "password": PASSWORDS[name]}
            )
            assert answer.status_code == 303, answer.text
            yield client

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the app's log, for a failing test's message."""
        return self.log.read_text(errors="replace")[-chars:]


def app_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a test app: tiny English model, 15 s segments."""
    return {
        **os.environ,
        "PD_DATA_DIR": str(data_dir),
        "PD_MODEL": "tiny.en",
        "PD_LANGUAGE": "en",
        "PD_SEGMENT_SECONDS": "15",
        "PD_ADMIN_PASSWORD": PASSWORDS["admin"],
        "PD_LOG_LEVEL": "INFO",
        **extra,
    }


def add_users(env: dict[str, str]) -> None:
    """Create anna and bert through the real CLI, with their ``PASSWORDS``."""
    for name in ("anna", "bert"):
        subprocess.run(
            [sys.executable, "-m", "web.accounts", "add-user", name],
            input=PASSWORDS[name] + "\n",
            text=True,
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
        )


def start_app(data_dir: Path, port: int, env: dict[str, str]) -> RunningApp:
    """Start ``python app.py`` and return once ``/healthz`` answers."""
    log = data_dir.parent / f"app-{port}.log"
    with log.open("ab") as sink:
        process = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(log.read_text()[-3000:])
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return RunningApp(url, data_dir, process, env, log)
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("the app did not start:\n" + log.read_text()[-3000:])


def stop_app(app: RunningApp) -> None:
    """SIGTERM, then SIGKILL if the app has not stopped within 20 s."""
    app.process.terminate()
    try:
        app.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        app.process.kill()
        app.process.wait()


@contextlib.contextmanager
def app_with_users(data_dir: Path, **extra_env: str) -> Iterator[RunningApp]:
    """A started app with anna and bert, stopped when the block ends."""
    env = app_env(data_dir, **extra_env)
    add_users(env)
    app = start_app(data_dir, free_port(), env)
    try:
        yield app
    finally:
        stop_app(app)


def tus_upload(
    client: httpx.Client, source: Path, *, engine: str = "local", chunk: int = 1 << 20
) -> str:
    """Upload a file the way the browser does; the upload's URL path."""
    metadata = ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}"
        for key, value in {"filename": source.name, "engine": engine}.items()
    )
    headers = tus_headers(client)
    created = client.post(
        "/api/uploads/",
        headers={
            **headers,
            "Upload-Length": str(source.stat().st_size),
            "Upload-Metadata": metadata,
        },
    )
    assert created.status_code == 201, created.text
    location = created.headers["Location"]
    data = source.read_bytes()
    offset = 0
    while offset < len(data):
        sent = client.patch(
            location,
            content=data[offset : offset + chunk],
            headers={
                **headers,
                "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert sent.status_code == 204, sent.text
        offset = int(sent.headers["Upload-Offset"])
    return location


def tus_headers(client: httpx.Client) -> dict[str, str]:
    """The headers every tus request of a signed-in client needs."""
    return {
        "Tus-Resumable": "1.0.0",
        "X-CSRF-Token": client.cookies.get("pd_csrf") or "",
    }


def wait_for_transcript(
    client: httpx.Client | None, app: RunningApp, title: str, timeout: float = 120
) -> dict[str, object]:
    """Poll the database until the recording's transcript is done or failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.closing(sqlite3.connect(app.data_dir / "pd.sqlite3")) as conn:
            conn.row_factory = sqlite3.Row
            row = conn.execute(
                "SELECT r.id AS recording_id, t.id AS transcript_id, t.state, t.error"
                " FROM recordings r JOIN transcripts t ON t.recording_id = r.id"
                " WHERE r.title = ? ORDER BY t.created_at DESC LIMIT 1",
                (title,),
            ).fetchone()
        if row and row["state"] in ("done", "failed"):
            return dict(row)
        time.sleep(0.5)
    raise AssertionError(f"transcript of {title} not done in {timeout} s")
