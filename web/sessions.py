"""Signing in: login attempts counted against guessing, and the sessions after.

A session cookie holds a random token; the database keeps only its SHA-256,
so a copy of the database lets no one in. Each session has its own CSRF token,
which ``web.auth`` requires back on state-changing routes. Failed logins are
counted per user name and per client address, so guessing is slow.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import time

from pipeline.errors import NotFoundError, PedagogiskError
from pipeline.storage import Store
from web.accounts import NAME_MAX_CHARS, normalize_name, verify

log = logging.getLogger(__name__)

SESSION_LIFETIME_S = 14 * 24 * 3600
ATTEMPT_WINDOW_S = 15 * 60
MAX_FAILURES_PER_NAME = 5
MAX_FAILURES_PER_CLIENT = 20


class LoginThrottledError(PedagogiskError):
    """Too many failed logins for this name or address; wait and retry."""

    status = 429

    def __init__(self, retry_after_s: int) -> None:
        minutes = max(1, math.ceil(retry_after_s / 60))
        unit = "minut" if minutes == 1 else "minuter"
        super().__init__(
            f"För många misslyckade inloggningsförsök. Försök igen om {minutes} {unit}."
        )
        self.retry_after_s = retry_after_s


def authenticate(store: Store, name: str, password: str, *, client: str) -> bool:
    """Check a login attempt, counting failures per name and per client address.

    Raises ``LoginThrottledError`` while either has too many recent failures,
    whether or not the password is right. Success clears the name's failures.
    """
    name_key = "name:" + normalize_name(name)[: NAME_MAX_CHARS + 1]
    attempt_ids = _begin_attempt(store, name_key, "client:" + client)

    if not verify(store, name, password):
        log.warning("failed login from %s", client)
        return False

    with store.transaction() as conn:
        conn.execute("DELETE FROM login_attempts WHERE key = ?", (name_key,))
        conn.executemany(
            "DELETE FROM login_attempts WHERE rowid = ?", [(i,) for i in attempt_ids]
        )
    return True


def _begin_attempt(store: Store, name_key: str, client_key: str) -> list[int]:
    """Record an attempt as failed unless refused; the rows to drop on success."""
    now = time.time()
    limits = ((name_key, MAX_FAILURES_PER_NAME), (client_key, MAX_FAILURES_PER_CLIENT))

    with store.transaction() as conn:
        conn.execute(
            "DELETE FROM login_attempts WHERE at <= ?", (now - ATTEMPT_WINDOW_S,)
        )
        wait = 0.0
        ids: list[int] = []
        for key, limit in limits:
            times = [
                row[0]
                for row in conn.execute(
                    "SELECT at FROM login_attempts WHERE key = ? ORDER BY at", (key,)
                )
            ]
            if len(times) >= limit:
                # Room for one more once the failure that tipped it expires.
                wait = max(wait, times[len(times) - limit] + ATTEMPT_WINDOW_S - now)
        if wait <= 0:
            for key, _ in limits:
                inserted = conn.execute(
                    "INSERT INTO login_attempts (key, at) VALUES (?, ?)", (key, now)
                )
                ids.append(inserted.lastrowid or 0)

    if wait > 0:
        log.warning("login refused for %s: too many failures", client_key)
        raise LoginThrottledError(math.ceil(wait))
    return ids


def create_session(store: Store, user: str) -> tuple[str, str]:
    """Start a session; its cookie token and its CSRF token."""
    token = secrets.token_urlsafe(32)
    csrf_token = secrets.token_urlsafe(32)
    now = time.time()

    with store.transaction() as conn:
        known = conn.execute("SELECT 1 FROM users WHERE name = ?", (user,))
        if known.fetchone() is None:
            raise NotFoundError(f"Användaren '{user}' finns inte.")
        conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (now,))
        conn.execute(
            "INSERT INTO sessions (token_hash, user_name, csrf_token, created_at,"
            " expires_at) VALUES (?, ?, ?, ?, ?)",
            (_digest(token), user, csrf_token, now, now + SESSION_LIFETIME_S),
        )

    log.info("session started for %s", user)
    return token, csrf_token


def session_user(store: Store, token: str | None) -> str | None:
    """The user signed in with this token, or None (an expired one is removed)."""
    session = active_session(store, token)
    return None if session is None else str(session["user_name"])


def end_session(store: Store, token: str | None) -> None:
    if not token:
        return
    with store.transaction() as conn:
        conn.execute("DELETE FROM sessions WHERE token_hash = ?", (_digest(token),))


def end_all_sessions(store: Store, user: str) -> int:
    """Sign the user out everywhere; how many sessions ended."""
    with store.transaction() as conn:
        ended = conn.execute("DELETE FROM sessions WHERE user_name = ?", (user,))
    log.info("all %d sessions of %s ended", ended.rowcount, user)
    return ended.rowcount


def active_session(store: Store, token: str | None) -> dict[str, str] | None:
    """The session's ``user_name`` and ``csrf_token``, or None when it has ended."""
    if not token or len(token) > 256:
        return None
    digest = _digest(token)
    rows = store.query(
        "SELECT user_name, csrf_token, expires_at FROM sessions WHERE token_hash = ?",
        (digest,),
    )
    if not rows:
        return None
    if rows[0]["expires_at"] <= time.time():
        end_session(store, token)
        return None
    return {"user_name": rows[0]["user_name"], "csrf_token": rows[0]["csrf_token"]}


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
