"""A transcript's lines written out as TXT, SRT, WebVTT or JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from models.engine import Line

FORMATS = ("txt", "srt", "vtt", "json")


def render(fmt: str, lines: list[Line], meta: dict[str, Any] | None = None) -> str:
    """The transcript in one of ``FORMATS``."""
    writers: dict[str, Callable[[list[Line], dict[str, Any]], str]] = {
        "txt": _txt,
        "srt": _srt,
        "vtt": _vtt,
        "json": _json,
    }
    if fmt not in writers:
        raise ValueError(f"unknown format {fmt!r}")
    return writers[fmt](lines, meta or {})


def attachment_header(title: str, fmt: str) -> str:
    """A Content-Disposition for a download named after the recording.

    HTTP headers are Latin-1, so any title (dashes, quotes, emoji) gets an
    ASCII ``filename`` beside the exact UTF-8 ``filename*`` browsers prefer.
    """
    kept = "".join(c if c.isalnum() or c in " -_" else "_" for c in title).strip()
    name = (kept[:80] or "transkription") + "." + fmt
    plain = name.encode("ascii", "replace").decode().replace("?", "_")
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(name)}"


def clock(seconds: float, *, decimal: str = ".", hours: bool = True) -> str:
    """``H:MM:SS.mmm``-style time; SRT wants a comma before the milliseconds."""
    millis = int(round(max(0.0, seconds) * 1000))
    h, rest = divmod(millis, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    if hours or h:
        return f"{h:02d}:{m:02d}:{s:02d}{decimal}{ms:03d}"
    return f"{m:02d}:{s:02d}{decimal}{ms:03d}"


def _txt(lines: list[Line], meta: dict[str, Any]) -> str:
    rows = [f"[{clock(line.start)[:8]}] {line.text}" for line in lines]
    return "\n".join(rows) + ("\n" if rows else "")


def _srt(lines: list[Line], meta: dict[str, Any]) -> str:
    blocks = [
        f"{n}\n{clock(line.start, decimal=',')} --> {clock(line.end, decimal=',')}\n"
        f"{line.text}\n"
        for n, line in enumerate(lines, start=1)
    ]
    return "\n".join(blocks)


def _vtt(lines: list[Line], meta: dict[str, Any]) -> str:
    blocks = [
        f"{clock(line.start)} --> {clock(line.end)}\n{_vtt_text(line.text)}\n"
        for line in lines
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def _vtt_text(text: str) -> str:
    # "-->" would end the cue timing line early; "<" and "&" start markup.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("-->", "->")


def _json(lines: list[Line], meta: dict[str, Any]) -> str:
    body = {**meta, "segments": [line.to_dict() for line in lines]}
    return json.dumps(body, ensure_ascii=False, indent=2) + "\n"


def docx_bytes(lines: list[Line], title: str) -> bytes:
    """The transcript as a Word document: a heading, then one timed paragraph each."""
    import io

    from docx import Document

    document = Document()
    document.add_heading(title, level=1)
    for line in lines:
        paragraph = document.add_paragraph()
        paragraph.add_run(f"[{clock(line.start)[:8]}] ").bold = True
        paragraph.add_run(line.text)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()
