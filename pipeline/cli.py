"""The command line: ``python -m pipeline transcribe FILE…``.

Interrupted (Ctrl-C, kill -9) and run again with the same arguments and
data directory, it resumes where it stopped.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

from models import Engine, check_engine, open_engine
from pipeline import allocator, exports, recordings, transcript
from pipeline.config import ENGINES, Settings
from pipeline.errors import PedagogiskError
from pipeline.storage import Store

log = logging.getLogger(__name__)

CLI_OWNER = "cli"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline",
        description="Transkribera inspelningar från kommandoraden.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    sub = commands.add_parser("transcribe", help="transkribera en eller flera filer")
    sub.add_argument("files", nargs="+", type=Path, metavar="FILE")
    sub.add_argument("--engine", choices=ENGINES, help="local eller openai")
    sub.add_argument(
        "--model",
        help="'base', 'tiny.en', en mapp eller ett Hugging Face-namn"
        " (standard: största KB-Whisper som ryms i minnet)",
    )
    sub.add_argument("--language", help="språkkod, t.ex. sv (standard: sv)")
    sub.add_argument("--format", choices=exports.FORMATS, default="txt")
    sub.add_argument(
        "--output",
        type=Path,
        help="fil (en indatafil) eller mapp (flera); utan den skrivs texten ut",
    )
    sub.add_argument("--data-dir", type=Path, help="datakatalog (PD_DATA_DIR)")
    sub.add_argument("--quiet", action="store_true", help="ingen förloppsindikator")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("PD_LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = _settings(args)
        allocator.tune(settings.memory_budget_mb)
        with Store(settings.data_dir) as store:
            return _transcribe_all(args, settings, store)
    except PedagogiskError as exc:
        _end_bar_line()
        print(f"fel: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        _end_bar_line()
        print(
            "Avbrutet. Kör samma kommando igen för att fortsätta där det slutade.",
            file=sys.stderr,
        )
        # Finished segments are committed; skip waiting for the one in flight.
        sys.stderr.flush()
        os._exit(130)


def _end_bar_line() -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\n")


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    overrides = {
        "engine": args.engine,
        "model": args.model,
        "language": args.language,
        "data_dir": args.data_dir,
    }
    chosen = {k: v for k, v in overrides.items() if v is not None}
    settings = dataclasses.replace(settings, **chosen)
    settings.validate()
    return settings


def _transcribe_all(args: argparse.Namespace, settings: Settings, store: Store) -> int:
    for path in args.files:
        if not path.is_file():
            raise PedagogiskError(f"Filen '{path}' finns inte.")
    if args.output and len(args.files) > 1:
        args.output.mkdir(parents=True, exist_ok=True)

    check_engine(settings)
    engine = _EngineOnDemand(settings)
    try:
        for path in args.files:
            transcript_id = transcribe_file(
                path, settings, store, engine, quiet=args.quiet
            )
            _write(args, path, render(store, transcript_id, args.format))
    finally:
        engine.close()
    return 0


def transcribe_file(
    path: Path,
    settings: Settings,
    store: Store,
    engines: _EngineOnDemand,
    *,
    quiet: bool,
) -> str:
    """Segment and transcribe one file, resuming any earlier run; its id."""
    bar = _Bar(path.name, quiet)
    recording_id = recordings.find_or_add(store, path, owner=CLI_OWNER)
    recordings.prepare(
        store, recording_id, target_s=settings.segment_seconds, on_progress=bar.scanned
    )
    engine = engines.get()
    key = {
        "engine": engine.name,
        "model": engine.model_name,
        "language": settings.language,
    }
    found = store.find_transcript(recording_id, **key)
    transcript_id = (
        str(found["id"]) if found else store.add_transcript(recording_id, **key)
    )
    if not found or found["state"] != "done":
        transcript.run(store, transcript_id, engine, on_progress=bar.update)
    bar.finish()
    return transcript_id


def render(store: Store, transcript_id: str, fmt: str) -> str:
    """A stored transcript in one of the export formats, with its facts."""
    row = store.transcript(transcript_id)
    rec = store.recording(row["recording_id"])
    meta = {
        "recording": rec["source_name"],
        "duration_s": rec["duration_s"],
        "engine": row["engine"],
        "model": row["model"],
        "language": row["language"],
        "cost_usd": round(row["cost_usd"], 4),
    }
    return exports.render(fmt, transcript.lines(store, transcript_id), meta)


def _write(args: argparse.Namespace, source: Path, text: str) -> None:
    if args.output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    target = args.output
    if len(args.files) > 1:
        target = args.output / f"{source.stem}.{args.format}"
    partial = target.with_name(target.name + ".partial")
    try:
        partial.write_text(text, encoding="utf-8")
        partial.replace(target)
    except OSError as exc:
        raise PedagogiskError(f"Kunde inte skriva '{target}': {exc.strerror}.") from exc


class _EngineOnDemand:
    """The engine, opened the first time a recording is cut and ready for it."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._engine: Engine | None = None

    def get(self) -> Engine:
        if self._engine is None:
            self._engine = open_engine(self._settings)
            note = getattr(self._engine, "note", "")
            if note:
                _end_bar_line()
                print(f"obs: {note}", file=sys.stderr)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()


class _Bar:
    """A one-line progress bar on stderr: segments, audio time and ETA."""

    WIDTH = 24

    def __init__(self, name: str, quiet: bool) -> None:
        self._name = name
        self._quiet = quiet
        self._tty = sys.stderr.isatty()
        self._last = ""

    def scanned(self, seconds: float) -> None:
        self._show(f"{self._name}: läser ljudet … {_clock(seconds)}")

    def update(self, p: transcript.Progress) -> None:
        filled = int(self.WIDTH * p.fraction)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        eta = f" · klart om {_clock(p.eta_s)}" if p.eta_s is not None else ""
        self._show(
            f"{self._name}: [{bar}] {p.segments_done}/{p.segments_total} avsnitt"
            f" · {_clock(p.audio_done_s)}/{_clock(p.audio_total_s)}{eta}",
            force=True,
        )

    def finish(self) -> None:
        if not self._quiet and self._tty:
            sys.stderr.write("\n")

    def _show(self, text: str, *, force: bool = False) -> None:
        if self._quiet or text == self._last:
            return
        self._last = text
        if self._tty:
            sys.stderr.write("\r\x1b[K" + text)
        elif force:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
