"""Whole-app memory: a 2 GB upload and a local transcription at once, against 512 MB.

Starts the real app (``python app.py``) with the offline base model and
``PD_MEMORY_BUDGET_MB=512``, signs in, and samples the summed RSS of the app
and all its children (ffmpeg) every 50 ms through three phases, with a
viewer asking for the recordings list every 2 s as the page's timer does:

- ``app idle``: just started and signed in, nothing to do;
- ``app busy``: a several-minute speech recording is uploaded and transcribed
  while a 2 GB file goes through the tus endpoint at the same time;
- ``CLI alone``: ``python -m pipeline transcribe`` on the same recording, in
  its own process, as the peer without the web layer.

    python -m bench.app_memory_bench --minutes 5 --upload-mb 2048 \
        --docs docs/benchmarks.md

The 2 GB file is random bytes under /tmp and is deleted at the end, as is
everything the app stored. Extra environment for the app goes in with
``--env NAME=VALUE`` (for instance ``MALLOC_ARENA_MAX=8``) to compare settings;
``--compare LABEL=RAW.json`` adds the peaks of an earlier run's raw figures
(bench/out/results) to the report, for before/after.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import shlex
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import corpus, ours, report
from bench.measurement import TreeSampler, machine, run_measured
from bench.upload_bench import MIB, make_source, upload

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
BUDGET_MB = 512
MB_PER_MIB = 1.048576
ADMIN_PASSWORD = "bench-lösen-1"
REFRESH_S = 2.0  # the page's gr.Timer
IDLE_S = 15.0
CHUNK = 32 * MIB  # what the browser sends per PATCH
SECTION = "app-memory"


@dataclass(frozen=True)
class Phase:
    """The memory of one phase: summed RSS of the process tree, in MiB."""

    name: str
    seconds: float
    peak_mib: float
    median_mib: float
    hwm_sum_mib: float
    samples: int
    over_budget_share: float | None = None  # of the samples; None: not kept


@dataclass
class App:
    """The app in its child process."""

    url: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path


@contextlib.contextmanager
def running_app(data_dir: Path, extra_env: dict[str, str]) -> Iterator[App]:
    """``python app.py`` on a free port, stopped when the block ends."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = ours.environment(BUDGET_MB, extra_env)
    env.update(
        PD_DATA_DIR=str(data_dir),
        PD_MODEL="base",
        PD_LANGUAGE="en",
        PD_ADMIN_PASSWORD=ADMIN_PASSWORD,
    )
    log_path = data_dir / "app.log"
    with log_path.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    app = App(f"http://127.0.0.1:{port}", process, data_dir, log_path)
    try:
        _wait_healthy(app)
        yield app
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_healthy(app: App) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if app.process.poll() is not None:
            tail = app.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the app exited:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(app.url + "/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError("the app did not answer /healthz within 120 s")


def sign_in(app: App) -> httpx.Client:
    """The admin's session, as the login form would create it."""
    client = httpx.Client(base_url=app.url, timeout=60)
    answer = client.post(
        "/login", data={"username": "admin", "password": ADMIN_PASSWORD}
    )
    if answer.status_code != 303:
        raise RuntimeError(f"login failed: {answer.status_code}")
    client.get("/app/", follow_redirects=True).raise_for_status()
    return client


def tus_headers(client: httpx.Client, filename: str) -> dict[str, str]:
    """Cookie, CSRF token and tus metadata, sent with every upload request."""
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    metadata = ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}"
        for key, value in {"filename": filename, "engine": "local"}.items()
    )
    return {
        "Cookie": cookie,
        "X-CSRF-Token": client.cookies.get("pd_csrf") or "",
        "Upload-Metadata": metadata,
    }


class Viewer(threading.Thread):
    """Asks for the recordings list every 2 s through Gradio, like an open page."""

    def __init__(self, app: App, client: httpx.Client) -> None:
        super().__init__(daemon=True)
        from gradio_client import Client

        cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
        self._gradio = Client(
            app.url + "/app/", headers={"Cookie": cookie}, verbose=False
        )
        self._done = threading.Event()
        self.calls = 0
        self.failures = 0

    def run(self) -> None:
        while not self._done.wait(REFRESH_S):
            try:
                self._gradio.predict(api_name="/refresh")
            except Exception:  # a failed call is counted, not fatal
                self.failures += 1
            self.calls += 1

    def stop(self) -> None:
        self._done.set()
        self.join()
        self._gradio.close()


@contextlib.contextmanager
def sampled(pid: int, name: str, out: list[Phase]) -> Iterator[TreeSampler]:
    """Sample the tree of ``pid`` while the block runs; append its ``Phase``."""
    sampler = TreeSampler(pid, 0.05)
    started = time.monotonic()
    sampler.start()
    try:
        yield sampler
    finally:
        sampler.stop()
    budget_kb = BUDGET_MB / MB_PER_MIB * 1024
    over = sum(total > budget_kb for total in sampler.totals_kb)
    out.append(
        Phase(
            name,
            time.monotonic() - started,
            sampler.peak_kb / 1024,
            sampler.median_mb(),
            sum(sampler.hwm_kb.values()) / 1024,
            sampler.samples,
            over / max(1, len(sampler.totals_kb)),
        )
    )


def transcript_state(data_dir: Path, title: str) -> str:
    """The state of the newest transcript of the recording titled ``title``."""
    db = data_dir / "pd.sqlite3"
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        row = conn.execute(
            "SELECT t.state FROM recordings r JOIN transcripts t"
            " ON t.recording_id = r.id WHERE r.title = ?"
            " ORDER BY t.created_at DESC LIMIT 1",
            (title,),
        ).fetchone()
    return str(row[0]) if row else "none"


def wait_for_state(app: App, title: str, states: set[str], timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = transcript_state(app.data_dir, title)
        if state in states:
            return state
        if app.process.poll() is not None:
            raise RuntimeError("the app died; see " + str(app.log_path))
        time.sleep(0.2)
    raise RuntimeError(f"{title} did not reach {states} in {timeout_s:.0f} s")


def busy(
    app: App, client: httpx.Client, audio: Path, big: Path, phases: list[Phase]
) -> dict[str, Any]:
    """Transcribe ``audio`` while ``big`` is uploaded; what each one took."""
    figures: dict[str, Any] = {}
    big_size = big.stat().st_size

    def upload_big() -> None:
        started = time.monotonic()
        upload(
            app.url,
            big,
            big_size,
            CHUNK,
            endpoint="/api/uploads/",
            headers=tus_headers(client, big.name),
        )
        figures["upload_s"] = time.monotonic() - started

    with sampled(app.process.pid, "app busy", phases):
        started = time.monotonic()
        upload(
            app.url,
            audio,
            audio.stat().st_size,
            CHUNK,
            endpoint="/api/uploads/",
            headers=tus_headers(client, audio.name),
        )
        if wait_for_state(app, audio.stem, {"running", "failed"}, 120) == "failed":
            raise RuntimeError(f"the transcript failed; see {app.log_path}")
        uploader = threading.Thread(target=upload_big)
        uploader.start()
        figures["state"] = wait_for_state(app, audio.stem, {"done", "failed"}, 1800)
        figures["transcription_s"] = time.monotonic() - started
        uploader.join()
        figures["upload_done_before_transcript"] = (
            figures["upload_s"] < figures["transcription_s"]
        )
    figures["upload_mib_per_s"] = big_size / MIB / figures["upload_s"]
    return figures


def cli_alone(audio: Path, extra_env: dict[str, str], phases: list[Phase]) -> None:
    """The CLI on the same recording, measured the same way."""
    data_dir = ours.fresh_data_dir("app-memory-cli")
    cmd = ours.command(audio, data_dir, data_dir / "transcript.json")
    log.info("running the CLI: %s", shlex.join(cmd))
    measured = run_measured(
        cmd, env=ours.environment(BUDGET_MB, extra_env), log_path=data_dir / "run.log"
    )
    shutil.rmtree(data_dir / "recordings", ignore_errors=True)
    if measured.returncode != 0:
        raise RuntimeError(f"the CLI exited {measured.returncode}; see {data_dir}")
    phases.append(
        Phase(
            "CLI alone",
            measured.wall_s,
            measured.sampled_peak_mb,
            measured.median_rss_mb,
            measured.hwm_sum_mb,
            measured.samples,
        )
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    extra_env = dict(item.split("=", 1) for item in args.env)
    earlier = [_earlier(item) for item in args.compare]
    audio = corpus.build_speech(args.minutes, corpus.OUT_DIR)
    phases: list[Phase] = []
    tmp = Path(tempfile.mkdtemp(prefix="pd-app-memory-", dir="/tmp"))
    data_dir = ours.fresh_data_dir("app-memory")
    try:
        big = make_source(tmp / "stor-fil.bin", args.upload_mb * MIB)
        with running_app(data_dir, extra_env) as app:
            client = sign_in(app)
            viewer = Viewer(app, client)
            viewer.start()
            with sampled(app.process.pid, "app idle", phases):
                time.sleep(IDLE_S)
            figures = busy(app, client, audio, big, phases)
            viewer.stop()
            client.close()
            figures["main_hwm_mib"] = _hwm_mib(app.process.pid)
            figures["viewer_calls"] = viewer.calls
            figures["viewer_failures"] = viewer.failures
        cli_alone(audio, extra_env, phases)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in ("uploads", "recordings", "tmp"):
            shutil.rmtree(data_dir / folder, ignore_errors=True)
    return {
        "when": report.now(),
        "machine": machine(),
        "audio": audio.name,
        "minutes": args.minutes,
        "upload_mb": args.upload_mb,
        "env": extra_env,
        "phases": [asdict(p) for p in phases],
        "compare": earlier,
        **figures,
    }


def _earlier(item: str) -> dict[str, Any]:
    label, _, path = item.rpartition("=")  # a label may hold "=" itself
    return {"label": label, "phases": json.loads(Path(path).read_text())["phases"]}


def _hwm_mib(pid: int) -> float:
    # Read before the app stops: its own high-water mark over the whole run.
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _share(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f} %"


def markdown(data: dict[str, Any], command: str) -> str:
    rows = [
        (
            p["name"],
            f"{p['seconds']:.0f}",
            f"{p['peak_mib']:.0f}",
            f"{p['peak_mib'] * MB_PER_MIB:.0f}",
            f"{p['median_mib']:.0f}",
            f"{p['hwm_sum_mib']:.0f}",
            _share(p["over_budget_share"]),
            report.verdict(p["peak_mib"] * MB_PER_MIB <= BUDGET_MB),
        )
        for p in data["phases"]
    ]
    headers = (
        "Phase",
        "Seconds",
        "Peak MiB",
        "Peak MB",
        "Median MiB",
        "Sum of per-process peaks MiB",
        f"Time over {BUDGET_MB} MB",
        f"Peak ≤ {BUDGET_MB} MB",
    )
    env = " ".join(f"{k}={v}" for k, v in data["env"].items()) or "none"
    parts = [
        "## Whole-app memory: 2 GB upload and local transcription at once",
        f"Run {data['when']} on {report.machine_line(data['machine'])}.",
        f"```\n{command}\n```",
        f"`python app.py` with the offline base model (int8, beam 5),"
        f" `PD_MEMORY_BUDGET_MB={BUDGET_MB}`, extra environment: {env}. The"
        f" recording is {data['audio']} ({data['minutes']:g} minutes of espeak-ng"
        " speech, MP3) uploaded through the tus endpoint; once its transcript is"
        f" running, {data['upload_mb']} MiB of random bytes go through the same"
        " endpoint in 32 MiB PATCHes. A signed-in viewer calls the page's"
        f" refresh every 2 s ({data['viewer_calls']} calls,"
        f" {data['viewer_failures']} failed). RSS is summed over the app and its"
        " children (ffmpeg), sampled every 50 ms; the CLI is measured the same"
        " way on the same recording. 1 MB = 10⁶ bytes = 0.954 MiB.",
        report.table(headers, rows),
        f"Transcription {data['state']} in {data['transcription_s']:.0f} s; the"
        f" upload took {data['upload_s']:.0f} s ({data['upload_mib_per_s']:.0f}"
        " MiB/s) and finished"
        f" {'before' if data['upload_done_before_transcript'] else 'after'} the"
        f" transcript. The app's own high-water mark (VmHWM) over the whole run:"
        f" {data['main_hwm_mib']:.0f} MiB.",
    ]
    if data.get("compare"):
        parts.append(_comparison(data))
    return "\n\n".join(parts)


def _comparison(data: dict[str, Any]) -> str:
    """Peak and median of each phase, earlier runs first, this run last."""
    runs = [*data["compare"], {"label": "this run", "phases": data["phases"]}]
    names = [p["name"] for p in data["phases"]]
    rows = []
    for run in runs:
        by_name = {p["name"]: p for p in run["phases"]}
        cells = [
            f"{by_name[n]['peak_mib']:.0f} / {by_name[n]['median_mib']:.0f}"
            if n in by_name
            else "–"
            for n in names
        ]
        rows.append((run["label"], *cells))
    intro = (
        "Peak / median RSS in MiB of earlier runs of this benchmark (`--compare`),"
        " each with the code and environment of its time, which its label names:"
    )
    return intro + "\n\n" + report.table(("Run", *names), rows)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m bench.app_memory_bench", description=__doc__
    )
    parser.add_argument("--minutes", type=float, default=5, help="speech length")
    parser.add_argument("--upload-mb", type=int, default=2048, help="MiB uploaded")
    parser.add_argument(
        "--env", action="append", default=[], help="NAME=VALUE for app and CLI"
    )
    parser.add_argument(
        "--compare", action="append", default=[], help="LABEL=RAW.json, earlier"
    )
    parser.add_argument("--docs", type=Path, help="write the section into this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    # The viewer's every request would be logged otherwise.
    logging.getLogger("httpx").setLevel(logging.WARNING)

    data = run(args)
    command = shlex.join(["python", "-m", "bench.app_memory_bench", *argv])
    report.publish(
        corpus.OUT_DIR / "results", SECTION, data, markdown(data, command), args.docs
    )


if __name__ == "__main__":
    main()
