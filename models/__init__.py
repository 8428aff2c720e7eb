"""Transcription engines, one per module, behind the interface in ``engine``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from models.engine import Engine, Line, SegmentText, Word
from pipeline.errors import EngineError

if TYPE_CHECKING:
    from pipeline.config import Settings

__all__ = ["Engine", "Line", "SegmentText", "Word", "check_engine", "open_engine"]

NO_OPENAI_KEY_MESSAGE = (
    "Ingen API-nyckel för OpenAI är angiven. Sätt PD_OPENAI_API_KEY"
    " eller välj den lokala motorn (PD_ENGINE=local)."
)


def check_engine(settings: Settings, name: str | None = None) -> None:
    """Refuse settings the engine ``name`` could not start with, loading nothing.

    The command line calls this first and opens the engine only after the
    recording is cut, so a wrong model name fails at once, yet the model's
    memory and ffmpeg's are never held at the same time.
    """
    name = name or settings.engine
    if name == "openai":
        if not settings.openai_api_key and not settings.openai_base_url:
            raise EngineError(NO_OPENAI_KEY_MESSAGE)
        return
    from models.weights import resolve

    resolve(settings.model, settings.data_dir, settings.memory_budget_mb)


def open_engine(settings: Settings, name: str | None = None) -> Engine:
    """Load the engine ``name`` (default: ``settings.engine``)."""
    name = name or settings.engine
    if name == "openai":
        from models.openai_api import OpenAIEngine

        return OpenAIEngine.from_settings(settings)
    from models.local import LocalEngine

    return LocalEngine.from_settings(settings)
