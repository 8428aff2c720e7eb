"""Share links in a real SQLite database: tokens, expiry, revocation, deletion."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from pipeline import sharing
from pipeline.errors import InputError, NotFoundError
from pipeline.storage import Store


def finished_transcript(store: Store, owner: str, tmp_path: Path) -> str:
    """A recording of ``owner`` with a done transcript; the transcript's id."""
    source = tmp_path / f"{owner}-{time.monotonic_ns()}.wav"
    source.write_bytes(b"RIFF")
    recording_id = store.add_recording(
        owner=owner,
        title="samtal",
        source_name=source.name,
        source_path=source,
        fingerprint=source.name,
        size_bytes=4,
    )
    transcript_id = store.add_transcript(
        recording_id, engine="local", model="tiny.en", language="en"
    )
    store.set_transcript_state(transcript_id, "done")
    return transcript_id


def test_the_database_keeps_only_a_hash_of_the_token(
    store: Store, tmp_path: Path
) -> None:
    transcript_id = finished_transcript(store, "anna", tmp_path)

    token, link = sharing.create(store, "anna", transcript_id, with_audio=False)

    assert sharing.TOKEN_PATTERN.fullmatch(token)
    dump = "\n".join(sqlite3.connect(store.data_dir / "pd.sqlite3").iterdump())
    assert token not in dump
    assert token[:12] not in dump
    assert sharing.digest(token) in dump
    assert sharing.resolve(store, token) == link


def test_every_link_gets_its_own_token(store: Store, tmp_path: Path) -> None:
    transcript_id = finished_transcript(store, "anna", tmp_path)

    tokens = {
        sharing.create(store, "anna", transcript_id, with_audio=False)[0]
        for _ in range(20)
    }

    assert len(tokens) == 20


def test_a_revoked_link_is_gone_at_once(store: Store, tmp_path: Path) -> None:
    transcript_id = finished_transcript(store, "anna", tmp_path)
    token, link = sharing.create(store, "anna", transcript_id, with_audio=True)

    revoked = sharing.revoke(store, "anna", link.id)

    assert revoked.state() == "revoked"
    with pytest.raises(sharing.ShareLinkGoneError) as gone:
        sharing.resolve(store, token)
    assert gone.value.status == 410
    assert gone.value.message == sharing.REVOKED_MESSAGE


def test_an_expired_link_is_gone(store: Store, tmp_path: Path) -> None:
    transcript_id = finished_transcript(store, "anna", tmp_path)
    token, link = sharing.create(
        store, "anna", transcript_id, with_audio=False, expires_in_days=1
    )
    assert link.expires_at is not None
    assert link.expires_at == pytest.approx(time.time() + 86400, abs=5)

    with store.transaction() as conn:
        conn.execute(
            "UPDATE share_links SET expires_at = ? WHERE id = ?",
            (time.time() - 1, link.id),
        )

    with pytest.raises(sharing.ShareLinkGoneError) as gone:
        sharing.resolve(store, token)
    assert gone.value.message == sharing.EXPIRED_MESSAGE


def test_a_link_without_expiry_lasts_until_revoked(
    store: Store, tmp_path: Path
) -> None:
    transcript_id = finished_transcript(store, "anna", tmp_path)

    token, link = sharing.create(
        store, "anna", transcript_id, with_audio=False, expires_in_days=0
    )

    assert link.expires_at is None
    assert sharing.resolve(store, token).state(now=time.time() + 10 * 365 * 86400) == (
        "active"
    )


@pytest.mark.parametrize(
    "token",
    ["", "x", "A" * 43, "A" * 44, "../" + "A" * 40, "A" * 42 + "/", "A" * 42 + "%"],
)
def test_an_unknown_or_malformed_token_is_not_found(
    store: Store, tmp_path: Path, token: str
) -> None:
    finished_transcript(store, "anna", tmp_path)

    with pytest.raises(NotFoundError) as missing:
        sharing.resolve(store, token)
    assert missing.value.status == 404


def test_deleting_the_recording_deletes_its_links(store: Store, tmp_path: Path) -> None:
    transcript_id = finished_transcript(store, "anna", tmp_path)
    token, _ = sharing.create(store, "anna", transcript_id, with_audio=True)
    recording_id = store.transcript(transcript_id)["recording_id"]

    store.delete_recording(recording_id)

    with pytest.raises(NotFoundError):
        sharing.resolve(store, token)
    assert store.query("SELECT COUNT(*) AS n FROM share_links")[0]["n"] == 0


def test_another_user_can_neither_share_list_nor_revoke(
    store: Store, tmp_path: Path
) -> None:
    transcript_id = finished_transcript(store, "anna", tmp_path)
    token, link = sharing.create(store, "anna", transcript_id, with_audio=False)

    with pytest.raises(NotFoundError):
        sharing.create(store, "bert", transcript_id, with_audio=True)
    with pytest.raises(NotFoundError):
        sharing.revoke(store, "bert", link.id)
    assert sharing.links_of(store, "bert", link.recording_id) == []
    assert sharing.resolve(store, token).state() == "active"


def test_an_unfinished_transcript_cannot_be_shared(
    store: Store, tmp_path: Path
) -> None:
    transcript_id = finished_transcript(store, "anna", tmp_path)
    store.set_transcript_state(transcript_id, "running")

    with pytest.raises(InputError) as refused:
        sharing.create(store, "anna", transcript_id, with_audio=False)
    assert refused.value.message == sharing.NOT_DONE_MESSAGE


def test_the_owner_sees_each_link_with_its_state(store: Store, tmp_path: Path) -> None:
    transcript_id = finished_transcript(store, "anna", tmp_path)
    _, first = sharing.create(store, "anna", transcript_id, with_audio=False)
    _, second = sharing.create(store, "anna", transcript_id, with_audio=True)
    sharing.revoke(store, "anna", first.id)

    links = sharing.links_of(store, "anna", first.recording_id)

    assert [(link.id, link.state()) for link in links] == [
        (second.id, "active"),
        (first.id, "revoked"),
    ]
    assert links[0].with_audio is True
