"""The tus endpoint of pipeline.upload, driven over real HTTP.

Most tests run uvicorn in a thread of the test process. The tests about
restarts and dropped connections run it as a separate process that they kill
with SIGKILL and start again on the same listening socket. The full-disk tests
use the shared ``small_disk`` fixture, a real tmpfs, skipped where mounting is
not permitted.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from pipeline import upload as upload_package
from pipeline.storage import DISK_FULL_MESSAGE
from pipeline.upload import (
    NO_ROOM_MESSAGE,
    UploadStats,
    end_stalled,
    make_upload_router,
    purge_expired,
)

REPO = Path(__file__).resolve().parents[2]
OWNER_HEADER = "X-Test-Owner"
MB = 1024**2

# The server for the tests that kill it: argv is root, commit bytes, socket fd.
SERVER_CODE = """
import socket, sys
from pathlib import Path
import uvicorn
from fastapi import FastAPI
from pipeline.upload import make_upload_router

root = Path(sys.argv[1])

def done(owner, upload_id, path, metadata):
    with open(root / "completions.log", "a") as log:
        log.write(upload_id + "\\n")

app = FastAPI()
app.include_router(
    make_upload_router(
        root / "uploads",
        owner_of=lambda request: request.headers.get("X-Test-Owner", ""),
        on_complete=done,
        reserve_bytes=0,
        commit_bytes=int(sys.argv[2]),
    )
)
sock = socket.socket(fileno=int(sys.argv[3]))
uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
"""


@dataclass
class Completion:
    owner: str
    upload_id: str
    path: Path
    metadata: dict[str, str]
    sha256: str


@dataclass
class Running:
    """A server started by the ``serve`` fixture."""

    url: str
    root: Path
    stats: UploadStats
    completions: list[Completion] = field(default_factory=list)

    def client(self, owner: str = "anna") -> httpx.Client:
        headers = {"Tus-Resumable": "1.0.0", OWNER_HEADER: owner}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start uvicorn in a thread with the upload router; options pass through."""
    stops: list[Callable[[], None]] = []

    def start(
        root: Path | None = None,
        move_to: Path | None = None,
        fail_first: int = 0,
        **options: Any,
    ) -> Running:
        root = root or tmp_path / "uploads"
        stats = UploadStats()
        running = Running("", root, stats)
        failures = iter(range(fail_first))

        async def done(owner: str, upload_id: str, path: Path, meta: dict[str, str]):
            if next(failures, None) is not None:
                raise RuntimeError("the app could not take the file")
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            running.completions.append(Completion(owner, upload_id, path, meta, digest))
            if move_to is not None:
                path.rename(move_to / upload_id)

        options.setdefault("reserve_bytes", 0)
        app = FastAPI()
        app.include_router(
            make_upload_router(
                root,
                owner_of=lambda request: request.headers.get(OWNER_HEADER, ""),
                on_complete=done,
                stats=stats,
                **options,
            )
        )
        running.url, stop = _serve_in_thread(app)
        stops.append(stop)
        return running

    yield start
    for stop in stops:
        stop()


def _serve_in_thread(app: FastAPI) -> tuple[str, Callable[[], None]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)
        sock.close()

    return f"http://127.0.0.1:{sock.getsockname()[1]}", stop


class ServerProcess:
    """The upload app in its own process, on a socket that outlives it."""

    def __init__(self, workdir: Path, *, commit_bytes: int = MB) -> None:
        self.workdir = workdir
        self.commit_bytes = commit_bytes
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        fd = self.sock.fileno()
        args = [str(self.workdir), str(self.commit_bytes), str(fd)]
        env = os.environ | {"PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER_CODE, *args], pass_fds=(fd,), env=env
        )
        with httpx.Client(base_url=self.url, timeout=20) as client:
            assert client.options("/uploads").status_code == 204

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def restart(self) -> None:
        self.kill()
        self.start()

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()
        self.sock.close()

    def client(self, owner: str = "anna") -> httpx.Client:
        headers = {"Tus-Resumable": "1.0.0", OWNER_HEADER: owner}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def completions(self) -> list[str]:
        log = self.workdir / "completions.log"
        return log.read_text().split() if log.exists() else []


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path)
    server.start()
    yield server
    server.close()


def _source(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _metadata(**pairs: str) -> str:
    encoded = (base64.b64encode(value.encode()).decode() for value in pairs.values())
    return ",".join(f"{key} {value}" for key, value in zip(pairs, encoded, strict=True))


def _create(client: httpx.Client, length: int, **headers: str) -> str:
    response = client.post("/uploads", headers={"Upload-Length": str(length)} | headers)
    assert response.status_code == 201, response.text
    return response.headers["Location"]


def _patch(
    client: httpx.Client, location: str, offset: int, body: Any, **headers: str
) -> httpx.Response:
    headers = {
        "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream",
    } | headers
    return client.patch(location, content=body, headers=headers)


def _offset(client: httpx.Client, location: str) -> int:
    response = client.head(location)
    assert response.status_code == 200, response.status_code
    return int(response.headers["Upload-Offset"])


def _data_file(root: Path, location: str) -> Path:
    upload_id = location.rsplit("/", 1)[1]
    (path,) = root.glob(f"*/{upload_id}")
    return path


def _open_patch(
    url: str,
    location: str,
    offset: int,
    length: int,
    extra: dict[str, str] | None = None,
) -> socket.socket:
    """Start a PATCH on a raw socket and send only its headers."""
    host, port = url.removeprefix("http://").split(":")
    headers = {
        "Host": host,
        "Tus-Resumable": "1.0.0",
        OWNER_HEADER: "anna",
        "Upload-Offset": str(offset),
        "Content-Type": "application/offset+octet-stream",
        "Content-Length": str(length),
    } | (extra or {})
    lines = [f"PATCH {location} HTTP/1.1"] + [f"{k}: {v}" for k, v in headers.items()]
    sock = socket.create_connection((host, int(port)))
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def _wait_for_offset(client: httpx.Client, location: str, at_least: int) -> int:
    deadline = time.monotonic() + 20
    while (offset := _offset(client, location)) < at_least:
        assert time.monotonic() < deadline, f"offset stuck at {offset}"
        time.sleep(0.01)
    return offset


def _patch_when_free(
    client: httpx.Client, location: str, offset: int, body: bytes, **headers: str
) -> httpx.Response:
    """PATCH the way tus clients do: retry while the server settles a lock."""
    for _ in range(100):
        response = _patch(client, location, offset, body, **headers)
        if response.status_code != 423:
            return response
        time.sleep(0.02)
    return response


# Core protocol -----------------------------------------------------------------


def test_the_package_exports_what_the_app_and_the_bench_import():
    imported = {
        "make_upload_router",
        "purge_expired",
        "end_stalled",
        "UploadStats",
        "NO_ROOM_MESSAGE",
    }

    exported = set(upload_package.__all__)

    assert imported <= exported
    assert all(hasattr(upload_package, name) for name in exported)


def test_options_describes_the_server_without_tus_resumable(serve):
    server = serve(max_size=5 * MB)

    response = httpx.options(server.url + "/uploads")

    assert response.status_code == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    assert response.headers["Tus-Max-Size"] == str(5 * MB)
    extensions = response.headers["Tus-Extension"].split(",")
    assert set(extensions) == {
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "expiration",
        "checksum",
    }
    assert response.headers["Tus-Checksum-Algorithm"] == "sha1,md5"


@pytest.mark.parametrize("version", [None, "0.2.2", "2.0.0"])
def test_other_or_missing_tus_version_gets_412(serve, version):
    server = serve()
    headers = {"Upload-Length": "10", OWNER_HEADER: "anna"}
    if version is not None:
        headers["Tus-Resumable"] = version

    response = httpx.post(server.url + "/uploads", headers=headers)

    assert response.status_code == 412
    assert response.headers["Tus-Version"] == "1.0.0"
    assert not list(server.root.glob("*/*"))


def test_upload_in_pieces_completes_once_with_the_same_bytes(serve):
    server = serve()
    source = _source(3 * MB + 17)
    meta = _metadata(filename="möte 3B.m4a", filetype="audio/mp4")

    with server.client() as client:
        location = _create(client, len(source), **{"Upload-Metadata": meta})
        offset = 0
        for size in (MB, 5, MB + 3, len(source)):
            piece = source[offset : offset + size]
            response = _patch(client, location, offset, piece)
            assert response.status_code == 204, response.text
            offset += len(piece)
            assert response.headers["Upload-Offset"] == str(offset)
            assert response.headers["Tus-Resumable"] == "1.0.0"
        again = _patch(client, location, offset, b"")
        head = client.head(location)

    assert again.status_code == 204
    assert head.headers["Upload-Offset"] == head.headers["Upload-Length"]
    assert head.headers["Upload-Metadata"] == meta
    assert "Upload-Expires" not in head.headers
    (done,) = server.completions
    assert done.owner == "anna"
    assert done.upload_id == location.rsplit("/", 1)[1]
    assert done.metadata == {"filename": "möte 3B.m4a", "filetype": "audio/mp4"}
    assert done.sha256 == _sha256(source)
    assert server.stats.completed == 1
    assert server.stats.bytes_received == len(source)
    assert server.stats.in_progress == 0


def test_failed_hand_over_gets_500_and_an_empty_patch_retries_it(serve):
    server = serve(fail_first=1)

    with server.client() as client:
        location = _create(client, 3)
        failed = _patch(client, location, 0, b"abc")
        head = client.head(location)
        retried = _patch(client, location, 3, b"")
        again = _patch(client, location, 3, b"")

    assert failed.status_code == 500
    assert "kunde inte lämnas vidare" in failed.text
    assert head.headers["Upload-Offset"] == "3"
    assert retried.status_code == 204
    assert again.status_code == 204
    assert len(server.completions) == 1


def test_head_without_any_metadata(serve):
    server = serve()

    with server.client() as client:
        location = _create(client, 100)
        response = client.head(location)

    assert response.status_code == 200
    assert response.headers["Upload-Offset"] == "0"
    assert response.headers["Upload-Length"] == "100"
    assert response.headers["Cache-Control"] == "no-store"
    assert "Upload-Metadata" not in response.headers


def test_location_and_ids_are_unguessable_and_per_upload(serve):
    server = serve()

    with server.client() as client:
        first, second = _create(client, 1), _create(client, 1)

    assert first.startswith("/uploads/") and second.startswith("/uploads/")
    assert first != second
    assert len(first.rsplit("/", 1)[1]) == 22


def test_offset_mismatch_gets_409_and_writes_nothing(serve):
    server = serve()
    source = _source(1000)

    with server.client() as client:
        location = _create(client, len(source))
        assert _patch(client, location, 0, source[:100]).status_code == 204
        behind = _patch(client, location, 0, b"x" * 200)
        ahead = _patch(client, location, 300, b"y" * 200)
        offset = _offset(client, location)

    assert behind.status_code == 409
    assert ahead.status_code == 409
    assert "100 byte" in behind.text
    assert offset == 100
    assert _data_file(server.root, location).read_bytes() == source[:100]


def test_bytes_lost_on_disk_lower_the_offset_instead_of_leaving_a_hole(serve):
    server = serve()
    source = _source(1000)

    with server.client() as client:
        location = _create(client, len(source))
        assert _patch(client, location, 0, source[:600]).status_code == 204
        with open(_data_file(server.root, location), "r+b") as data:
            data.truncate(250)
        stale = _patch(client, location, 600, source[600:])
        offset = _offset(client, location)
        rest = _patch(client, location, offset, source[offset:])

    assert stale.status_code == 409
    assert offset == 250
    assert rest.status_code == 204
    assert server.completions[0].sha256 == _sha256(source)


@pytest.mark.parametrize("chunked", [False, True])
def test_patch_past_upload_length_gets_413_and_writes_nothing(serve, chunked):
    server = serve()
    body = b"z" * (3 * MB)

    with server.client() as client:
        location = _create(client, 2 * MB)
        assert _patch(client, location, 0, b"a" * 10).status_code == 204
        content = iter([body[:MB], body[MB:]]) if chunked else body
        response = _patch(client, location, 10, content)
        offset = _offset(client, location)

    assert response.status_code == 413
    assert offset == 10
    assert _data_file(server.root, location).read_bytes() == b"a" * 10


def test_patch_needs_the_offset_content_type(serve):
    server = serve()

    with server.client() as client:
        location = _create(client, 10)
        response = client.patch(
            location, content=b"12345", headers={"Upload-Offset": "0"}
        )

    assert response.status_code == 415


def test_malformed_headers_get_400(serve):
    server = serve()

    with server.client() as client:
        no_length = client.post("/uploads")
        negative = client.post("/uploads", headers={"Upload-Length": "-5"})
        both = client.post(
            "/uploads", headers={"Upload-Length": "5", "Upload-Defer-Length": "1"}
        )
        bad_meta = client.post(
            "/uploads",
            headers={"Upload-Length": "5", "Upload-Metadata": "name not*base64"},
        )
        location = _create(client, 10)
        no_offset = client.patch(
            location,
            content=b"1",
            headers={"Content-Type": "application/offset+octet-stream"},
        )

    for response in (no_length, negative, both, bad_meta, no_offset):
        assert response.status_code == 400, response.request
        assert "HTTP-huvudet" in response.text


def test_unknown_or_hostile_ids_get_404(serve):
    server = serve()

    with server.client() as client:
        responses = [
            client.head("/uploads/doesnotexist0000000000"),
            client.head("/uploads/..%2F..%2Fetc%2Fpasswd"),
            _patch(client, "/uploads/doesnotexist0000000000", 0, b"x"),
            client.delete("/uploads/doesnotexist0000000000"),
        ]

    assert [r.status_code for r in responses] == [404, 404, 404, 404]


# Creation extensions -----------------------------------------------------------


def test_creation_with_upload_stores_the_body_of_the_post(serve):
    server = serve()
    source = _source(MB + 1)

    with server.client() as client:
        response = client.post(
            "/uploads",
            content=source[:1000],
            headers={
                "Upload-Length": str(len(source)),
                "Content-Type": "application/offset+octet-stream",
            },
        )
        location = response.headers["Location"]
        rest = _patch(client, location, 1000, source[1000:])

    assert response.status_code == 201
    assert response.headers["Upload-Offset"] == "1000"
    assert rest.status_code == 204
    assert server.completions[0].sha256 == _sha256(source)


def test_empty_upload_completes_at_creation(serve):
    server = serve()

    with server.client() as client:
        location = _create(client, 0)
        head = client.head(location)

    assert head.headers["Upload-Offset"] == "0"
    assert len(server.completions) == 1


def test_deferred_length_is_set_by_a_later_patch(serve):
    server = serve()
    source = _source(2 * MB + 5)

    with server.client() as client:
        response = client.post("/uploads", headers={"Upload-Defer-Length": "1"})
        location = response.headers["Location"]
        first = client.head(location)
        assert _patch(client, location, 0, source[:MB]).status_code == 204
        assert not server.completions
        last = _patch(
            client,
            location,
            MB,
            source[MB:],
            **{"Upload-Length": str(len(source))},
        )
        changed = _patch(client, location, len(source), b"", **{"Upload-Length": "9"})
        head = client.head(location)

    assert response.status_code == 201
    assert first.headers["Upload-Defer-Length"] == "1"
    assert "Upload-Length" not in first.headers
    assert last.status_code == 204
    assert changed.status_code == 400
    assert head.headers["Upload-Length"] == str(len(source))
    assert server.completions[0].sha256 == _sha256(source)


# Stalled uploads of a deferred length ---------------------------------------------


@dataclass
class Handed:
    """What ``end_stalled`` handed over, and an optional first failure."""

    uploads: list[tuple[str, str, bytes, dict[str, str]]] = field(default_factory=list)
    fail_first: bool = False

    async def __call__(
        self, owner: str, upload_id: str, path: Path, metadata: dict[str, str]
    ) -> None:
        if self.fail_first:
            self.fail_first = False
            raise RuntimeError("the app could not take the file")
        self.uploads.append((owner, upload_id, path.read_bytes(), metadata))
        path.unlink()


def _end_stalled(root: Path, handed: Handed, *, after_s: float) -> int:
    """``end_stalled`` as the app runs it, ``after_s`` from now, 60 s allowed."""
    return anyio.run(
        functools.partial(
            end_stalled,
            root,
            on_complete=handed,
            stalled_s=60,
            wanted=lambda metadata: metadata.get("live") == "1",
            now=time.time() + after_s,
        )
    )


def _live(client: httpx.Client, **metadata: str) -> str:
    headers = {"Upload-Defer-Length": "1", "Upload-Metadata": _metadata(**metadata)}
    response = client.post("/uploads", headers=headers)
    assert response.status_code == 201, response.text
    return response.headers["Location"]


def test_stalled_deferred_upload_is_ended_where_it_got_to_and_handed_over_once(
    serve,
):
    server = serve()
    source = _source(3000)

    with server.client() as client:
        location = _live(client, live="1", filename="inspelning.webm")
        assert _patch(client, location, 0, source[:1000]).status_code == 204
        assert _patch(client, location, 1000, source[1000:]).status_code == 204
        handed = Handed()
        ended = _end_stalled(server.root, handed, after_s=61)
        head = client.head(location)
        # The page comes back and ends the upload itself, then sends more.
        closing = _patch(client, location, 3000, b"", **{"Upload-Length": "3000"})
        more = _patch(client, location, 3000, b"late")

    assert ended == 1
    ((owner, upload_id, body, metadata),) = handed.uploads
    assert (owner, upload_id) == ("anna", location.rsplit("/", 1)[1])
    assert body == source
    assert metadata == {"live": "1", "filename": "inspelning.webm"}
    assert head.headers["Upload-Length"] == head.headers["Upload-Offset"] == "3000"
    assert closing.status_code == 204
    assert more.status_code == 413
    assert not server.completions
    assert _end_stalled(server.root, handed, after_s=61) == 0


def test_only_stalled_wanted_uploads_with_bytes_are_ended(serve):
    server = serve()

    with server.client() as client:
        empty = _live(client, live="1")
        other = _live(client, filename="fil.webm")
        assert _patch(client, other, 0, b"12345").status_code == 204
        known = _create(client, 100, **{"Upload-Metadata": _metadata(live="1")})
        assert _patch(client, known, 0, b"12345").status_code == 204
        recent = _live(client, live="1")
        assert _patch(client, recent, 0, b"12345").status_code == 204
        handed = Handed()

        assert _end_stalled(server.root, handed, after_s=30) == 0
        busy = _open_patch(server.url, recent, 5, 10)
        _wait_for_lock(server.root, recent)
        assert _end_stalled(server.root, handed, after_s=61) == 0
        busy.close()
        heads = [client.head(loc) for loc in (empty, other, known)]

    assert not handed.uploads
    assert [h.headers.get("Upload-Defer-Length") for h in heads] == ["1", "1", None]


def test_a_stalled_upload_drops_bytes_that_were_never_committed(serve):
    server = serve()

    with server.client() as client:
        location = _live(client, live="1")
        assert _patch(client, location, 0, b"committed").status_code == 204
    with _data_file(server.root, location).open("ab") as data:
        data.write(b" half a request")
    handed = Handed()

    assert _end_stalled(server.root, handed, after_s=61) == 1
    assert handed.uploads[0][2] == b"committed"


def test_a_failed_hand_over_of_a_stalled_upload_is_tried_again(serve):
    server = serve()

    with server.client() as client:
        location = _live(client, live="1")
        assert _patch(client, location, 0, b"abc").status_code == 204
    handed = Handed(fail_first=True)

    assert _end_stalled(server.root, handed, after_s=61) == 0
    assert _end_stalled(server.root, handed, after_s=61) == 1
    assert [body for _, _, body, _ in handed.uploads] == [b"abc"]


def _wait_for_lock(root: Path, location: str) -> None:
    """Return once a request holds the upload's lock."""
    import fcntl

    deadline = time.monotonic() + 10
    with _data_file(root, location).open("rb") as data:
        while time.monotonic() < deadline:
            try:
                fcntl.flock(data.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return
            fcntl.flock(data.fileno(), fcntl.LOCK_UN)
            time.sleep(0.01)
    raise AssertionError("no request took the lock")


# Termination and expiration ------------------------------------------------------


def test_delete_removes_the_upload(serve):
    server = serve()

    with server.client() as client:
        location = _create(client, 100)
        assert _patch(client, location, 0, b"x" * 10).status_code == 204
        deleted = client.delete(location)
        head = client.head(location)
        again = client.delete(location)

    assert deleted.status_code == 204
    assert head.status_code == 404
    assert again.status_code == 404
    assert not [p for p in server.root.rglob("*") if p.is_file()]


def test_unfinished_uploads_carry_upload_expires_a_day_ahead(serve):
    server = serve()

    with server.client() as client:
        created = client.post("/uploads", headers={"Upload-Length": "10"})
        patched = _patch(client, created.headers["Location"], 0, b"12345")

    for response in (created, patched):
        expires = parsedate_to_datetime(response.headers["Upload-Expires"])
        assert abs(expires.timestamp() - time.time() - 24 * 3600) < 60


def test_expired_upload_gets_410_and_purge_removes_it(serve):
    server = serve(ttl_s=0.3)

    with server.client() as client:
        stale = _create(client, 100)
        done = _create(client, 3)
        assert _patch(client, done, 0, b"abc").status_code == 204
        time.sleep(0.5)
        head = client.head(stale)
        patch = _patch(client, stale, 0, b"x")

    removed = purge_expired(server.root)

    assert head.status_code == 410
    assert patch.status_code == 410
    assert removed == 1
    assert not list(server.root.glob(f"*/{stale.rsplit('/', 1)[1]}*"))
    assert _data_file(server.root, done).read_bytes() == b"abc"


def test_purge_keeps_uploads_within_their_day(serve):
    server = serve()

    with server.client() as client:
        location = _create(client, 100)
        now = time.time()

    assert purge_expired(server.root, now=now + 23 * 3600) == 0
    assert purge_expired(server.root, now=now + 25 * 3600) == 1
    assert not list(server.root.glob(f"*/{location.rsplit('/', 1)[1]}*"))


def test_completed_upload_moved_away_still_answers_head(serve, tmp_path):
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    server = serve(move_to=recordings)

    with server.client() as client:
        location = _create(client, 4)
        assert _patch(client, location, 0, b"abcd").status_code == 204
        head = client.head(location)
        again = _patch(client, location, 4, b"")

    assert head.status_code == 200
    assert head.headers["Upload-Offset"] == "4"
    assert again.status_code == 204
    assert len(server.completions) == 1
    assert (recordings / location.rsplit("/", 1)[1]).read_bytes() == b"abcd"
    assert purge_expired(server.root, now=time.time() + 2 * 24 * 3600) == 1
    assert not list(server.root.glob("*/*"))


# Checksum ------------------------------------------------------------------------


def test_matching_checksum_is_accepted(serve):
    server = serve()
    piece = _source(MB + 9)
    sha1 = base64.b64encode(hashlib.sha1(piece).digest()).decode()

    with server.client() as client:
        location = _create(client, len(piece))
        response = _patch(
            client, location, 0, piece, **{"Upload-Checksum": "sha1 " + sha1}
        )

    assert response.status_code == 204
    assert server.completions[0].sha256 == _sha256(piece)


def test_checksum_mismatch_gets_460_and_the_chunk_is_discarded(serve):
    server = serve()
    piece = _source(3 * MB)
    wrong = base64.b64encode(hashlib.md5(b"something else").digest()).decode()

    with server.client() as client:
        location = _create(client, len(piece) + 100)
        assert _patch(client, location, 0, b"h" * 100).status_code == 204
        response = _patch(
            client, location, 100, piece, **{"Upload-Checksum": "md5 " + wrong}
        )
        offset = _offset(client, location)

    assert response.status_code == 460
    assert offset == 100
    assert _data_file(server.root, location).read_bytes() == b"h" * 100


def test_dropped_chunk_with_a_checksum_is_discarded_whole(serve):
    server = serve(commit_bytes=MB // 2)
    piece = _source(3 * MB)
    sha1 = base64.b64encode(hashlib.sha1(piece).digest()).decode()

    with server.client() as client:
        location = _create(client, len(piece))
        dropped = _open_patch(
            server.url, location, 0, len(piece), {"Upload-Checksum": "sha1 " + sha1}
        )
        dropped.sendall(piece[: 2 * MB])
        time.sleep(0.3)
        dropped.close()
        time.sleep(0.3)
        offset = _offset(client, location)
        retry = _patch_when_free(
            client, location, 0, piece, **{"Upload-Checksum": "sha1 " + sha1}
        )

    assert offset == 0
    assert retry.status_code == 204
    assert server.completions[0].sha256 == _sha256(piece)


def test_unsupported_checksum_algorithm_gets_400(serve):
    server = serve()

    with server.client() as client:
        location = _create(client, 3)
        response = _patch(
            client, location, 0, b"abc", **{"Upload-Checksum": "crc32 AAAA"}
        )

    assert response.status_code == 400


# Owners, limits and locks -------------------------------------------------------


def test_another_owner_gets_404_for_everything(serve):
    server = serve()

    with server.client("anna") as anna, server.client("bo") as bo:
        location = _create(anna, 10)
        responses = [
            bo.head(location),
            _patch(bo, location, 0, b"12345"),
            bo.delete(location),
        ]
        offset = _offset(anna, location)

    assert [r.status_code for r in responses] == [404, 404, 404]
    assert offset == 0


def test_file_over_the_maximum_is_refused_before_a_byte(serve):
    server = serve(max_size=MB)

    with server.client() as client:
        plain = client.post("/uploads", headers={"Upload-Length": str(MB + 1)})
        with_body = client.post(
            "/uploads",
            content=b"x" * (MB + 1),
            headers={
                "Upload-Defer-Length": "1",
                "Content-Type": "application/offset+octet-stream",
            },
        )

    assert plain.status_code == 413
    assert "Filen är för stor: servern tar emot högst 1 MB" in plain.text
    assert with_body.status_code == 413
    assert not list(server.root.glob("*/*"))


def test_file_over_the_free_space_less_the_margin_gets_507(serve, tmp_path):
    free = shutil.disk_usage(tmp_path).free
    server = serve(reserve_bytes=free)

    with server.client() as client:
        response = client.post("/uploads", headers={"Upload-Length": str(MB)})

    assert response.status_code == 507
    assert response.text == NO_ROOM_MESSAGE
    assert not list(server.root.glob("*/*"))


def test_racing_patch_is_refused_with_423(serve):
    server = serve(commit_bytes=MB // 2)
    source = _source(3 * MB)

    with server.client() as client:
        location = _create(client, len(source))
        first = _open_patch(server.url, location, 0, len(source))
        first.sendall(source[: 2 * MB])
        offset = _wait_for_offset(client, location, MB)
        racer = _patch(client, location, offset, b"r" * 1000)
        first.sendall(source[2 * MB :])
        reply = first.recv(4096)
        first.close()
        final = _offset(client, location)

    assert racer.status_code == 423
    assert "annan anslutning" in racer.text
    assert reply.startswith(b"HTTP/1.1 204")
    assert final == len(source)
    assert server.completions[0].sha256 == _sha256(source)


def test_silent_client_is_cut_off_and_keeps_its_bytes(serve):
    server = serve(idle_timeout_s=0.5)
    source = _source(2 * MB)

    with server.client() as client:
        location = _create(client, len(source))
        stalled = _open_patch(server.url, location, 0, len(source))
        stalled.sendall(source[: MB + 123])
        time.sleep(1.0)
        offset = _offset(client, location)
        rest = _patch_when_free(client, location, offset, source[offset:])
        stalled.close()

    assert offset == MB + 123
    assert rest.status_code == 204
    assert server.completions[0].sha256 == _sha256(source)


# Restarts and dropped connections (a real server process) ----------------------


def test_resumed_upload_keeps_bytes_already_received(server_process):
    source = _source(5 * MB)

    with server_process.client() as client:
        location = _create(client, len(source))
        assert _patch(client, location, 0, source[: 2 * MB + 7]).status_code == 204
    server_process.restart()
    with server_process.client() as client:
        offset = _offset(client, location)
        rest = _patch(client, location, offset, source[offset:])

    assert offset == 2 * MB + 7
    assert rest.status_code == 204
    upload_id = location.rsplit("/", 1)[1]
    assert server_process.completions() == [upload_id]
    data = _data_file(server_process.workdir / "uploads", location).read_bytes()
    assert _sha256(data) == _sha256(source)


def test_dropped_connection_keeps_the_bytes_received(server_process):
    source = _source(4 * MB)

    with server_process.client() as client:
        location = _create(client, len(source))
        dropped = _open_patch(server_process.url, location, 0, len(source))
        dropped.sendall(source[: 2 * MB + 999])
        received = _wait_for_offset(client, location, MB)
        time.sleep(0.2)
        dropped.close()
        time.sleep(0.3)
        after_drop = _offset(client, location)
    server_process.restart()
    with server_process.client() as client:
        offset = _offset(client, location)
        rest = _patch_when_free(client, location, offset, source[offset:])

    assert MB <= received <= after_drop
    assert after_drop == 2 * MB + 999  # the partial block is committed on the drop
    assert offset == after_drop
    assert rest.status_code == 204
    data = _data_file(server_process.workdir / "uploads", location).read_bytes()
    assert _sha256(data) == _sha256(source)


def _upload_with_kills(server: ServerProcess, size: int, kills: int) -> None:
    """Upload ``size`` bytes, killing the server with SIGKILL mid-PATCH."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    source = _source(size, seed)
    points = sorted(rng.sample(range(MB, size - 3 * MB, 2 * MB), kills))
    slow_piece = 64 * 1024

    def trickle(offset: int) -> Iterator[bytes]:
        for start in range(offset, size, slow_piece):
            time.sleep(0.002)
            yield source[start : start + slow_piece]

    def send(location: str, offset: int) -> None:
        length = {"Content-Length": str(size - offset)}
        with server.client() as sender, pytest.raises(httpx.TransportError):
            _patch(sender, location, offset, trickle(offset), **length)

    with server.client() as client:
        location = _create(client, size)
        offset = 0
        for point in points:
            sender = threading.Thread(target=send, args=(location, offset))
            sender.start()
            reached = _wait_for_offset(client, location, max(point, offset + 1))
            time.sleep(rng.uniform(0, 0.03))
            server.restart()
            sender.join()
            offset = _offset(client, location)
            assert offset >= reached, f"seed {seed}: lost committed bytes"
        rest = _patch_when_free(client, location, offset, source[offset:])

    assert rest.status_code == 204, f"seed {seed}"
    data = _data_file(server.workdir / "uploads", location).read_bytes()
    assert _sha256(data) == _sha256(source), f"seed {seed}"
    assert server.completions() == [location.rsplit("/", 1)[1]], f"seed {seed}"


def test_kill_9_mid_patch_at_random_points_keeps_every_byte(server_process):
    _upload_with_kills(server_process, 12 * MB, kills=3)


@pytest.mark.slow
def test_kill_9_at_twenty_points_keeps_every_byte(server_process):
    _upload_with_kills(server_process, 200 * MB, kills=20)


# A full disk (a real tmpfs) ------------------------------------------------------


def test_file_over_the_free_disk_is_refused_with_507(serve, small_disk):
    server = serve(root=small_disk / "uploads")
    too_big = shutil.disk_usage(small_disk).free + 1

    with server.client() as client:
        response = client.post("/uploads", headers={"Upload-Length": str(too_big)})

    assert response.status_code == 507
    assert response.text == NO_ROOM_MESSAGE
    assert not list((small_disk / "uploads").glob("*/*"))


def test_full_disk_mid_upload_gets_507_and_keeps_what_was_written(serve, small_disk):
    server = serve(root=small_disk / "uploads")
    source = _source(MB + MB // 2)

    with server.client() as client:
        location = _create(client, len(source))
        filler = small_disk / "filler"
        room = shutil.disk_usage(small_disk).free - 700 * 1024
        filler.write_bytes(b"\0" * room)
        full = _patch(client, location, 0, source)
        offset = _offset(client, location)
        on_disk = _data_file(server.root, location).read_bytes()
        still_up = client.options("/uploads").status_code
        filler.unlink()
        rest = _patch(client, location, offset, source[offset:])

    assert full.status_code == 507
    assert full.text == DISK_FULL_MESSAGE
    assert 0 < offset < len(source)
    assert on_disk == source[:offset]
    assert still_up == 204
    assert rest.status_code == 204
    assert server.completions[0].sha256 == _sha256(source)
