"""The data directory: one recording's rows and files go together."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pipeline import recordings
from pipeline.errors import StorageError
from pipeline.storage import DISK_FULL_MESSAGE, Segment, Store
from tests.conftest import fill_disk


def count_rows(db: Path, recording_id: str) -> int:
    with sqlite3.connect(db) as conn:
        queries = [
            ("SELECT COUNT(*) FROM recordings WHERE id = ?"),
            ("SELECT COUNT(*) FROM segments WHERE recording_id = ?"),
            ("SELECT COUNT(*) FROM transcripts WHERE recording_id = ?"),
            (
                "SELECT COUNT(*) FROM transcript_segments WHERE transcript_id IN"
                " (SELECT id FROM transcripts WHERE recording_id = ?)"
            ),
        ]
        return sum(conn.execute(q, (recording_id,)).fetchone()[0] for q in queries)


def test_deleting_a_recording_removes_every_row_and_file(
    english_wav: Path, store: Store
) -> None:
    recording_id = recordings.find_or_add(store, english_wav, owner="tester")
    pieces = recordings.prepare(store, recording_id, target_s=15)
    transcript_id = store.add_transcript(
        recording_id, engine="local", model="tiny.en", language="en"
    )
    store.save_segment_result(
        transcript_id, pieces[0], text="hej", lines=[], elapsed_s=1.0
    )
    keep = recordings.find_or_add(store, english_wav, owner="someone-else")
    db = store.data_dir / "pd.sqlite3"
    assert count_rows(db, recording_id) > 0

    store.delete_recording(recording_id)

    assert count_rows(db, recording_id) == 0
    assert not store.recording_dir(recording_id).exists()
    assert store.recording(keep)["owner"] == "someone-else"
    assert english_wav.exists()


def test_the_database_survives_reopening(english_wav: Path, store: Store) -> None:
    recording_id = recordings.find_or_add(store, english_wav, owner="tester")

    with Store(store.data_dir) as reopened:
        assert reopened.recording(recording_id)["title"] == "english"


def test_too_little_disk_refuses_to_cut_with_a_clear_message(
    english_wav: Path, small_disk: Path
) -> None:
    with Store(small_disk / "data") as store:
        recording_id = recordings.find_or_add(store, english_wav, owner="tester")

        with pytest.raises(StorageError) as caught:
            recordings.prepare(store, recording_id, target_s=15)

        assert caught.value.message == DISK_FULL_MESSAGE
        assert caught.value.status == 507
        assert store.segments(recording_id) == []


def test_a_full_disk_fails_the_write_cleanly_and_corrupts_nothing(
    english_wav: Path, small_disk: Path
) -> None:
    with Store(small_disk / "data") as store:
        recording_id = recordings.find_or_add(store, english_wav, owner="tester")
        transcript_id = store.add_transcript(
            recording_id, engine="local", model="tiny.en", language="en"
        )
        piece = Segment(recording_id, 0, 0.0, 10.0, small_disk / "0.flac")
        filler = fill_disk(small_disk)
        big = "ord " * 500_000

        with pytest.raises(StorageError) as caught:
            store.save_segment_result(
                transcript_id, piece, text=big, lines=[], elapsed_s=1.0
            )

        assert caught.value.message == DISK_FULL_MESSAGE
        filler.unlink()
        store.save_segment_result(
            transcript_id, piece, text="hej", lines=[], elapsed_s=1.0
        )
    with sqlite3.connect(small_disk / "data" / "pd.sqlite3") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        texts = conn.execute("SELECT text FROM transcript_segments").fetchall()
    assert texts == [("hej",)]
