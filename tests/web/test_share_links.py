"""Share links against the real app process: what a link shows, and nothing more.

The links are made with ``pipeline.sharing`` on the app's own database (the
browser test makes them through the UI); every request goes over HTTP to the
running app, as a visitor without cookies unless a test says otherwise.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pipeline import sharing
from pipeline.storage import Store
from tests.conftest import speak
from tests.web.conftest import RunningApp, tus_headers, tus_upload, wait_for_transcript

SHARED_TITLE = "delat-samtal"
PRIVATE_TITLE = "annas-privata-samtal"


@dataclass(frozen=True)
class Finished:
    recording_id: str
    transcript_id: str


@pytest.fixture(scope="module")
def recordings(
    running_app: RunningApp, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Finished]:
    """Two finished recordings of anna: one to share, one that stays private."""
    folder = tmp_path_factory.mktemp("share")
    spoken = {
        SHARED_TITLE: "The quick brown fox jumps over the lazy dog.",
        PRIVATE_TITLE: "Six spoons of fresh snow peas and five thick slabs.",
    }
    found = {}
    with running_app.login("anna") as anna:
        for title, text in spoken.items():
            tus_upload(anna, speak(text, folder / f"{title}.wav", gap_s=0.5))
        for title in spoken:
            row = wait_for_transcript(anna, running_app, title)
            assert row["state"] == "done", row
            found[title] = Finished(str(row["recording_id"]), str(row["transcript_id"]))
    return found


@pytest.fixture
def store(running_app: RunningApp) -> Iterator[Store]:
    """The running app's own database, opened beside it."""
    with Store(running_app.data_dir) as opened:
        yield opened


@pytest.fixture
def visitor(running_app: RunningApp) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=running_app.url, timeout=30) as client:
        yield client


def share(
    store: Store, finished: Finished, *, with_audio: bool = False
) -> tuple[str, sharing.ShareLink]:
    return sharing.create(store, "anna", finished.transcript_id, with_audio=with_audio)


def test_a_link_shows_the_transcript_to_a_visitor_without_a_login(
    store: Store, visitor: httpx.Client, recordings: dict[str, Finished]
) -> None:
    token, _ = share(store, recordings[SHARED_TITLE])

    page = visitor.get(f"/s/{token}")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    text = page.text.lower()
    assert SHARED_TITLE in text
    assert "fox" in text and "lazy dog" in text
    assert "<script" not in text and "<audio" not in text
    assert "set-cookie" not in page.headers
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    exported = visitor.get(f"/s/{token}/export.txt")
    assert exported.status_code == 200
    assert "fox" in exported.text.lower()
    assert exported.headers["content-disposition"].startswith("attachment")


def test_audio_plays_with_ranges_only_when_the_owner_allowed_it(
    store: Store, visitor: httpx.Client, recordings: dict[str, Finished]
) -> None:
    silent, _ = share(store, recordings[SHARED_TITLE])
    with_audio, _ = share(store, recordings[SHARED_TITLE], with_audio=True)

    refused = visitor.get(f"/s/{silent}/audio")
    page = visitor.get(f"/s/{with_audio}")
    part = visitor.get(f"/s/{with_audio}/audio", headers={"Range": "bytes=0-99"})

    assert refused.status_code == 404
    assert "Ljudet delas inte" in refused.text
    assert f"src='{with_audio}/audio'" in page.text
    assert part.status_code == 206
    assert len(part.content) == 100
    assert part.content[:4] == b"RIFF"
    assert part.headers["content-range"].startswith("bytes 0-99/")


@pytest.mark.parametrize("end", ["revoke", "expire"])
def test_a_revoked_or_expired_link_stops_working_everywhere(
    store: Store, visitor: httpx.Client, recordings: dict[str, Finished], end: str
) -> None:
    token, link = share(store, recordings[SHARED_TITLE], with_audio=True)
    assert visitor.get(f"/s/{token}/audio").status_code == 200

    if end == "revoke":
        sharing.revoke(store, "anna", link.id)
        expected = sharing.REVOKED_MESSAGE
    else:
        with store.transaction() as conn:
            conn.execute(
                "UPDATE share_links SET expires_at = ? WHERE id = ?",
                (time.time() - 1, link.id),
            )
        expected = sharing.EXPIRED_MESSAGE

    for suffix in ("", "/audio", "/export.txt"):
        gone = visitor.get(f"/s/{token}{suffix}")
        assert gone.status_code == 410, suffix
        assert expected in gone.text
        assert '<html lang="sv">' in gone.text
        assert "fox" not in gone.text.lower()


def test_a_link_opens_nothing_but_its_transcript(
    running_app: RunningApp,
    store: Store,
    visitor: httpx.Client,
    recordings: dict[str, Finished],
) -> None:
    shared, private = recordings[SHARED_TITLE], recordings[PRIVATE_TITLE]
    token, _ = share(store, shared)
    ids = [
        shared.recording_id,
        shared.transcript_id,
        private.recording_id,
        private.transcript_id,
    ]
    attempts = [
        *(f"/s/{some_id}" for some_id in ids),
        *(f"/s/{token}/{some_id}" for some_id in ids),
        f"/s/{token}/audio",
        f"/s/{token}/export.json",
        f"/s/{token}/export.docx",
        f"/s/{token}/../../api/recordings/{private.recording_id}/audio",
        f"/s/{token}/%2e%2e/%2e%2e/api/transcripts/{private.transcript_id}/export.txt",
        f"/s/{token}%2F..%2F{private.transcript_id}",
        f"/s/{token[:-1]}",
        f"/s/{token}x",
        f"/s/{token.upper()}",
        f"/api/recordings/{private.recording_id}/audio?token={token}",
        f"/api/transcripts/{private.transcript_id}/export.txt?token={token}",
        f"/app/?token={token}",
        "/app/gradio_api/info",
        "/app/config",
        "/app/gradio_api/queue/status",
    ]
    # The token offered as if it were a session, in a cookie and in headers.
    borrowed = {"Cookie": f"pd_session={token}", "Authorization": f"Bearer {token}"}
    answers = []
    for path in attempts:
        for headers in ({}, borrowed):
            answer = visitor.get(path, headers=headers, follow_redirects=False)
            answers.append((path, bool(headers), answer.status_code))
            assert PRIVATE_TITLE not in answer.text, path
            assert "snow peas" not in answer.text.lower(), path
    refused = (303, 401, 404, 405, 410)
    assert all(status in refused for *_, status in answers), answers
    # A Gradio call with the token instead of a session gets nothing.
    called = visitor.post(
        "/app/gradio_api/call/refresh",
        json={"data": [private.recording_id]},
        headers=borrowed,
    )
    assert called.status_code in (401, 404), called.text
    assert (
        visitor.get("/", headers=borrowed, follow_redirects=False)
        .headers["location"]
        .endswith("/login")
    )


def test_a_link_cannot_change_anything(
    store: Store, visitor: httpx.Client, recordings: dict[str, Finished]
) -> None:
    token, _ = share(store, recordings[SHARED_TITLE], with_audio=True)

    for method in ("POST", "PUT", "PATCH", "DELETE"):
        answer = visitor.request(method, f"/s/{token}", content=b"{}")
        assert answer.status_code == 405, method
    deleted = visitor.delete(
        f"/api/recordings/{recordings[SHARED_TITLE].recording_id}",
        headers={"Cookie": f"pd_session={token}", "X-CSRF-Token": token},
    )
    assert deleted.status_code == 401
    assert visitor.get(f"/s/{token}").status_code == 200


def test_deleting_the_recording_kills_its_links(
    running_app: RunningApp, store: Store, visitor: httpx.Client, tmp_path: Path
) -> None:
    source = speak("Please call Stella.", tmp_path / "bald-borta.wav", gap_s=0.5)
    with running_app.login("anna") as anna:
        tus_upload(anna, source)
        row = wait_for_transcript(anna, running_app, "bald-borta")
        token, _ = sharing.create(
            store, "anna", str(row["transcript_id"]), with_audio=True
        )
        assert visitor.get(f"/s/{token}/audio").status_code == 200

        deleted = anna.delete(
            f"/api/recordings/{row['recording_id']}", headers=tus_headers(anna)
        )
    assert deleted.status_code == 204

    for suffix in ("", "/audio", "/export.txt"):
        gone = visitor.get(f"/s/{token}{suffix}")
        assert gone.status_code == 404, suffix
        assert "Länken finns inte" in gone.text
    with sqlite3.connect(running_app.data_dir / "pd.sqlite3") as conn:
        left = conn.execute(
            "SELECT COUNT(*) FROM share_links WHERE recording_id = ?",
            (row["recording_id"],),
        ).fetchone()[0]
    assert left == 0
