"""Settings, read once from environment variables prefixed ``PD_``.

Every setting has an embedded default so the app starts with no
configuration at all. The README's settings table lists the same names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from pipeline.errors import PedagogiskError

ENGINES = ("local", "openai")
# Below this budget the app trades speed and some accuracy for memory: glibc
# returns freed buffers at once, ffmpeg's pauses stand in for Silero VAD and
# a badly decoded window is sampled twice rather than five times
# (docs/benchmarks.md).
TIGHT_BUDGET_MB = 768


@dataclass(frozen=True)
class Settings:
    """Runtime settings; ``Settings.from_env()`` builds them from ``PD_*``."""

    data_dir: Path = Path("data")
    engine: str = "local"
    # Empty: pick the largest KB-Whisper that fits the memory budget.
    model: str = ""
    language: str = "sv"
    memory_budget_mb: int = 512
    beam_size: int = 5
    word_timestamps: bool = False
    segment_seconds: float = 60.0
    openai_api_key: str = field(default="", repr=False)
    openai_base_url: str = ""
    openai_model: str = "whisper-1"
    openai_concurrency: int = 4
    log_level: str = "INFO"
    # Days after a transcript is done before its audio is deleted; 0 keeps it.
    audio_retention_days: float = 30.0
    upload_expiry_hours: float = 24.0
    # A browser recording that sends nothing this long is ended and transcribed.
    recording_idle_minutes: float = 10.0
    max_upload_bytes: int = 4 * 1024**3
    # Password for the first admin account; empty prints a random one once.
    admin_password: str = field(default="", repr=False)
    # Set on a server behind HTTPS so cookies are never sent in clear.
    secure_cookies: bool = False

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get("PD_" + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _convert(f.name, raw, type(getattr(cls(), f.name)))
        if "openai_api_key" not in values and env.get("OPENAI_API_KEY"):
            values["openai_api_key"] = env["OPENAI_API_KEY"]
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    @property
    def tight_memory(self) -> bool:
        """Whether the memory budget calls for the savings that cost speed."""
        return self.memory_budget_mb < TIGHT_BUDGET_MB

    def validate(self) -> None:
        if self.engine not in ENGINES:
            raise PedagogiskError(
                f"PD_ENGINE måste vara 'local' eller 'openai', inte '{self.engine}'."
            )
        if self.memory_budget_mb < 256:
            raise PedagogiskError("PD_MEMORY_BUDGET_MB måste vara minst 256.")
        if not 10 <= self.segment_seconds <= 600:
            raise PedagogiskError("PD_SEGMENT_SECONDS måste ligga mellan 10 och 600.")
        if self.recording_idle_minutes <= 0:
            raise PedagogiskError("PD_RECORDING_IDLE_MINUTES måste vara större än 0.")


def _convert(name: str, raw: str, kind: type) -> object:
    try:
        if issubclass(kind, Path):
            return Path(raw)
        if kind is bool:
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
    except ValueError as exc:
        raise PedagogiskError(
            f"PD_{name.upper()} har ett ogiltigt värde: '{raw}'."
        ) from exc
    return raw
