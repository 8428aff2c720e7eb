"""The small interface every transcription engine implements.

An engine turns one segment file (16 kHz mono, at most a few minutes) into
timed lines. Times are relative to the segment; the pipeline adds the
segment's offset. An engine is shared by the pipeline's worker threads, so
``transcribe`` must be safe to call from ``parallelism`` threads at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Line:
    """One timed stretch of text, as the engine split it."""

    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)

    def shifted(self, offset: float) -> Line:
        return Line(
            start=round(self.start + offset, 3),
            end=round(self.end + offset, 3),
            text=self.text,
            words=[
                Word(round(w.start + offset, 3), round(w.end + offset, 3), w.text)
                for w in self.words
            ],
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Line:
        words = [Word(**w) for w in data.get("words", [])]
        return cls(data["start"], data["end"], data["text"], words)


@dataclass(frozen=True)
class SegmentText:
    """An engine's answer for one segment."""

    lines: list[Line]
    cost_usd: float = 0.0

    @property
    def text(self) -> str:
        return " ".join(line.text for line in self.lines if line.text)


class Engine(Protocol):
    """What the pipeline needs from a transcription engine."""

    #: "local" or "openai"; stored with every transcript.
    name: str
    #: The model actually used, as it should be shown and stored.
    model_name: str
    #: How many segments may be transcribed at once.
    parallelism: int

    def transcribe(self, path: Path, language: str) -> SegmentText:
        """Transcribe one segment file; raise ``EngineError`` on failure."""
        ...

    def estimate_cost_usd(self, audio_seconds: float) -> float:
        """What transcribing this much audio will cost (0 for local)."""
        ...

    def close(self) -> None:
        """Release the model or the connection pool."""
        ...
