"""The local engine: a quantized Whisper (KB-Whisper by default) on the CPU.

One model is loaded per process and shared by every segment; CTranslate2's
``num_workers`` lets that one model serve ``parallelism`` segments at once,
which the memory budget decides. No audio leaves the machine.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from models.engine import Line, SegmentText, Word
from models.weights import ModelChoice, offline_base, parallelism_for, resolve
from pipeline import segments
from pipeline.errors import EngineError, ModelError

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

    from pipeline.config import Settings

log = logging.getLogger(__name__)

# Below TIGHT_BUDGET_MB the engine saves memory in two places
# (docs/benchmarks.md):
# - Silero VAD (faster-whisper's, on onnxruntime) adds ~20 MiB to the peak,
#   so the pauses that ffmpeg finds are skipped instead;
# - when a window decodes badly Whisper samples it again at a higher
#   temperature; five samples at once (faster-whisper's default) add ~116 MiB
#   to the peak, two fit inside what beam search already holds.
TIGHT_BEST_OF = 2
DEFAULT_BEST_OF = 5
# Pauses this long are not transcribed (Whisper invents text in silence);
# the margin keeps the edges of the words on either side.
SKIPPED_PAUSE_S = 2.0
PAUSE_MARGIN_S = 0.2
MIN_CLIP_S = 0.3

FALLBACK_NOTE = (
    "KB-Whisper kunde inte hämtas (ingen internetanslutning?). Den inbyggda"
    " Whisper base-modellen används i stället; den är betydligt sämre på svenska."
)


class LocalEngine:
    """faster-whisper, int8, one loaded model shared by all worker threads."""

    name = "local"

    def __init__(
        self,
        choice: ModelChoice,
        *,
        model: WhisperModel,
        parallelism: int,
        beam_size: int,
        word_timestamps: bool,
        silero_vad: bool = True,
        best_of: int = DEFAULT_BEST_OF,
    ) -> None:
        self.choice = choice
        self.model_name = choice.name
        self.note = choice.note
        self.parallelism = parallelism
        self._model = model
        self._beam_size = beam_size
        self._word_timestamps = word_timestamps
        self._silero_vad = silero_vad
        self.best_of = best_of

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalEngine:
        """Load the configured model, falling back to the offline base model."""
        choice = resolve(settings.model, settings.data_dir, settings.memory_budget_mb)
        cores = os.cpu_count() or 1
        try:
            return cls._load(choice, settings, cores)
        except ModelError:
            if settings.model:
                raise
        log.warning("could not fetch %s; falling back to offline base", choice.source)
        fallback = ModelChoice(
            "base", str(offline_base(settings.data_dir)), "base", FALLBACK_NOTE
        )
        return cls._load(fallback, settings, cores)

    @classmethod
    def _load(cls, choice: ModelChoice, settings: Settings, cores: int) -> LocalEngine:
        from faster_whisper import WhisperModel

        parallelism = parallelism_for(choice.size, settings.memory_budget_mb, cores)
        tight = settings.tight_memory
        threads = max(1, cores // parallelism)
        started = time.monotonic()
        try:
            model = WhisperModel(
                choice.source,
                device="cpu",
                compute_type="int8",
                cpu_threads=threads,
                num_workers=parallelism,
                download_root=str(settings.data_dir / "models" / "hub"),
            )
        except Exception as exc:
            log.warning("loading model %s failed: %s", choice.source, exc)
            raise ModelError(
                f"Modellen '{choice.name}' kunde inte laddas."
                " Kontrollera PD_MODEL eller välj 'base'."
            ) from exc
        log.info(
            "loaded model %s (int8, %d in flight, %d threads each) in %.1f s",
            choice.source,
            parallelism,
            threads,
            time.monotonic() - started,
        )
        return cls(
            choice,
            model=model,
            parallelism=parallelism,
            beam_size=settings.beam_size,
            word_timestamps=settings.word_timestamps,
            silero_vad=not tight,
            best_of=TIGHT_BEST_OF if tight else DEFAULT_BEST_OF,
        )

    def transcribe(self, path: Path, language: str) -> SegmentText:
        if self._silero_vad:
            skipping: dict[str, object] = {"vad_filter": True}
        else:
            clips = speech_clips(segments.pauses(path, SKIPPED_PAUSE_S))
            if not clips:
                return SegmentText(lines=[])
            skipping = {"vad_filter": False, "clip_timestamps": clips}
        try:
            pieces, _ = self._model.transcribe(
                str(path),
                language=language,
                beam_size=self._beam_size,
                best_of=self.best_of,
                word_timestamps=self._word_timestamps,
                **skipping,
            )
            lines = [
                Line(
                    start=round(p.start, 3),
                    end=round(p.end, 3),
                    text=p.text.strip(),
                    words=[
                        Word(round(w.start, 3), round(w.end, 3), w.word.strip())
                        for w in (p.words or [])
                    ],
                )
                for p in pieces
            ]
        except Exception as exc:
            raise EngineError(
                "Den lokala modellen kunde inte transkribera ett avsnitt."
            ) from exc
        return SegmentText(lines=[line for line in lines if line.text])

    def estimate_cost_usd(self, audio_seconds: float) -> float:
        return 0.0

    def close(self) -> None:
        del self._model


def speech_clips(pauses: list[tuple[float, float | None]]) -> list[float]:
    """faster-whisper's ``clip_timestamps`` for the audio between long pauses.

    ``[start, end, start, end, …]`` in seconds; an odd count means the last
    clip runs to the end of the file. Empty when nothing but silence is left.
    """
    clips: list[float] = []
    start = 0.0
    for begins, ends in pauses:
        stop = begins + PAUSE_MARGIN_S
        if stop - start >= MIN_CLIP_S:
            clips += [round(start, 3), round(stop, 3)]
        if ends is None:
            return clips
        start = max(0.0, ends - PAUSE_MARGIN_S)
    return [*clips, round(start, 3)]
