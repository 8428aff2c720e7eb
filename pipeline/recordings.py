"""Bring a file into the data directory and cut it into segments.

A recording is identified by a fingerprint of its bytes, so running the same
file again finds the recording, and its transcript, that already exists.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from pipeline import probe, segments
from pipeline.errors import InputError, PedagogiskError
from pipeline.storage import Segment, Store

log = logging.getLogger(__name__)

FINGERPRINT_SPAN = 4 << 20
# A decode that stops this far short of the container's length is a truncated file.
TRUNCATION_SHARE = 0.97


def fingerprint(path: Path) -> str:
    """Hash of the size, the first and the last 4 MiB: cheap even for 2 GB."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as fh:
        digest.update(fh.read(FINGERPRINT_SPAN))
        if size > FINGERPRINT_SPAN:
            fh.seek(max(FINGERPRINT_SPAN, size - FINGERPRINT_SPAN))
            digest.update(fh.read(FINGERPRINT_SPAN))
    return digest.hexdigest()


def find_or_add(store: Store, path: Path, *, owner: str, title: str = "") -> str:
    """The recording for this file and owner, registered if it is new."""
    try:
        print_ = fingerprint(path)
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise InputError(f"Filen '{path}' finns inte.") from exc
    except OSError as exc:
        raise InputError(f"Filen '{path}' går inte att läsa.") from exc
    if path.is_dir():
        raise InputError(f"'{path}' är en mapp, inte en fil.")

    existing = store.find_recording(owner, print_)
    if existing:
        return str(existing["id"])
    return store.add_recording(
        owner=owner,
        title=title or path.stem,
        source_name=path.name,
        source_path=path.resolve(),
        fingerprint=print_,
        size_bytes=size,
    )


def prepare(
    store: Store,
    recording_id: str,
    *,
    target_s: float,
    on_progress: Callable[[float], None] | None = None,
) -> list[Segment]:
    """Cut the recording into segments once; later calls return them as stored."""
    rec = store.recording(recording_id)
    stored = store.segments(recording_id)
    if rec["state"] == "ready" and stored and all(s.path.exists() for s in stored):
        return stored

    source = Path(rec["source_path"])
    store.set_recording_state(recording_id, "segmenting")
    try:
        result = _cut(
            store, recording_id, source, rec["source_name"], target_s, on_progress
        )
    except PedagogiskError as exc:
        store.set_recording_state(recording_id, "failed", error=exc.message)
        shutil.rmtree(
            store.recording_dir(recording_id) / "segments", ignore_errors=True
        )
        raise
    return result


def _cut(
    store: Store,
    recording_id: str,
    source: Path,
    name: str,
    target_s: float,
    on_progress: Callable[[float], None] | None,
) -> list[Segment]:
    if not source.is_file():
        raise InputError(f"Originalfilen för '{name}' finns inte längre på servern.")
    info = probe.probe(source, name)
    if info.truncated:
        raise InputError(
            f"Filen '{name}' är avkortad: den slutar innan ljudet gör det."
            " Ladda upp hela filen igen."
        )
    scan = segments.scan(source, on_progress)
    if scan.duration_s < 0.1:
        raise InputError(f"Filen '{name}' innehåller inget ljud.")
    # MP3 headers often only estimate the length, so trust them only when the
    # decoder also complained.
    exact = "mp3" not in info.format_name or scan.decode_errors > 0
    if (
        exact
        and info.duration_s
        and scan.duration_s < info.duration_s * TRUNCATION_SHARE
    ):
        raise InputError(
            f"Filen '{name}' verkar vara avkortad: bara {_minutes(scan.duration_s)}"
            f" av {_minutes(info.duration_s)} går att läsa. Ladda upp hela filen igen."
        )

    cuts = segments.plan_cuts(scan.duration_s, scan.silences, target_s)
    out_dir = store.recording_dir(recording_id) / "segments"
    pieces = segments.cut(source, out_dir, recording_id, cuts, scan.duration_s)
    store.replace_segments(recording_id, pieces)
    store.set_recording_state(recording_id, "ready", duration_s=scan.duration_s)
    log.info(
        "cut recording %s (%.0f s) into %d segments",
        recording_id,
        scan.duration_s,
        len(pieces),
    )
    return pieces


def _minutes(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d} min"
