"""Benchmark of the tus endpoint in pipeline.upload against @tus/server.

Each server runs in its own process on loopback. One large file goes through
each (chunked PATCH, streamed from disk) while the server's RSS is sampled;
the runs alternate and the medians are compared. Then many uploads run at once
against ours while a separate process polls ``/healthz``. Everything written
lives in a temporary folder that is deleted at the end.

    python -m bench.upload_bench --size-mb 2048 --repeat 3
    python -m bench.upload_bench --size-mb 200 --concurrent-mb 20   # quick check

The reference server is installed from bench/tus_node/package-lock.json with
``npm ci`` the first time. Our server does fsync its data before it reports
an offset; the reference FileStore leaves the bytes in the page cache.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import http.client
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
NODE_DIR = REPO / "bench" / "tus_node"
MIB = 1024**2
OWNER = "bench"


@dataclass
class Run:
    server: str
    seconds: float
    mib_per_s: float
    rss_start_mib: float
    rss_peak_mib: float

    @property
    def rss_growth_mib(self) -> float:
        return self.rss_peak_mib - self.rss_start_mib


def main() -> None:
    # The same file starts the servers and the health poller as subprocesses.
    if sys.argv[1:2] == ["serve"]:
        _serve(Path(sys.argv[2]), int(sys.argv[3]))
    elif sys.argv[1:2] == ["poll"]:
        _poll_health(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
    else:
        _benchmark(_arguments())


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=2048, help="large upload")
    parser.add_argument("--chunk-mb", type=int, default=32, help="bytes per PATCH")
    parser.add_argument("--repeat", type=int, default=3, help="runs per server")
    parser.add_argument("--concurrent", type=int, default=20, help="uploads at once")
    parser.add_argument("--concurrent-mb", type=int, default=200, help="each one")
    parser.add_argument("--skip-node", action="store_true")
    parser.add_argument("--tmp", default=None, help="where the temp folder goes")
    parser.add_argument("--json", default=None, help="also write results here")
    return parser.parse_args()


# Servers -----------------------------------------------------------------------


def _serve(root: Path, fd: int) -> None:
    """Our endpoint in a plain FastAPI app, as the product mounts it."""
    import uvicorn
    from fastapi import FastAPI

    from pipeline.upload import make_upload_router

    app = FastAPI()
    app.include_router(
        make_upload_router(
            root,
            owner_of=lambda request: OWNER,
            on_complete=lambda owner, upload_id, path, metadata: None,
            max_size=64 * 1024**3,
            prefix="/files",
        )
    )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    sock = socket.socket(fileno=fd)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])


class ServerProcess:
    """One server process, its URL, and its memory."""

    def __init__(self, name: str, args: list[str], url: str, **popen: object):
        self.name = name
        self.url = url
        self.process = subprocess.Popen(args, **popen)  # type: ignore[call-overload]
        self.ps = psutil.Process(self.process.pid)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.options(url + "/files", timeout=2).status_code == 204:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"{name} server did not start")
            time.sleep(0.1)

    def rss_mib(self) -> float:
        return self.ps.memory_info().rss / MIB

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _start_ours(root: Path) -> ServerProcess:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    fd = sock.fileno()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    env = os.environ | {"PYTHONPATH": str(REPO)}
    args = [sys.executable, __file__, "serve", str(root), str(fd)]
    try:
        return ServerProcess("ours", args, url, pass_fds=(fd,), env=env)
    finally:
        sock.close()


def _start_node(root: Path) -> ServerProcess:
    if not (NODE_DIR / "node_modules" / "@tus" / "server").exists():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True
        )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ["node", str(NODE_DIR / "server.mjs"), str(port), str(root)]
    return ServerProcess("@tus/server", args, f"http://127.0.0.1:{port}")


# Client ------------------------------------------------------------------------


def upload(
    url: str,
    source: Path,
    size: int,
    chunk: int,
    *,
    endpoint: str = "/files",
    headers: dict[str, str] | None = None,
) -> str:
    """Upload the first ``size`` bytes of ``source``; returns the upload URL.

    The body goes out with sendfile(2), so the client costs little CPU and the
    two servers are compared rather than the client. ``headers`` go with every
    request (the app's session cookie and CSRF token, for instance).
    """
    extra = headers or {}
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.netloc, timeout=120)
    try:
        created = _send(conn, "POST", endpoint, {"Upload-Length": str(size)} | extra)
        location = urlsplit(
            urljoin(url + endpoint.rstrip("/") + "/", created.headers["Location"])
        )
        offset = 0
        with open(source, "rb") as f:
            while offset < size:
                length = min(chunk, size - offset)
                patch = {
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                    "Content-Length": str(length),
                }
                reply = _send(
                    conn, "PATCH", location.path, patch | extra, (f, offset, length)
                )
                offset = int(reply.headers["Upload-Offset"])
    finally:
        conn.close()
    return location.geturl()


def _send(
    conn: http.client.HTTPConnection,
    method: str,
    path: str,
    headers: dict[str, str],
    body: tuple[BinaryIO, int, int] | None = None,
) -> http.client.HTTPResponse:
    conn.putrequest(method, path, skip_accept_encoding=True)
    for name, value in (headers | {"Tus-Resumable": "1.0.0"}).items():
        conn.putheader(name, value)
    conn.endheaders()
    if body is not None:
        assert conn.sock is not None
        conn.sock.sendfile(*body)
    response = conn.getresponse()
    response.read()
    if response.status not in (201, 204):
        raise RuntimeError(f"{method} got {response.status}")
    return response


def _timed_upload(
    server: ServerProcess, source: Path, size: int, chunk: int, stored: Path
) -> Run:
    os.sync()  # start every run with a clean page cache to write back
    with _RssSampler(server) as rss:
        started = time.perf_counter()
        location = upload(server.url, source, size, chunk)
        seconds = time.perf_counter() - started

    _check_stored(stored, location, source, size)
    return Run(server.name, seconds, size / MIB / seconds, rss.start, rss.peak)


class _RssSampler:
    """The server's RSS every 50 ms while the block runs: where it began, its peak."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.start = self.peak = server.rss_mib()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._done.wait(0.05):
            self.peak = max(self.peak, self.server.rss_mib())


def _check_stored(stored: Path, location: str, source: Path, size: int) -> None:
    """The stored file must hold exactly the source's bytes; then it goes."""
    upload_id = location.rstrip("/").rsplit("/", 1)[1]
    (path,) = [p for p in stored.rglob(upload_id) if p.is_file()]
    if _sha256(path, path.stat().st_size) != _sha256(source, size):
        raise RuntimeError(f"{path} differs from the source")
    path.unlink()


# Concurrency with /healthz -----------------------------------------------------


def _poll_health(url: str, out: Path, stop: Path) -> None:
    """Poll ``url`` every 50 ms until ``stop`` exists; write latencies to ``out``."""
    latencies: list[float] = []
    failures = 0
    with httpx.Client(timeout=5) as client:
        while not stop.exists():
            started = time.perf_counter()
            try:
                ok = client.get(url).status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append((time.perf_counter() - started) * 1000)
            failures += not ok
            stop.with_suffix(".ready").touch()
            time.sleep(0.05)
    out.write_text(json.dumps({"latencies_ms": latencies, "failures": failures}))


def _concurrent(
    server: ServerProcess,
    source: Path,
    stored: Path,
    count: int,
    size: int,
    chunk: int,
    tmp: Path,
) -> dict[str, float]:
    out, stop = tmp / "health.json", tmp / "health.stop"
    poller = subprocess.Popen(
        [sys.executable, __file__, "poll", server.url + "/healthz", str(out), str(stop)]
    )
    while not stop.with_suffix(".ready").exists():
        if poller.poll() is not None:
            raise RuntimeError("the /healthz poller stopped")
        time.sleep(0.05)

    def one(_: int) -> str | None:
        try:
            return upload(server.url, source, size, chunk)
        except (OSError, http.client.HTTPException, RuntimeError):
            return None

    os.sync()
    with _RssSampler(server) as rss, ThreadPoolExecutor(count) as pool:
        started = time.perf_counter()
        results = list(pool.map(one, range(count)))
        seconds = time.perf_counter() - started
    stop.touch()
    poller.wait(30)
    for location in filter(None, results):
        _check_stored(stored, location, source, size)

    health = json.loads(out.read_text())
    latencies = sorted(health["latencies_ms"])
    return {
        "uploads": count,
        "failed_uploads": results.count(None),
        "seconds": seconds,
        "total_mib_per_s": count * size / MIB / seconds,
        "health_requests": len(latencies),
        "health_failures": health["failures"],
        "health_p50_ms": statistics.median(latencies),
        "health_p99_ms": latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)],
        "health_max_ms": latencies[-1],
        "rss_growth_mib": rss.peak - rss.start,
    }


# Driver ------------------------------------------------------------------------


def _benchmark(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="pd-upload-bench-", dir=args.tmp))
    servers: list[ServerProcess] = []
    try:
        source = make_source(tmp / "source.bin", args.size_mb * MIB)
        ours_root, node_root = tmp / "ours", tmp / "node"
        ours_root.mkdir()
        node_root.mkdir()
        ours = _start_ours(ours_root)
        servers.append(ours)
        pairs = [(ours, ours_root)]
        if not args.skip_node:
            servers.append(_start_node(node_root))
            pairs.append((servers[-1], node_root))

        warm = min(16 * MIB, args.size_mb * MIB)
        for server, stored in pairs:
            _timed_upload(server, source, warm, args.chunk_mb * MIB, stored)
        runs = [
            _timed_upload(server, source, args.size_mb * MIB, args.chunk_mb * MIB, root)
            for _ in range(args.repeat)
            for server, root in pairs
        ]
        crowd = _concurrent(
            ours,
            source,
            ours_root,
            args.concurrent,
            min(args.concurrent_mb, args.size_mb) * MIB,
            args.chunk_mb * MIB,
            tmp,
        )
        _report(args, runs, crowd)
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def make_source(path: Path, size: int) -> Path:
    """Random bytes, written from a 64 MiB pool with a counter in every MiB."""
    pool = bytearray(os.urandom(64 * MIB))
    with open(path, "wb") as f:
        for written in range(0, size, len(pool)):
            for mib in range(0, len(pool), MIB):
                pool[mib : mib + 8] = (written + mib).to_bytes(8, "little")
            f.write(pool[: size - written])
    return path


def _report(args: argparse.Namespace, runs: list[Run], crowd: dict) -> None:
    by_server: dict[str, list[Run]] = {}
    for run in runs:
        by_server.setdefault(run.server, []).append(run)
    load = ", ".join(f"{n:.1f}" for n in os.getloadavg())
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, {_node()}; "
        f"load average at the end {load}"
    )
    print(f"{args.size_mb} MiB in {args.chunk_mb} MiB PATCHes, {args.repeat} runs")
    medians = {}
    for name, its in by_server.items():
        speed = statistics.median(r.mib_per_s for r in its)
        growth = statistics.median(r.rss_growth_mib for r in its)
        peak = max(r.rss_peak_mib for r in its)
        medians[name] = speed
        print(
            f"  {name:12} {speed:7.0f} MiB/s median "
            f"({', '.join(f'{r.mib_per_s:.0f}' for r in its)}); "
            f"RSS growth {growth:.1f} MiB median, peak RSS {peak:.0f} MiB"
        )
    if "@tus/server" in medians:
        ratio = medians["ours"] / medians["@tus/server"]
        print(f"  throughput ratio ours / @tus/server: {ratio:.2f}")
    print(
        f"{crowd['uploads']} concurrent uploads of {args.concurrent_mb} MiB: "
        f"{crowd['failed_uploads']} failed, {crowd['total_mib_per_s']:.0f} MiB/s "
        f"together; /healthz {crowd['health_requests']} requests, "
        f"{crowd['health_failures']} failed, p50 {crowd['health_p50_ms']:.1f} ms, "
        f"p99 {crowd['health_p99_ms']:.1f} ms, max {crowd['health_max_ms']:.1f} ms; "
        f"server RSS growth {crowd['rss_growth_mib']:.1f} MiB"
    )
    if args.json:
        result = {"runs": [r.__dict__ for r in runs], "concurrent": crowd}
        Path(args.json).write_text(json.dumps(result, indent=2))


def _node() -> str:
    try:
        version = subprocess.run(["node", "--version"], capture_output=True, text=True)
    except FileNotFoundError:
        return "no node"
    return f"node {version.stdout.strip()}"


@functools.cache
def _sha256(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while size > 0 and (piece := f.read(min(8 * MIB, size))):
            digest.update(piece)
            size -= len(piece)
    return digest.hexdigest()


if __name__ == "__main__":
    main()
