"""The transcript tables of ``Store``: transcripts and their finished segments.

A transcript is one run of one engine over a recording; each segment it has
finished is a row of ``transcript_segments``, so a restart resumes where the
run stopped. ``pipeline.storage`` owns the schema of both tables.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

from pipeline._database import Database
from pipeline.errors import NotFoundError

if TYPE_CHECKING:
    from pipeline.storage import Segment


class TranscriptRows(Database):
    """The methods of ``Store`` that read and write transcripts."""

    def add_transcript(
        self, recording_id: str, *, engine: str, model: str, language: str
    ) -> str:
        transcript_id = uuid.uuid4().hex
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO transcripts (id, recording_id, engine, model, language,"
                " state, created_at) VALUES (?, ?, ?, ?, ?, 'waiting', ?)",
                (transcript_id, recording_id, engine, model, language, time.time()),
            )
        return transcript_id

    def transcript(self, transcript_id: str) -> dict[str, Any]:
        rows = self.query("SELECT * FROM transcripts WHERE id = ?", (transcript_id,))
        if not rows:
            raise NotFoundError("Transkriptionen finns inte.")
        return rows[0]

    def find_transcript(
        self, recording_id: str, *, engine: str, model: str, language: str
    ) -> dict[str, Any] | None:
        rows = self.query(
            "SELECT * FROM transcripts WHERE recording_id = ? AND engine = ?"
            " AND model = ? AND language = ? AND start_s IS NULL"
            " ORDER BY created_at DESC LIMIT 1",
            (recording_id, engine, model, language),
        )
        return rows[0] if rows else None

    def set_transcript_state(
        self, transcript_id: str, state: str, *, error: str | None = None
    ) -> None:
        now = time.time()
        with self.transaction() as conn:
            conn.execute(
                "UPDATE transcripts SET state = ?, error = ?,"
                " started_at = CASE WHEN ? = 'running'"
                "   THEN COALESCE(started_at, ?) ELSE started_at END,"
                " finished_at = CASE WHEN ? IN ('done', 'failed')"
                "   THEN ? ELSE NULL END"
                " WHERE id = ?",
                (state, error, state, now, state, now, transcript_id),
            )

    def set_transcript_model(self, transcript_id: str, model: str) -> None:
        with self.transaction() as conn:
            conn.execute(
                "UPDATE transcripts SET model = ? WHERE id = ?", (model, transcript_id)
            )

    def save_segment_result(
        self,
        transcript_id: str,
        segment: Segment,
        *,
        text: str,
        lines: list[dict[str, Any]],
        elapsed_s: float,
        cost_usd: float = 0.0,
    ) -> None:
        """Store one finished segment; a restart never transcribes it again."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO transcript_segments (transcript_id, idx,"
                " start_s, end_s, text, lines, elapsed_s, cost_usd)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    transcript_id,
                    segment.idx,
                    segment.start_s,
                    segment.end_s,
                    text,
                    json.dumps(lines, ensure_ascii=False),
                    elapsed_s,
                    cost_usd,
                ),
            )
            conn.execute(
                "UPDATE transcripts SET cost_usd = (SELECT COALESCE(SUM(cost_usd), 0)"
                " FROM transcript_segments WHERE transcript_id = ?) WHERE id = ?",
                (transcript_id, transcript_id),
            )

    def done_segment_indexes(self, transcript_id: str) -> set[int]:
        rows = self.query(
            "SELECT idx FROM transcript_segments WHERE transcript_id = ?",
            (transcript_id,),
        )
        return {r["idx"] for r in rows}

    def segment_results(self, transcript_id: str) -> list[dict[str, Any]]:
        rows = self.query(
            "SELECT * FROM transcript_segments WHERE transcript_id = ? ORDER BY idx",
            (transcript_id,),
        )
        for row in rows:
            row["lines"] = json.loads(row["lines"])
        return rows
