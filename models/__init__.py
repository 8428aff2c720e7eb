"""Transcription engines, one per module, behind the interface in ``engine``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from models.engine import Engine, Line, SegmentText, Word

if TYPE_CHECKING:
    from pipeline.config import Settings

__all__ = ["Engine", "Line", "SegmentText", "Word", "open_engine"]


def open_engine(settings: Settings, name: str | None = None) -> Engine:
    """Load the engine ``name`` (default: ``settings.engine``)."""
    name = name or settings.engine
    if name == "openai":
        from models.openai_api import OpenAIEngine

        return OpenAIEngine.from_settings(settings)
    from models.local import LocalEngine

    return LocalEngine.from_settings(settings)
