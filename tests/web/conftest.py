"""A real app process on loopback, real users, and a small tus client."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PASSWORDS = {"admin": "admin-lösen-1", "anna": "annas-lösen-1", "bert": "berts-lösen-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningApp:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    log: Path

    @contextlib.contextmanager
    def login(self, name: str) -> Iterator[httpx.Client]:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            answer = client.post(
                "/login", data={"username": name, "password": PASSWORDS[name]}
            )
            assert answer.status_code == 303, answer.text
            yield client


def app_env(data_dir: Path, **extra: str) -> dict[str, str]:
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
    app.process.terminate()
    try:
        app.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        app.process.kill()
        app.process.wait()


@pytest.fixture(scope="module")
def running_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    data_dir = tmp_path_factory.mktemp("app") / "data"
    env = app_env(data_dir)
    add_users(env)
    app = start_app(data_dir, free_port(), env)
    yield app
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
    return {"Tus-Resumable": "1.0.0", "X-CSRF-Token": client.cookies.get("pd_csrf", "")}


def wait_for_transcript(
    client: httpx.Client, app: RunningApp, title: str, timeout: float = 120
) -> dict[str, object]:
    """Poll the database until the recording's transcript is done."""
    import sqlite3

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(app.data_dir / "pd.sqlite3") as conn:
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
