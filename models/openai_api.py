"""The OpenAI engine: segments sent to a transcription endpoint over HTTP.

The endpoint is OpenAI's own or any OpenAI-compatible server named by
``PD_OPENAI_BASE_URL``. ``whisper-1`` is asked for ``verbose_json`` and answers
timed lines; the ``gpt-*`` transcription models answer text only, so each of
their segments becomes one line spanning the segment.

Each request stays under the service's 25 MB upload limit: a segment larger
than ``UPLOAD_LIMIT_BYTES`` is re-encoded to Ogg/Opus first. Throttling, server
errors and lost connections are retried here with exponential backoff and
jitter (the client's own retries are off so that ours are the ones counted);
a wrong key or an exhausted quota fails at once.

Servers other than OpenAI are also sent the model in a ``model_name`` form
field, since some of them (faster-whisper-server) read that field instead of
``model``. OpenAI's own API is never sent it.
"""

from __future__ import annotations

import logging
import random
import subprocess
import tempfile
import time
from bisect import bisect_right
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import av
import openai
from openai import omit
from openai.types.audio import Transcription, TranscriptionVerbose

from models import check_engine
from models.engine import Line, SegmentText, Word
from pipeline.errors import EngineError

if TYPE_CHECKING:
    from pipeline.config import Settings

log = logging.getLogger(__name__)

OPENAI_BASE_URL = "https://api.openai.com/v1"

#: US dollars per minute of audio. Dated snapshots ("…-2025-12-15") take the
#: price of the longest name they start with; other models are taken as free.
PRICES_PER_MINUTE_USD = {
    "whisper-1": 0.006,
    "gpt-4o-transcribe": 0.006,
    "gpt-4o-mini-transcribe": 0.003,
}

#: Models whose names start so answer only ``json``/``text``, without times.
TEXT_ONLY_PREFIXES = ("gpt-",)

#: OpenAI refuses uploads over 25 MB; the margin covers the multipart framing.
UPLOAD_LIMIT_BYTES = 24 * 1024 * 1024
#: Opus at this rate keeps speech intelligible at about 180 kB a minute.
REENCODE_BITRATE = "24k"

#: Answers worth another try, besides every 5xx.
RETRY_STATUSES = frozenset({408, 409, 429})

_MIME_TYPES = {".flac": "audio/flac", ".ogg": "audio/ogg", ".wav": "audio/wav"}


@dataclass(frozen=True)
class Backoff:
    """How often and how patiently a failed request is tried again."""

    attempts: int = 4
    first_s: float = 1.0
    cap_s: float = 30.0

    def delay(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait after failed ``attempt`` (1-based), with jitter."""
        ceiling = min(self.cap_s, self.first_s * 2 ** (attempt - 1))
        wait = random.uniform(ceiling / 2, ceiling)
        if retry_after_s is not None:
            wait = max(wait, min(retry_after_s, self.cap_s))
        return wait


def price_per_minute_usd(model: str) -> float:
    """The price of one minute of audio with ``model``; 0 when unknown."""
    matches = [name for name in PRICES_PER_MINUTE_USD if model.startswith(name)]
    if not matches:
        return 0.0
    return PRICES_PER_MINUTE_USD[max(matches, key=len)]


@dataclass(frozen=True)
class _Upload:
    """The bytes one request sends, under the name the server sees."""

    name: str
    data: bytes

    @property
    def mime_type(self) -> str:
        return _MIME_TYPES.get(Path(self.name).suffix, "application/octet-stream")


class OpenAIEngine:
    """Transcription through an OpenAI-compatible HTTP API, one segment a call."""

    name = "openai"

    def __init__(
        self,
        *,
        model: str,
        api_key: str,
        base_url: str = OPENAI_BASE_URL,
        parallelism: int = 4,
        word_timestamps: bool = False,
        send_model_name: bool = False,
        backoff: Backoff | None = None,
        upload_limit_bytes: int = UPLOAD_LIMIT_BYTES,
        timeout_s: float = 300.0,
    ) -> None:
        self.model_name = model
        self.parallelism = max(1, parallelism)
        self.base_url = base_url
        self.upload_limit_bytes = upload_limit_bytes
        self.usd_per_minute = price_per_minute_usd(model)
        self._backoff = backoff or Backoff()
        self._timed = not model.startswith(TEXT_ONLY_PREFIXES)
        self._format: Literal["json", "verbose_json"] = (
            "verbose_json" if self._timed else "json"
        )
        self._granularities: list[Literal["word", "segment"]] = ["segment"]
        if word_timestamps:
            self._granularities.append("word")
        self._extra_body = {"model_name": model} if send_model_name else None
        self._client = openai.OpenAI(
            api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_s
        )
        log.info(
            "openai engine: model %s at %s, %d requests in flight, $%.4f a minute",
            model,
            base_url,
            self.parallelism,
            self.usd_per_minute,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIEngine:
        """The engine ``PD_OPENAI_*`` describes; refuses OpenAI without a key."""
        check_engine(settings, "openai")
        custom = bool(settings.openai_base_url)

        return cls(
            model=settings.openai_model,
            # A self-hosted server may need no key, but the client insists on one.
            api_key=settings.openai_api_key or "no-key",
            base_url=settings.openai_base_url or OPENAI_BASE_URL,
            parallelism=settings.openai_concurrency,
            word_timestamps=settings.word_timestamps,
            send_model_name=custom,
        )

    def transcribe(self, path: Path, language: str) -> SegmentText:
        """Send one segment and turn the answer into lines; cost included."""
        seconds = _audio_seconds(path)

        with self._upload(path) as upload:
            answer = self._send_with_retries(upload, language, seconds)
        if isinstance(answer, TranscriptionVerbose) and self._timed:
            lines = _timed_lines(answer)
        else:
            lines = _spanning_line(answer.text, seconds)

        return SegmentText(lines=lines, cost_usd=self.estimate_cost_usd(seconds))

    def estimate_cost_usd(self, audio_seconds: float) -> float:
        return round(audio_seconds / 60 * self.usd_per_minute, 6)

    def close(self) -> None:
        self._client.close()

    @contextmanager
    def _upload(self, path: Path) -> Iterator[_Upload]:
        size = path.stat().st_size
        if size <= self.upload_limit_bytes:
            yield _Upload(path.name, path.read_bytes())
            return

        with tempfile.TemporaryDirectory(prefix="pd-upload-") as folder:
            smaller = _reencode(path, Path(folder) / f"{path.stem}.ogg")
            shrunk = smaller.stat().st_size
            log.info("re-encoded %s from %d to %d bytes", path.name, size, shrunk)
            if shrunk > self.upload_limit_bytes:
                raise EngineError(
                    f"Avsnittet '{path.name}' är för stort för tjänsten även"
                    " komprimerat. Välj kortare avsnitt (PD_SEGMENT_SECONDS)."
                )
            yield _Upload(smaller.name, smaller.read_bytes())

    def _send_with_retries(
        self, upload: _Upload, language: str, seconds: float
    ) -> Transcription | TranscriptionVerbose:
        attempts = max(1, self._backoff.attempts)
        failure = ""
        for attempt in range(1, attempts + 1):
            try:
                return self._send(upload, language, seconds)
            except openai.APIStatusError as exc:
                if not _retryable(exc):
                    raise self._refusal(exc, upload.name) from _chained(exc)
                failure, retry_after = f"HTTP {exc.status_code}", _retry_after(exc)
            except openai.APIConnectionError:
                failure, retry_after = "ingen anslutning", None
            except openai.OpenAIError as exc:
                raise EngineError(
                    "Transkriberingstjänsten gav ett oväntat svar."
                ) from exc
            if attempt < attempts:
                wait = self._backoff.delay(attempt, retry_after)
                log.warning(
                    "%s: %s, attempt %d of %d; next in %.1f s",
                    upload.name,
                    failure,
                    attempt,
                    attempts,
                    wait,
                )
                time.sleep(wait)

        raise EngineError(
            f"Transkriberingstjänsten svarade inte efter {attempts} försök"
            f" (senast: {failure}). Försök igen senare; färdiga avsnitt är sparade."
        )

    def _send(
        self, upload: _Upload, language: str, seconds: float
    ) -> Transcription | TranscriptionVerbose:
        started = time.monotonic()
        status: object = "no connection"

        try:
            raw = self._client.audio.transcriptions.with_raw_response.create(
                file=(upload.name, upload.data, upload.mime_type),
                model=self.model_name,
                language=language or omit,
                response_format=self._format,
                timestamp_granularities=self._granularities if self._timed else omit,
                extra_body=self._extra_body,
            )
            status = raw.status_code
            answer = raw.parse()
        except openai.APIStatusError as exc:
            status = exc.status_code
            raise
        finally:
            log.info(
                "POST transcription %s (%d bytes, %.1f s audio, %s, ~$%.4f):"
                " %s in %.2f s",
                upload.name,
                len(upload.data),
                seconds,
                self.model_name,
                self.estimate_cost_usd(seconds),
                status,
                time.monotonic() - started,
            )

        if not isinstance(answer, Transcription | TranscriptionVerbose):
            raise EngineError("Transkriberingstjänsten gav ett oväntat svar.")
        return answer

    def _refusal(self, exc: openai.APIStatusError, name: str) -> EngineError:
        log.warning(
            "%s refused: HTTP %d, code %s, request %s",
            name,
            exc.status_code,
            exc.code,
            exc.request_id,
        )
        if exc.status_code == 401:
            return EngineError(
                "Tjänsten godkände inte API-nyckeln (HTTP 401)."
                " Kontrollera PD_OPENAI_API_KEY."
            )
        if exc.code == "insufficient_quota":
            return EngineError(
                "OpenAI-kontot har ingen kvot kvar. Fyll på krediter eller"
                " kontrollera faktureringen hos OpenAI och försök sedan igen."
            )
        if exc.status_code == 403:
            return EngineError(
                "Tjänsten nekade åtkomst (HTTP 403). Kontrollera att API-nyckeln"
                f" får använda modellen '{self.model_name}'."
            )
        return EngineError(
            f"Tjänsten avvisade avsnittet '{name}' (HTTP {exc.status_code}:"
            f" {_reason(exc.body)}). Kontrollera PD_OPENAI_MODEL"
            f" ('{self.model_name}') och PD_OPENAI_BASE_URL."
        )


def _audio_seconds(path: Path) -> float:
    """The segment's length, summed from its audio packets.

    The container's own figure cannot be trusted here: the FLAC pieces that
    ffmpeg's segment muxer writes have no length in their header (the first
    piece) or the running total of all pieces so far (the last one). The
    packets are read in this process with PyAV (faster-whisper's decoder),
    since an ffprobe beside each request in flight costs ~50 MB apiece.
    """
    try:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            ticks = sum(packet.duration or 0 for packet in container.demux(stream))
            seconds = float(ticks * stream.time_base) if stream.time_base else 0.0
    except (av.FFmpegError, IndexError, OSError) as exc:
        log.info("cannot read segment %s: %s", path, exc)
        raise EngineError(f"Avsnittet '{path.name}' går inte att läsa.") from exc
    if seconds <= 0:
        raise EngineError(f"Avsnittets längd går inte att läsa ('{path.name}').")
    return seconds


def _reencode(source: Path, target: Path) -> Path:
    proc = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-i",
            str(source),
            "-vn",
            "-ac",
            "1",
            "-c:a",
            "libopus",
            "-b:a",
            REENCODE_BITRATE,
            "-application",
            "voip",
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        log.warning("ffmpeg re-encode of %s failed: %s", source, proc.stderr[-500:])
        raise EngineError(
            f"Avsnittet '{source.name}' kunde inte komprimeras inför uppladdningen."
        )
    return target


def _timed_lines(answer: TranscriptionVerbose) -> list[Line]:
    segments = answer.segments or []
    starts = [s.start for s in segments]
    words: list[list[Word]] = [[] for _ in segments]
    # Words come as one list for the whole answer; each joins the line it starts in.
    for w in sorted(answer.words or [], key=lambda w: w.start):
        if not segments:
            break
        at = max(0, bisect_right(starts, w.start) - 1)
        words[at].append(Word(round(w.start, 3), round(w.end, 3), w.word.strip()))

    lines = [
        Line(round(s.start, 3), round(s.end, 3), s.text.strip(), words[n])
        for n, s in enumerate(segments)
    ]
    return [line for line in lines if line.text]


def _spanning_line(text: str, seconds: float) -> list[Line]:
    text = text.strip()
    return [Line(0.0, round(seconds, 3), text)] if text else []


def _retryable(exc: openai.APIStatusError) -> bool:
    if exc.code == "insufficient_quota":
        return False
    return exc.status_code in RETRY_STATUSES or exc.status_code >= 500


def _retry_after(exc: openai.APIStatusError) -> float | None:
    try:
        return float(exc.response.headers.get("retry-after", ""))
    except ValueError:
        return None


def _chained(exc: openai.APIStatusError) -> BaseException | None:
    # OpenAI's 401 text repeats part of the key; keep it out of tracebacks.
    return None if exc.status_code == 401 else exc


def _reason(body: object) -> str:
    """The server's own explanation, wherever its JSON error keeps it."""
    if isinstance(body, str):
        return body[:200] or "okänt fel"
    pending = [body]
    while pending:
        item = pending.pop(0)
        if not isinstance(item, dict):
            continue
        message = item.get("message")
        if isinstance(message, str):
            return message[:200]
        pending.extend(item.values())
    return "okänt fel"
