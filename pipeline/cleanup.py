"""Automatic cleanup: audio goes a set number of days after its transcript is done.

Transcripts stay; only the audio (the uploaded file and its segments) is
removed, and only files inside the data directory: a file the command line
transcribed from elsewhere is never touched.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from pipeline.storage import Store

log = logging.getLogger(__name__)

DAY_S = 86_400.0


def audio_expiry(
    store: Store, recording_id: str, retention_days: float
) -> float | None:
    """When the recording's audio will be deleted (epoch seconds), if ever."""
    if retention_days <= 0:
        return None
    rows = store.query(
        "SELECT MAX(finished_at) AS done FROM transcripts"
        " WHERE recording_id = ? AND state = 'done'",
        (recording_id,),
    )
    done = rows[0]["done"] if rows else None
    return None if done is None else float(done) + retention_days * DAY_S


def purge_expired_audio(
    store: Store, retention_days: float, *, now: float | None = None
) -> list[str]:
    """Delete the audio of every recording past its retention; their ids."""
    if retention_days <= 0:
        return []
    cutoff = (now if now is not None else time.time()) - retention_days * DAY_S
    rows = store.query(
        "SELECT r.id, r.source_path FROM recordings r"
        " WHERE r.audio_deleted_at IS NULL"
        " AND NOT EXISTS (SELECT 1 FROM transcripts t WHERE t.recording_id = r.id"
        "   AND t.state IN ('waiting', 'running'))"
        " AND (SELECT MAX(finished_at) FROM transcripts t"
        "   WHERE t.recording_id = r.id AND t.state = 'done') < ?",
        (cutoff,),
    )
    purged = []
    for row in rows:
        _delete_audio(store, row["id"], Path(row["source_path"]))
        purged.append(row["id"])
    if purged:
        log.info("deleted the audio of %d recordings past retention", len(purged))
    return purged


def _delete_audio(store: Store, recording_id: str, source: Path) -> None:
    folder = store.recording_dir(recording_id)
    shutil.rmtree(folder / "segments", ignore_errors=True)
    if source.is_relative_to(store.data_dir.resolve()) or source.is_relative_to(
        store.data_dir
    ):
        source.unlink(missing_ok=True)
    with store.transaction() as conn:
        conn.execute(
            "UPDATE recordings SET audio_deleted_at = ?, updated_at = ? WHERE id = ?",
            (time.time(), time.time(), recording_id),
        )


def disk_usage(store: Store) -> tuple[int, int]:
    """Bytes used by the data directory and bytes free on its disk."""
    used = sum(f.stat().st_size for f in store.data_dir.rglob("*") if f.is_file())
    return used, shutil.disk_usage(store.data_dir).free
