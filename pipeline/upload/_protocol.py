"""The tus 1.0 protocol as this server speaks it: headers, checksums, messages.

Parsing of the request headers (numbers, Upload-Metadata, Upload-Checksum), the
error a request that cannot be honoured raises, and every message a client reads,
in Swedish.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

from fastapi import Request

from pipeline.errors import PedagogiskError

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = (
    "creation,creation-with-upload,creation-defer-length,termination,"
    "expiration,checksum"
)
CHECKSUM_ALGORITHMS = ("sha1", "md5")
OFFSET_TYPE = "application/offset+octet-stream"
MAX_METADATA_CHARS = 8192
_NUMBER = re.compile(r"[0-9]{1,19}")

NOT_FOUND_MESSAGE = "Uppladdningen finns inte. Den kan ha tagits bort; börja om."
EXPIRED_MESSAGE = (
    "Uppladdningen stod stilla för länge och har tagits bort. Börja om med filen."
)
LOCKED_MESSAGE = (
    "Uppladdningen tar redan emot data från en annan anslutning. "
    "Vänta en stund och försök igen."
)
OFFSET_MESSAGE = "Servern har {offset} byte av filen. Fortsätt därifrån."
TOO_LARGE_MESSAGE = (
    "Filen är för stor: servern tar emot högst {limit}. "
    "Korta eller dela upp inspelningen och försök igen."
)
NO_ROOM_MESSAGE = (
    "Det finns inte plats för filen på servern. Ta bort gamla inspelningar "
    "eller be administratören frigöra utrymme och försök igen."
)
TOO_LONG_MESSAGE = (
    "Delen är längre än det som återstår av filen; inget av den sparades."
)
CHECKSUM_MESSAGE = (
    "Kontrollsumman stämmer inte, så delen sparades inte. Skicka den igen."
)
VERSION_MESSAGE = "Servern talar tus 1.0.0. Ladda om sidan och försök igen."
CONTENT_TYPE_MESSAGE = "Data ska skickas som application/offset+octet-stream."
DROPPED_MESSAGE = "Anslutningen bröts. Det som hann fram är sparat; fortsätt därifrån."
IDLE_MESSAGE = (
    "Ingen data kom på länge. Det som hann fram är sparat; fortsätt därifrån."
)
HANDOFF_MESSAGE = (
    "Filen togs emot men kunde inte lämnas vidare. Försök igen om en stund."
)


class UploadError(PedagogiskError):
    """A tus request that cannot be honoured, with the status tus prescribes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _is_offset_stream(request: Request) -> bool:
    kind = request.headers.get("Content-Type", "").split(";")[0]
    return kind.strip().lower() == OFFSET_TYPE


def _header_int(request: Request, name: str) -> int | None:
    raw = request.headers.get(name)
    if raw is None:
        return None
    if not _NUMBER.fullmatch(raw.strip()):
        raise _bad_header(name)
    return int(raw)


def _bad_header(name: str) -> UploadError:
    return UploadError(400, f"HTTP-huvudet {name} saknas eller är ogiltigt.")


def _checked_metadata(header: str) -> str:
    """Validate Upload-Metadata (``key base64,key base64``) and return it as is."""
    if len(header) > MAX_METADATA_CHARS:
        raise _bad_header("Upload-Metadata")
    _decoded_metadata(header)
    return header


def _decoded_metadata(header: str) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in header.split(","))):
        key, _, value = pair.partition(" ")
        if key in metadata or " " in value.strip():
            raise _bad_header("Upload-Metadata")
        try:
            raw = base64.b64decode(value.strip(), validate=True)
        except binascii.Error as exc:
            raise _bad_header("Upload-Metadata") from exc
        metadata[key] = raw.decode("utf-8", "replace")
    return metadata


def _parse_checksum(header: str | None) -> tuple[str, bytes] | None:
    if header is None:
        return None
    algorithm, _, value = header.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise _bad_header("Upload-Checksum")
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except binascii.Error as exc:
        raise _bad_header("Upload-Checksum") from exc
    if len(digest) != hashlib.new(algorithm, usedforsecurity=False).digest_size:
        raise _bad_header("Upload-Checksum")
    return algorithm, digest


def _size_text(size: int) -> str:
    """A size the way a Swedish reader writes it: ``4 GB``, ``1,5 MB``."""
    unit, scale = ("GB", 1024**3) if size >= 1024**3 else ("MB", 1024**2)
    number = f"{size / scale:.1f}".removesuffix(".0").replace(".", ",")
    return f"{number} {unit}"
