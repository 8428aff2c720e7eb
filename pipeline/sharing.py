"""Share links: read-only access to one transcript for anyone holding a token.

A link is a random token of 256 bits. The database keeps only its SHA-256, so
neither a copy of the database nor the owner's list can give the link back;
the owner sees the address once, when it is made. A link names one transcript
and, only if the owner allowed it, that recording's audio. It may expire, can
be revoked, and goes with its recording (the rows cascade on delete).

``resolve`` is the one way from a token to what it may show: it answers 404
for a token it does not know and 410 for one that was revoked or has expired.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pipeline.errors import InputError, NotFoundError, PedagogiskError
from pipeline.storage import Store

log = logging.getLogger(__name__)

TOKEN_BYTES = 32
# What ``secrets.token_urlsafe(TOKEN_BYTES)`` gives; anything else is unknown.
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")
MAX_EXPIRY_DAYS = 365

NOT_FOUND_MESSAGE = (
    "Länken finns inte. Kontrollera att hela adressen kom med, eller be den som"
    " delade den om en ny."
)
REVOKED_MESSAGE = "Länken har återkallats av den som delade den."
EXPIRED_MESSAGE = "Länken har gått ut. Be den som delade den om en ny."
NOT_DONE_MESSAGE = "Transkriptionen är inte klar än. Dela den när den är färdig."


class ShareLinkGoneError(PedagogiskError):
    """The link existed but was revoked or has expired."""

    status = 410


@dataclass(frozen=True)
class ShareLink:
    """One share link as the owner sees it; the token itself is never kept."""

    id: str
    transcript_id: str
    recording_id: str
    owner: str
    with_audio: bool
    created_at: float
    expires_at: float | None
    revoked_at: float | None

    def state(self, now: float | None = None) -> str:
        """``active``, ``revoked`` or ``expired``."""
        now = time.time() if now is None else now
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


def create(
    store: Store,
    owner: str,
    transcript_id: str,
    *,
    with_audio: bool,
    expires_in_days: float | None = None,
) -> tuple[str, ShareLink]:
    """A new link to the owner's finished transcript: its token and its row.

    ``expires_in_days`` of None or 0 makes a link that lasts until revoked.
    """
    row = _owned_transcript(store, owner, transcript_id)
    if row["state"] != "done":
        raise InputError(NOT_DONE_MESSAGE)
    if expires_in_days is not None and not 0 <= expires_in_days <= MAX_EXPIRY_DAYS:
        raise InputError(f"En länk kan gälla i högst {MAX_EXPIRY_DAYS} dagar.")

    token = secrets.token_urlsafe(TOKEN_BYTES)
    now = time.time()
    expires_at = now + expires_in_days * 86400 if expires_in_days else None
    link = ShareLink(
        id=uuid.uuid4().hex,
        transcript_id=transcript_id,
        recording_id=row["recording_id"],
        owner=owner,
        with_audio=with_audio,
        created_at=now,
        expires_at=expires_at,
        revoked_at=None,
    )
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO share_links (id, token_hash, transcript_id, recording_id,"
            " owner, with_audio, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                link.id,
                digest(token),
                link.transcript_id,
                link.recording_id,
                owner,
                int(with_audio),
                now,
                expires_at,
            ),
        )

    log.info(
        "share link %s created for transcript %s (audio: %s)",
        link.id,
        transcript_id,
        with_audio,
    )
    return token, link


def links_of(store: Store, owner: str, recording_id: str) -> list[ShareLink]:
    """The owner's links to one recording's transcripts, newest first."""
    rows = store.query(
        "SELECT * FROM share_links WHERE owner = ? AND recording_id = ?"
        " ORDER BY created_at DESC",
        (owner, recording_id),
    )
    return [_link(row) for row in rows]


def revoke(store: Store, owner: str, link_id: str) -> ShareLink:
    """End one of the owner's links at once; another owner's answers 404."""
    with store.transaction() as conn:
        changed = conn.execute(
            "UPDATE share_links SET revoked_at = COALESCE(revoked_at, ?)"
            " WHERE id = ? AND owner = ?",
            (time.time(), link_id, owner),
        )
        if changed.rowcount == 0:
            raise NotFoundError("Länken finns inte.")

    log.info("share link %s revoked", link_id)
    return _link(store.query("SELECT * FROM share_links WHERE id = ?", (link_id,))[0])


def resolve(store: Store, token: str) -> ShareLink:
    """The active link of ``token``; 404 when unknown, 410 when it has ended."""
    if not TOKEN_PATTERN.fullmatch(token):
        raise NotFoundError(NOT_FOUND_MESSAGE)
    rows = store.query(
        "SELECT l.* FROM share_links l"
        " JOIN recordings r ON r.id = l.recording_id AND r.owner = l.owner"
        " JOIN transcripts t ON t.id = l.transcript_id"
        "   AND t.recording_id = l.recording_id"
        " WHERE l.token_hash = ?",
        (digest(token),),
    )
    if not rows:
        raise NotFoundError(NOT_FOUND_MESSAGE)

    link = _link(rows[0])
    state = link.state()
    if state == "revoked":
        raise ShareLinkGoneError(REVOKED_MESSAGE)
    if state == "expired":
        raise ShareLinkGoneError(EXPIRED_MESSAGE)
    return link


def digest(token: str) -> str:
    """What the database keeps of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _owned_transcript(store: Store, owner: str, transcript_id: str) -> dict[str, Any]:
    row = store.transcript(transcript_id)
    store.owned_recording(owner, row["recording_id"])
    return row


def _link(row: dict[str, Any]) -> ShareLink:
    return ShareLink(
        id=row["id"],
        transcript_id=row["transcript_id"],
        recording_id=row["recording_id"],
        owner=row["owner"],
        with_audio=bool(row["with_audio"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )
