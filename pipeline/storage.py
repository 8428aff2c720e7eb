"""The data directory: one SQLite database and one folder per recording.

Layout under ``data_dir``::

    pd.sqlite3                     every row of every recording
    recordings/<id>/source.<ext>   the uploaded file (when the app owns it)
    recordings/<id>/segments/      16 kHz mono pieces cut by ffmpeg
    models/                        local model files prepared at first use

Everything of one recording lives in its folder and in rows keyed by its id,
so ``delete_recording`` removes it completely. This module owns the schema;
the connection lives in ``pipeline._database`` and the transcript methods of
``Store`` in ``pipeline._transcript_rows``.
"""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline._database import DISK_FULL_MESSAGE, disk_error
from pipeline._transcript_rows import TranscriptRows
from pipeline.errors import NotFoundError

# Reached through this module by the rest of the pipeline.
__all__ = [
    "ADDED_COLUMNS",
    "CURRENT_TRANSCRIPT_SQL",
    "DISK_FULL_MESSAGE",
    "SCHEMA",
    "Segment",
    "Store",
    "disk_error",
]

SCHEMA = """
CREATE TABLE IF NOT EXISTS recordings (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    title TEXT NOT NULL,
    source_name TEXT NOT NULL,
    source_path TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    duration_s REAL,
    state TEXT NOT NULL,
    error TEXT,
    audio_deleted_at REAL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS recordings_owner ON recordings(owner, fingerprint);
CREATE TABLE IF NOT EXISTS segments (
    recording_id TEXT NOT NULL REFERENCES recordings(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    start_s REAL NOT NULL,
    end_s REAL NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (recording_id, idx)
);
CREATE TABLE IF NOT EXISTS transcripts (
    id TEXT PRIMARY KEY,
    recording_id TEXT NOT NULL REFERENCES recordings(id) ON DELETE CASCADE,
    engine TEXT NOT NULL,
    model TEXT NOT NULL,
    language TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT,
    cost_usd REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE INDEX IF NOT EXISTS transcripts_recording ON transcripts(recording_id);
CREATE TABLE IF NOT EXISTS transcript_segments (
    transcript_id TEXT NOT NULL REFERENCES transcripts(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    start_s REAL NOT NULL,
    end_s REAL NOT NULL,
    text TEXT NOT NULL,
    lines TEXT NOT NULL,
    elapsed_s REAL NOT NULL,
    cost_usd REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (transcript_id, idx)
);
CREATE TABLE IF NOT EXISTS comparisons (
    id TEXT PRIMARY KEY,
    recording_id TEXT NOT NULL REFERENCES recordings(id) ON DELETE CASCADE,
    reference_id TEXT NOT NULL REFERENCES transcripts(id) ON DELETE CASCADE,
    other_id TEXT NOT NULL REFERENCES transcripts(id) ON DELETE CASCADE,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS comparisons_recording ON comparisons(recording_id);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    is_admin INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user_name);
CREATE TABLE IF NOT EXISTS login_attempts (
    key TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS login_attempts_key ON login_attempts(key, at);
CREATE TABLE IF NOT EXISTS share_links (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    transcript_id TEXT NOT NULL REFERENCES transcripts(id) ON DELETE CASCADE,
    recording_id TEXT NOT NULL REFERENCES recordings(id) ON DELETE CASCADE,
    owner TEXT NOT NULL,
    with_audio INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS share_links_recording ON share_links(recording_id);
"""


#: Columns added after a database may already exist: (table, column, type).
#: A transcript of a stretch has ``start_s``/``end_s``; a recording whose owner
#: picked its transcript has ``chosen_transcript_id``.
ADDED_COLUMNS = (
    ("transcripts", "start_s", "REAL"),
    ("transcripts", "end_s", "REAL"),
    ("recordings", "chosen_transcript_id", "TEXT"),
)

#: SQL for the id of recording ``r``'s transcript: the one its owner chose, else
#: the newest that is not the other side of a comparison.
CURRENT_TRANSCRIPT_SQL = (
    "COALESCE((SELECT id FROM transcripts WHERE id = r.chosen_transcript_id"
    "   AND recording_id = r.id),"
    " (SELECT id FROM transcripts WHERE recording_id = r.id"
    "   AND id NOT IN (SELECT other_id FROM comparisons)"
    "   ORDER BY created_at DESC LIMIT 1))"
)


@dataclass(frozen=True)
class Segment:
    """A piece of a recording's audio on disk, with its place in the original."""

    recording_id: str
    idx: int
    start_s: float
    end_s: float
    path: Path

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


class Store(TranscriptRows):
    """Thread-safe access to the database and the files of the data directory.

    The connection, ``transaction`` and ``query`` come from ``Database``; the
    transcript methods from ``TranscriptRows``; recordings and segments are here.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        super().__init__(self.data_dir / "pd.sqlite3", SCHEMA, ADDED_COLUMNS)

    # Recordings --------------------------------------------------------------

    def recording_dir(self, recording_id: str) -> Path:
        return self.data_dir / "recordings" / recording_id

    def add_recording(
        self,
        *,
        owner: str,
        title: str,
        source_name: str,
        source_path: Path,
        fingerprint: str,
        size_bytes: int,
        recording_id: str | None = None,
    ) -> str:
        recording_id = recording_id or uuid.uuid4().hex
        now = time.time()
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO recordings (id, owner, title, source_name, source_path,"
                " fingerprint, size_bytes, state, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'new', ?, ?)",
                (
                    recording_id,
                    owner,
                    title,
                    source_name,
                    str(source_path),
                    fingerprint,
                    size_bytes,
                    now,
                    now,
                ),
            )
        return recording_id

    def recording(self, recording_id: str) -> dict[str, Any]:
        rows = self.query("SELECT * FROM recordings WHERE id = ?", (recording_id,))
        if not rows:
            raise NotFoundError("Inspelningen finns inte (den kan ha tagits bort).")
        return rows[0]

    def owned_recording(self, owner: str, recording_id: str) -> dict[str, Any]:
        """The recording if ``owner`` has it; otherwise as if it did not exist."""
        rows = self.query(
            "SELECT * FROM recordings WHERE id = ? AND owner = ?",
            (recording_id, owner),
        )
        if not rows:
            raise NotFoundError("Inspelningen finns inte (den kan ha tagits bort).")
        return rows[0]

    def recordings_of(self, owner: str) -> list[dict[str, Any]]:
        """The owner's recordings, newest first, each with its current transcript."""
        return self.query(
            "SELECT r.*, t.id AS transcript_id, t.engine, t.model,"
            " t.state AS transcript_state, t.error AS transcript_error,"
            " t.finished_at, t.cost_usd,"
            " (SELECT COUNT(*) FROM segments s WHERE s.recording_id = r.id)"
            "   AS segments_total,"
            " (SELECT COUNT(*) FROM transcript_segments ts"
            "   WHERE ts.transcript_id = t.id) AS segments_done"
            " FROM recordings r LEFT JOIN transcripts t"
            f" ON t.id = {CURRENT_TRANSCRIPT_SQL}"
            " WHERE r.owner = ? ORDER BY r.created_at DESC",
            (owner,),
        )

    def rename_recording(self, recording_id: str, title: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE recordings SET title = ?, updated_at = ? WHERE id = ?",
                (title, time.time(), recording_id),
            )

    def find_recording(self, owner: str, fingerprint: str) -> dict[str, Any] | None:
        rows = self.query(
            "SELECT * FROM recordings WHERE owner = ? AND fingerprint = ?"
            " AND state != 'failed' ORDER BY created_at DESC LIMIT 1",
            (owner, fingerprint),
        )
        return rows[0] if rows else None

    def set_recording_state(
        self,
        recording_id: str,
        state: str,
        *,
        error: str | None = None,
        duration_s: float | None = None,
    ) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE recordings SET state = ?, error = ?,"
                " duration_s = COALESCE(?, duration_s), updated_at = ? WHERE id = ?",
                (state, error, duration_s, time.time(), recording_id),
            )

    def delete_recording(self, recording_id: str) -> None:
        """Remove every row and every file of one recording."""
        folder = self.recording_dir(recording_id)
        with self.transaction() as conn:
            conn.execute(
                "DELETE FROM transcript_segments WHERE transcript_id IN"
                " (SELECT id FROM transcripts WHERE recording_id = ?)",
                (recording_id,),
            )
            conn.execute(
                "DELETE FROM transcripts WHERE recording_id = ?", (recording_id,)
            )
            conn.execute("DELETE FROM segments WHERE recording_id = ?", (recording_id,))
            conn.execute("DELETE FROM recordings WHERE id = ?", (recording_id,))
        shutil.rmtree(folder, ignore_errors=True)

    # Segments ----------------------------------------------------------------

    def replace_segments(self, recording_id: str, segments: list[Segment]) -> None:
        with self.transaction() as conn:
            conn.execute("DELETE FROM segments WHERE recording_id = ?", (recording_id,))
            conn.executemany(
                "INSERT INTO segments (recording_id, idx, start_s, end_s, path)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (recording_id, s.idx, s.start_s, s.end_s, str(s.path))
                    for s in segments
                ],
            )

    def segments(self, recording_id: str) -> list[Segment]:
        rows = self.query(
            "SELECT * FROM segments WHERE recording_id = ? ORDER BY idx",
            (recording_id,),
        )
        return [
            Segment(
                recording_id=r["recording_id"],
                idx=r["idx"],
                start_s=r["start_s"],
                end_s=r["end_s"],
                path=Path(r["path"]),
            )
            for r in rows
        ]
