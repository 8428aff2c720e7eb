"""The whole app in a real process: upload, transcription, exports, health, privacy."""

from __future__ import annotations

import io
import json
import re
import shutil
import sqlite3
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client

from pipeline.config import Settings
from tests.conftest import concat
from tests.web.conftest import (
    RunningApp,
    tus_headers,
    tus_upload,
    wait_for_transcript,
)

VICTIM_TITLE = "annas-hemliga-mote"


@pytest.fixture(scope="module")
def anna_recording(
    running_app: RunningApp, english_wav: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, object]:
    """Anna's finished recording; other tests try to reach it as someone else."""
    source = tmp_path_factory.mktemp("anna") / f"{VICTIM_TITLE}.wav"
    shutil.copyfile(english_wav, source)
    with running_app.login("anna") as anna:
        tus_upload(anna, source)
        return wait_for_transcript(anna, running_app, VICTIM_TITLE)


def gradio_client(app: RunningApp, client: httpx.Client) -> Client:
    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    return Client(f"{app.url}/app/", headers={"Cookie": cookie}, verbose=False)


def test_health_and_readiness_answer(running_app: RunningApp) -> None:
    assert httpx.get(running_app.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(running_app.url + "/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"


def test_an_uploaded_recording_is_transcribed_and_exported_in_every_format(
    running_app: RunningApp, anna_recording: dict[str, object]
) -> None:
    assert anna_recording["state"] == "done", anna_recording["error"]
    base = f"/api/transcripts/{anna_recording['transcript_id']}/export"
    with running_app.login("anna") as anna:
        txt = anna.get(base + ".txt")
        srt = anna.get(base + ".srt")
        vtt = anna.get(base + ".vtt")
        body = anna.get(base + ".json").json()
        docx = anna.get(base + ".docx")

    assert txt.status_code == 200 and "stella" in txt.text.lower()
    assert VICTIM_TITLE in txt.headers["content-disposition"]
    assert srt.text.startswith("1\n00:00:")
    assert vtt.text.startswith("WEBVTT")
    assert body["engine"] == "local" and body["segments"]
    with zipfile.ZipFile(io.BytesIO(docx.content)) as document:
        xml = document.read("word/document.xml").decode()
    assert VICTIM_TITLE in xml and "stella" in xml.lower()


def test_a_title_outside_latin_1_still_downloads_under_its_own_name(
    running_app: RunningApp, anna_recording: dict[str, object]
) -> None:
    title = "Möte – vår plan 🎓"
    db = running_app.data_dir / "pd.sqlite3"
    recording_id = anna_recording["recording_id"]
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE recordings SET title = ? WHERE id = ?", (title, recording_id)
        )
    try:
        with running_app.login("anna") as anna:
            answer = anna.get(
                f"/api/transcripts/{anna_recording['transcript_id']}/export.txt"
            )
    finally:
        with sqlite3.connect(db) as conn:
            conn.execute(
                "UPDATE recordings SET title = ? WHERE id = ?",
                (VICTIM_TITLE, recording_id),
            )

    assert answer.status_code == 200
    disposition = answer.headers["content-disposition"]
    assert 'filename="M_te _ v_r plan _.txt"' in disposition
    assert "filename*=UTF-8''M%C3%B6te%20_%20v%C3%A5r%20plan%20_.txt" in disposition


def test_audio_is_served_with_range_requests_to_its_owner(
    running_app: RunningApp, anna_recording: dict[str, object], english_wav: Path
) -> None:
    url = f"/api/recordings/{anna_recording['recording_id']}/audio"
    with running_app.login("anna") as anna:
        whole = anna.get(url)
        part = anna.get(url, headers={"Range": "bytes=100-199"})

    assert whole.content == english_wav.read_bytes()
    assert part.status_code == 206
    assert part.content == english_wav.read_bytes()[100:200]
    assert part.headers["content-range"].startswith("bytes 100-199/")


def test_metrics_count_jobs_and_memory(
    running_app: RunningApp, anna_recording: dict[str, object]
) -> None:
    text = httpx.get(running_app.url + "/metrics").text

    assert re.search(r'^pd_jobs\{state="done"\} [1-9]', text, re.M)
    assert re.search(r"^pd_upload_bytes_received_total [1-9]", text, re.M)
    rss = re.search(r"^pd_process_resident_memory_bytes (\d+)", text, re.M)
    assert rss and int(rss.group(1)) > 50 * 1024**2
    assert re.search(r"^pd_segment_seconds_count [1-9]", text, re.M)


def test_the_page_requires_a_login_and_redirects_there(running_app: RunningApp) -> None:
    anonymous = httpx.get(running_app.url + "/", follow_redirects=False)
    page = httpx.get(running_app.url + "/app/")

    assert anonymous.headers["location"] == "/login"
    assert page.status_code in (303, 401)
    assert VICTIM_TITLE not in page.text


def test_uploads_without_the_csrf_token_are_refused(running_app: RunningApp) -> None:
    with running_app.login("bert") as bert:
        refused = bert.post(
            "/api/uploads/",
            headers={"Tus-Resumable": "1.0.0", "Upload-Length": "10"},
        )

    assert refused.status_code == 403


def route_samples(
    app: RunningApp, victim: dict[str, object], upload_path: str
) -> list[tuple[str, str]]:
    """Every route of the app with the victim's ids filled in."""
    from web.server import create_app

    settings = Settings(data_dir=app.data_dir.parent / "routes-only", model="tiny.en")
    built = create_app(settings, run_worker=False)
    routes = list(walk_routes(built.routes))
    source = app.data_dir / "recordings" / str(victim["recording_id"])
    values = {
        "recording_id": str(victim["recording_id"]),
        "transcript_id": str(victim["transcript_id"]),
        "upload_id": upload_path.rsplit("/", 1)[-1],
        "fmt": "json",
        "path": str(next(source.glob("source.*"))),
        "path_or_url": str(next(source.glob("source.*"))),
        "url_path": str(next(source.glob("source.*"))),
        "api_name": "do_rename",
    }
    filled = []
    for path, method in routes:
        concrete = re.sub(
            r"\{(\w+)(:path)?\}", lambda m: values.get(m.group(1), "x"), path
        )
        filled.append((concrete, method))
    return filled


def walk_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every (path, method) below ``routes``: included routers and mounts too."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            inner = prefix + route.include_context.prefix
            yield from walk_routes(included.routes, inner)
        elif getattr(route, "routes", None) and hasattr(route, "path"):
            yield from walk_routes(route.routes, prefix + route.path)
        elif hasattr(route, "path"):
            for method in _methods(route):
                yield prefix + route.path, method


def _methods(route: object) -> list[str]:
    methods = getattr(route, "methods", None) or {"GET"}
    return sorted(set(methods) - {"HEAD"})


def test_nothing_of_one_user_reaches_another_user_or_a_visitor(
    running_app: RunningApp,
    anna_recording: dict[str, object],
    english_wav: Path,
    tmp_path: Path,
) -> None:
    # Anna also has an upload in progress; its id must be useless to others.
    with running_app.login("anna") as anna:
        created = anna.post(
            "/api/uploads/",
            headers={**tus_headers(anna), "Upload-Length": "1000"},
        )
        upload_path = created.headers["Location"]
    secrets = {
        VICTIM_TITLE,
        str(anna_recording["recording_id"]),
        str(anna_recording["transcript_id"]),
        upload_path.rsplit("/", 1)[-1],
    }
    answered = []
    with (
        running_app.login("bert") as bert,
        httpx.Client(base_url=running_app.url, timeout=30) as visitor,
    ):
        for path, method in route_samples(running_app, anna_recording, upload_path):
            if path in ("/logout", "/login"):
                continue
            for who, client in (("bert", bert), ("visitor", visitor)):
                try:
                    response = client.request(
                        method,
                        path,
                        headers=tus_headers(bert) if who == "bert" else {},
                        content=b"{}" if method in ("POST", "PATCH", "PUT") else None,
                        timeout=3,
                    )
                except (httpx.ReadTimeout, httpx.RemoteProtocolError):
                    continue  # an event stream that sent nothing, or was cut
                # An error page may echo the path it was asked for.
                leaked = [s for s in secrets if s in response.text and s not in path]
                assert not leaked, (who, method, path, response.status_code)
                answered.append((who, method, path, response.status_code))

    # OPTIONS only describes the tus server; it says nothing about an upload.
    aimed = [
        a for a in answered if a[1] != "OPTIONS" and any(s in a[2] for s in secrets)
    ]
    assert len(aimed) >= 10
    # Requests malformed for the route (400, 412, 415) are refused before any
    # lookup; those shaped right are answered as if the thing did not exist.
    refused = (400, 401, 403, 404, 405, 412, 415, 422)
    assert all(status in refused for *_, status in aimed), aimed
    with running_app.login("bert") as bert:
        well_formed = {**tus_headers(bert), "Upload-Offset": "0"}
        patch = bert.patch(
            upload_path,
            content=b"x" * 10,
            headers={**well_formed, "Content-Type": "application/offset+octet-stream"},
        )
        head = bert.head(upload_path, headers=well_formed)
        delete = bert.delete(upload_path, headers=well_formed)
    assert (patch.status_code, head.status_code, delete.status_code) == (404,) * 3
    # Anna's recording and upload survived every attempt.
    with running_app.login("anna") as anna:
        assert anna.head(upload_path, headers=tus_headers(anna)).status_code == 200
    assert anna_title(running_app, anna_recording) == VICTIM_TITLE


def test_gradio_functions_never_touch_another_users_recording(
    running_app: RunningApp, anna_recording: dict[str, object]
) -> None:
    # The selected recording lives in server-side session state, which the
    # API cannot set; ids passed in any other argument must not work either.
    victim = str(anna_recording["recording_id"])
    answers = []
    with running_app.login("bert") as bert:
        client = gradio_client(running_app, bert)
        for api_name, args in (
            ("/refresh", [victim]),
            ("/do_rename", [victim]),
            ("/do_rename", ["stulen"]),
            ("/do_delete", [victim]),
            ("/do_retry", [victim]),
        ):
            try:
                answers.append(client.predict(*args, api_name=api_name))
            except Exception as exc:  # gr.Error arrives as an AppError
                answers.append(str(exc))

    assert VICTIM_TITLE not in json.dumps(answers)
    assert anna_title(running_app, anna_recording) == VICTIM_TITLE
    with running_app.login("anna") as anna:
        audio = anna.get(f"/api/recordings/{victim}/audio")
    assert audio.status_code == 200


def test_deleting_a_recording_removes_its_rows_and_files(
    running_app: RunningApp, english_wav: Path, tmp_path: Path
) -> None:
    source = concat([english_wav], tmp_path / "att-ta-bort.wav")
    with running_app.login("bert") as bert:
        tus_upload(bert, source)
        row = wait_for_transcript(bert, running_app, "att-ta-bort")
        folder = running_app.data_dir / "recordings" / str(row["recording_id"])
        assert folder.exists()
        deleted = bert.delete(
            f"/api/recordings/{row['recording_id']}", headers=tus_headers(bert)
        )
        assert deleted.status_code == 204
        gone = bert.get(f"/api/recordings/{row['recording_id']}/audio")

    assert gone.status_code == 404
    assert not folder.exists()
    with sqlite3.connect(running_app.data_dir / "pd.sqlite3") as conn:
        for table, column in (
            ("recordings", "id"),
            ("segments", "recording_id"),
            ("transcripts", "recording_id"),
        ):
            count = conn.execute(
                f"SELECT COUNT(*) FROM {table} WHERE {column} = ?",
                (row["recording_id"],),
            ).fetchone()[0]
            assert count == 0, table
        orphans = conn.execute(
            "SELECT COUNT(*) FROM transcript_segments WHERE transcript_id = ?",
            (row["transcript_id"],),
        ).fetchone()[0]
    assert orphans == 0


def anna_title(app: RunningApp, victim: dict[str, object]) -> str:
    with sqlite3.connect(app.data_dir / "pd.sqlite3") as conn:
        found = conn.execute(
            "SELECT title FROM recordings WHERE id = ?", (victim["recording_id"],)
        ).fetchone()
    return str(found[0]) if found else ""
