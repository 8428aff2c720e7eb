"""``python app.py --share`` without the internet: a clear message, a working app.

The child process gets a proxy on a closed local port for everything but
loopback, so the share server is out of reach here whether or not the
machine has a network, as on a server behind a firewall.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.web.conftest import ROOT, app_env, free_port

CLOSED_PROXY = "http://127.0.0.1:9"
STARTUP_S = 90
MESSAGE = "Kunde inte skapa en publik länk"


def test_share_without_internet_says_so_and_the_app_keeps_running(
    tmp_path: Path,
) -> None:
    port = free_port()
    env = app_env(tmp_path / "data")
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = CLOSED_PROXY
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    stderr = tmp_path / "stderr.txt"
    with stderr.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "app.py", "--share", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        listening = wait_for_health(f"http://127.0.0.1:{port}", process)
        failed = wait_for_text(stderr, MESSAGE, timeout=15)
        told_after_s = failed - listening

        assert told_after_s < 10
        line = next(line for line in stderr.read_text().splitlines() if MESSAGE in line)
        assert line.startswith("fel: ")
        assert f"http://127.0.0.1:{port}/login" in line
        assert process.poll() is None
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.json() == {"status": "ok"}
        login = httpx.get(f"http://127.0.0.1:{port}/login", timeout=5)
        assert login.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=20)


def wait_for_health(url: str, process: subprocess.Popen[bytes]) -> float:
    """When ``/healthz`` first answered (monotonic seconds)."""
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        assert process.poll() is None, "the app stopped"
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return time.monotonic()
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("the app did not start")


def wait_for_text(path: Path, text: str, *, timeout: float) -> float:
    """When ``text`` first appeared in the file (monotonic seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {path.read_text(errors='replace')[-2000:]}")
