"""The app killed with SIGKILL mid-transcription picks its queue up on restart."""

from __future__ import annotations

import re
import signal
import sqlite3
import time
from pathlib import Path

from tests.conftest import concat
from tests.web.conftest import (
    RunningApp,
    add_users,
    app_env,
    free_port,
    start_app,
    stop_app,
    tus_upload,
    wait_for_transcript,
)


def done_indexes(db: Path) -> set[int]:
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT idx FROM transcript_segments")}


def test_a_killed_app_resumes_transcription_without_redoing_segments(
    english_wav: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    env = app_env(data_dir, PD_MEMORY_BUDGET_MB="300")
    add_users(env)
    port = free_port()
    app = start_app(data_dir, port, env)
    source = concat([english_wav] * 4, tmp_path / "langt-mote.wav")
    with app.login("anna") as anna:
        tus_upload(anna, source)
    deadline = time.monotonic() + 120
    while len(done_indexes(data_dir / "pd.sqlite3")) < 2:
        assert time.monotonic() < deadline, app.log.read_text()[-2000:]
        time.sleep(0.2)
    app.process.send_signal(signal.SIGKILL)
    app.process.wait()
    finished = done_indexes(data_dir / "pd.sqlite3")
    log_before = len(app.log.read_text())

    restarted = start_app(data_dir, port, env)
    try:
        with restarted.login("anna") as anna:
            row = wait_for_transcript(anna, restarted, "langt-mote")
    finally:
        stop_app(restarted)

    assert row["state"] == "done", row["error"]
    after = restarted.log.read_text()[log_before:]
    started = {int(n) for n in re.findall(r"segment (\d+) started", after)}
    assert started and not started & finished
    with sqlite3.connect(data_dir / "pd.sqlite3") as conn:
        total = conn.execute("SELECT COUNT(*) FROM segments").fetchone()[0]
    assert done_indexes(data_dir / "pd.sqlite3") == set(range(total))


def test_an_upload_that_is_not_audio_fails_with_a_clear_message(
    running_app: RunningApp, tmp_path: Path
) -> None:
    notes = tmp_path / "anteckningar.mp3"
    notes.write_text("Det här är inte ljud.\n" * 100)
    with running_app.login("bert") as bert:
        tus_upload(bert, notes)
        row = wait_for_transcript(bert, running_app, "anteckningar")

    assert row["state"] == "failed"
    assert "inte en ljud- eller videofil" in str(row["error"])
