"""Audio retention: audio goes N days after the transcript is done; text stays."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from pipeline import cleanup, recordings
from pipeline.storage import Store
from tests.conftest import concat


def finished_recording(store: Store, source: Path, *, done_days_ago: float) -> str:
    recording_id = recordings.find_or_add(store, source, owner="tester")
    pieces = recordings.prepare(store, recording_id, target_s=15)
    transcript_id = store.add_transcript(
        recording_id, engine="local", model="tiny.en", language="en"
    )
    store.save_segment_result(
        transcript_id, pieces[0], text="hej", lines=[], elapsed_s=1.0
    )
    store.set_transcript_state(transcript_id, "done")
    with store.transaction() as conn:
        conn.execute(
            "UPDATE transcripts SET finished_at = ? WHERE id = ?",
            (time.time() - done_days_ago * cleanup.DAY_S, transcript_id),
        )
    return recording_id


def owned_copy(store: Store, source: Path, name: str) -> Path:
    folder = store.data_dir / "recordings" / name
    folder.mkdir(parents=True)
    return Path(shutil.copyfile(source, folder / "source.wav"))


def test_audio_past_retention_is_deleted_and_the_transcript_kept(
    english_wav: Path, store: Store
) -> None:
    old = finished_recording(
        store, owned_copy(store, english_wav, "old"), done_days_ago=31
    )
    twice = concat([english_wav, english_wav], store.data_dir / "twice.wav")
    fresh = finished_recording(
        store, owned_copy(store, twice, "fresh"), done_days_ago=29
    )
    old_source = Path(store.recording(old)["source_path"])

    purged = cleanup.purge_expired_audio(store, retention_days=30)

    assert purged == [old]
    assert not old_source.exists()
    assert not (store.recording_dir(old) / "segments").exists()
    assert store.recording(old)["audio_deleted_at"] is not None
    assert store.query("SELECT text FROM transcript_segments")  # text stays
    assert Path(store.recording(fresh)["source_path"]).exists()
    assert cleanup.purge_expired_audio(store, retention_days=30) == []


def test_zero_days_keeps_audio_forever(english_wav: Path, store: Store) -> None:
    finished_recording(store, owned_copy(store, english_wav, "a"), done_days_ago=400)

    assert cleanup.purge_expired_audio(store, retention_days=0) == []
    assert cleanup.audio_expiry(store, "a", 0) is None


def test_files_outside_the_data_directory_are_never_deleted(
    english_wav: Path, store: Store
) -> None:
    # The command line transcribes files where they are; they are the user's.
    outside = finished_recording(store, english_wav, done_days_ago=90)

    assert cleanup.purge_expired_audio(store, retention_days=30) == [outside]
    assert english_wav.exists()


def test_the_expiry_date_is_the_finish_plus_the_retention(
    english_wav: Path, store: Store
) -> None:
    recording_id = finished_recording(
        store, owned_copy(store, english_wav, "b"), done_days_ago=10
    )

    expires = cleanup.audio_expiry(store, recording_id, 30)

    assert expires is not None
    assert abs(expires - (time.time() + 20 * cleanup.DAY_S)) < 60
