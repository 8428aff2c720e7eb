"""Accounts: users with argon2 passwords, sessions that survive a restart, CSRF.

A session cookie holds a random token; the database keeps only its SHA-256,
so a copy of the database lets no one in. Each session has its own CSRF token,
which state-changing routes require back in a header or a form field. Failed
logins are counted per user name and per client address, so guessing is slow.

``Auth`` puts this on the web: the login and logout routes, and dependencies
that read the session cookie (``Auth.current_user`` is Gradio's auth
dependency). ``python -m web.accounts`` manages users from the command line.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import hashlib
import hmac
import html
import logging
import math
import os
import secrets
import string
import sys
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import APIRouter, Form, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from pipeline.config import Settings
from pipeline.errors import NotFoundError, PedagogiskError
from pipeline.storage import Store

log = logging.getLogger(__name__)

# Replaced by the tests with a cheaper hasher; stored hashes are upgraded to
# whatever this is at the next successful login.
PASSWORD_HASHER = PasswordHasher()
# Each hash takes 64 MiB; a burst of logins on a 512 MB server must queue
# rather than run all at once.
_HASHING_SLOTS = threading.BoundedSemaphore(2)

SESSION_COOKIE = "pd_session"
CSRF_COOKIE = "pd_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SESSION_LIFETIME_S = 14 * 24 * 3600
ADMIN_NAME = "admin"
NAME_MAX_CHARS = 64
NAME_SYMBOLS = " ._-@+"
PASSWORD_MIN_CHARS = 8
ATTEMPT_WINDOW_S = 15 * 60
MAX_FAILURES_PER_NAME = 5
MAX_FAILURES_PER_CLIENT = 20
DEFAULT_NEXT = "/app/"
WRONG_CREDENTIALS = "Fel användarnamn eller lösenord."
NOT_SIGNED_IN = "Du är inte inloggad. Logga in först."
STALE_PAGE = "Sidan är för gammal. Ladda om den och försök igen."


class AccountError(PedagogiskError):
    """A user name or password that cannot be accepted."""

    status = 400


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


@dataclass(frozen=True)
class User:
    name: str
    is_admin: bool
    created_at: float


# Users and passwords -----------------------------------------------------------


def add_user(store: Store, name: str, password: str, *, admin: bool = False) -> str:
    """Create a user; the cleaned name it was stored under."""
    name = clean_name(name)
    password_hash = _hash(PASSWORD_HASHER, _checked_password(password))

    with store.transaction() as conn:
        taken = conn.execute("SELECT 1 FROM users WHERE name = ?", (name,))
        if taken.fetchone() is not None:
            raise AccountError(f"Användaren '{name}' finns redan.")
        conn.execute(
            "INSERT INTO users (name, password_hash, is_admin, created_at)"
            " VALUES (?, ?, ?, ?)",
            (name, password_hash, int(admin), time.time()),
        )

    log.info("user %s created (admin: %s)", name, admin)
    return name


def set_password(store: Store, name: str, password: str) -> None:
    """Give a user a new password and sign out every session they have."""
    name = _normalized(name)
    password_hash = _hash(PASSWORD_HASHER, _checked_password(password))

    with store.transaction() as conn:
        changed = conn.execute(
            "UPDATE users SET password_hash = ? WHERE name = ?", (password_hash, name)
        )
        if changed.rowcount == 0:
            raise NotFoundError(f"Användaren '{name}' finns inte.")
        conn.execute("DELETE FROM sessions WHERE user_name = ?", (name,))

    log.info("password of %s changed; sessions ended", name)


def verify(store: Store, name: str, password: str) -> bool:
    """Whether the password is the user's; unknown names take as long."""
    name = _normalized(name)
    password = unicodedata.normalize("NFC", password)
    hasher = PASSWORD_HASHER
    rows = store.query("SELECT password_hash FROM users WHERE name = ?", (name,))
    if not rows:
        _matches(hasher, _dummy_hash(hasher), password)
        return False

    stored = rows[0]["password_hash"]
    if not _matches(hasher, stored, password):
        return False

    if hasher.check_needs_rehash(stored):
        upgraded = _hash(hasher, password)
        with store.transaction() as conn:
            conn.execute(
                "UPDATE users SET password_hash = ? WHERE name = ?", (upgraded, name)
            )
        log.info("password hash of %s upgraded", name)
    return True


def user_exists(store: Store, name: str) -> bool:
    rows = store.query("SELECT 1 FROM users WHERE name = ?", (_normalized(name),))
    return bool(rows)


def count_users(store: Store) -> int:
    return int(store.query("SELECT COUNT(*) AS n FROM users")[0]["n"])


def list_users(store: Store) -> list[User]:
    rows = store.query("SELECT name, is_admin, created_at FROM users ORDER BY name")
    return [User(r["name"], bool(r["is_admin"]), r["created_at"]) for r in rows]


def ensure_admin(store: Store, env_password: str | None) -> str | None:
    """On a first start, create ``admin``; the password if it was made up here.

    ``env_password`` (PD_ADMIN_PASSWORD) is used when given. Otherwise a random
    password is returned for the caller to show once; it is stored nowhere else.
    """
    if count_users(store) > 0:
        return None

    generated = None if env_password else secrets.token_urlsafe(12)
    password = env_password or generated or ""
    try:
        password_hash = _hash(PASSWORD_HASHER, _checked_password(password))
    except AccountError as exc:
        raise AccountError(
            f"PD_ADMIN_PASSWORD måste vara minst {PASSWORD_MIN_CHARS} tecken."
        ) from exc

    with store.transaction() as conn:
        # Checked inside the write lock: two processes starting at once still
        # create one admin between them.
        if conn.execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None:
            return None
        conn.execute(
            "INSERT INTO users (name, password_hash, is_admin, created_at)"
            " VALUES (?, ?, 1, ?)",
            (ADMIN_NAME, password_hash, time.time()),
        )

    log.info("first start: user %s created", ADMIN_NAME)
    return generated


def clean_name(name: str) -> str:
    """The name as stored: trimmed, NFC; ``AccountError`` when unusable."""
    name = _normalized(name)
    if not 1 <= len(name) <= NAME_MAX_CHARS:
        raise AccountError(
            f"Användarnamnet måste vara 1–{NAME_MAX_CHARS} tecken långt."
        )
    if not all(c.isalnum() or c in NAME_SYMBOLS for c in name):
        raise AccountError(
            "Användarnamnet får bara innehålla bokstäver, siffror, mellanslag"
            f" och tecknen {NAME_SYMBOLS.strip()}."
        )
    return name


def _checked_password(password: str) -> str:
    password = unicodedata.normalize("NFC", password)
    if len(password) < PASSWORD_MIN_CHARS:
        raise AccountError(
            f"Lösenordet måste vara minst {PASSWORD_MIN_CHARS} tecken långt."
        )
    return password


def _normalized(text: str) -> str:
    # The same letters typed on different systems (å as one or two code
    # points) must give the same name; passwords get the NFC step alone.
    return unicodedata.normalize("NFC", text.strip())


def _hash(hasher: PasswordHasher, password: str) -> str:
    with _HASHING_SLOTS:
        return hasher.hash(password)


def _matches(hasher: PasswordHasher, password_hash: str, password: str) -> bool:
    try:
        with _HASHING_SLOTS:
            return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@functools.cache
def _dummy_hash(hasher: PasswordHasher) -> str:
    return _hash(hasher, secrets.token_urlsafe(16))


# Logins and sessions ------------------------------------------------------------


def authenticate(store: Store, name: str, password: str, *, client: str) -> bool:
    """Check a login attempt, counting failures per name and per client address.

    Raises ``LoginThrottledError`` while either has too many recent failures,
    whether or not the password is right. Success clears the name's failures.
    """
    name_key = "name:" + _normalized(name)[: NAME_MAX_CHARS + 1]
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
    session = _session(store, token)
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


def _session(store: Store, token: str | None) -> dict[str, str] | None:
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


# The web side -------------------------------------------------------------------
# Nothing here is cached: every call reads the session table, so a logout or an
# expiry takes effect at the very next request.

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
LOGIN_PAGE = string.Template(
    (Path(__file__).with_name("login.html")).read_text(encoding="utf-8")
)
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline';"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


class Auth:
    """The login routes and the session dependencies, over one store.

    ``router`` holds GET /login, POST /login and POST /logout. The methods are
    dependencies: ``current_user`` (also Gradio's ``auth_dependency``),
    ``require_user`` for API routes and ``require_csrf`` for changes.
    """

    def __init__(self, store: Store, *, secure_cookies: bool) -> None:
        self.store = store
        self.secure_cookies = secure_cookies
        self.router = APIRouter()
        self.router.add_api_route("/login", self._show_login, methods=["GET"])
        self.router.add_api_route("/login", self._login, methods=["POST"])
        self.router.add_api_route("/logout", self._logout, methods=["POST"])

    def current_user(self, request: Request) -> str | None:
        """The signed-in user, or None; one indexed read, cheap on every request."""
        return session_user(self.store, request.cookies.get(SESSION_COOKIE))

    def require_user(self, request: Request) -> str:
        """The signed-in user; 401 when there is none."""
        user = self.current_user(request)
        if user is None:
            raise HTTPException(status_code=401, detail=NOT_SIGNED_IN)
        return user

    async def require_csrf(self, request: Request) -> str:
        """The signed-in user of a state-changing request; 401, or 403 without CSRF.

        The session's CSRF token must come back in the ``X-CSRF-Token`` header
        or, from an HTML form, in the ``csrf_token`` field. GET, HEAD and
        OPTIONS change nothing and need only the session.
        """
        session = _session(self.store, request.cookies.get(SESSION_COOKIE))
        if session is None:
            raise HTTPException(status_code=401, detail=NOT_SIGNED_IN)
        if request.method in SAFE_METHODS:
            return session["user_name"]

        sent = request.headers.get(CSRF_HEADER) or await _form_token(request)
        if not hmac.compare_digest(sent.encode(), session["csrf_token"].encode()):
            raise HTTPException(status_code=403, detail=STALE_PAGE)
        return session["user_name"]

    def _show_login(
        self, request: Request, next_path: Annotated[str, Query(alias="next")] = ""
    ) -> Response:
        target = safe_next(next_path, _default_next(request))
        if self.current_user(request) is not None:
            return RedirectResponse(target, status_code=303)
        return login_page(target)

    # A plain def: FastAPI runs it in a thread, so argon2 never blocks the loop.
    def _login(
        self,
        request: Request,
        username: Annotated[str, Form()] = "",
        password: Annotated[str, Form()] = "",
        next_path: Annotated[str, Form(alias="next")] = "",
    ) -> Response:
        target = safe_next(next_path, _default_next(request))
        client = request.client.host if request.client else "okänd"
        try:
            accepted = authenticate(self.store, username, password, client=client)
        except LoginThrottledError as exc:
            page = login_page(target, username, exc.message, status_code=exc.status)
            page.headers["Retry-After"] = str(exc.retry_after_s)
            return page
        if not accepted:
            return login_page(target, username, WRONG_CREDENTIALS, status_code=401)

        end_session(self.store, request.cookies.get(SESSION_COOKIE))
        token, csrf_token = create_session(self.store, _normalized(username))
        response = RedirectResponse(target, status_code=303)
        for name, value, http_only in (
            (SESSION_COOKIE, token, True),
            (CSRF_COOKIE, csrf_token, False),
        ):
            response.set_cookie(
                name,
                value,
                max_age=SESSION_LIFETIME_S,
                path="/",
                secure=self.secure_cookies,
                httponly=http_only,
                samesite="lax",
            )
        return response

    async def _logout(self, request: Request) -> Response:
        token = request.cookies.get(SESSION_COOKIE)
        # A session that has already ended has nothing left to protect.
        if _session(self.store, token) is not None:
            await self.require_csrf(request)
            end_session(self.store, token)

        root = str(request.scope.get("root_path", ""))
        response = RedirectResponse(root + "/login", status_code=303)
        for name, http_only in ((SESSION_COOKIE, True), (CSRF_COOKIE, False)):
            response.delete_cookie(
                name, path="/", secure=self.secure_cookies, httponly=http_only
            )
        return response


def make_auth_router(store: Store, *, secure_cookies: bool) -> APIRouter:
    """GET /login, POST /login and POST /logout; ``Auth`` has the dependencies."""
    return Auth(store, secure_cookies=secure_cookies).router


def safe_next(target: str | None, default: str = DEFAULT_NEXT) -> str:
    """``target`` if it is a path on this site, else ``default``."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    # Browsers read a backslash as a slash and drop tabs and newlines, which
    # would turn "/\evil.example" into another site.
    if "\\" in target or any(ord(c) < 32 or ord(c) == 127 for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def login_page(
    target: str, username: str = "", error: str = "", *, status_code: int = 200
) -> HTMLResponse:
    """The login form, with an error message above it when there is one."""
    shown = f'<p class="fel" role="alert">{html.escape(error)}</p>' if error else ""
    body = LOGIN_PAGE.substitute(
        error=shown,
        next=html.escape(target),
        username=html.escape(username[: NAME_MAX_CHARS + 1]),
    )
    return HTMLResponse(body, status_code=status_code, headers=PAGE_HEADERS)


def _default_next(request: Request) -> str:
    return str(request.scope.get("root_path", "")) + DEFAULT_NEXT


async def _form_token(request: Request) -> str:
    # Only forms are read here: any other body (an upload the route streams
    # itself) must stay unread, so such a request has to send the header.
    kind = request.headers.get("content-type", "")
    if not kind.startswith(("application/x-www-form-urlencoded", "multipart/")):
        return ""
    value = (await request.form()).get(CSRF_FIELD)
    return value if isinstance(value, str) else ""


# The command line ---------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m web.accounts", description="Hantera användarkonton."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add = commands.add_parser("add-user", help="skapa en användare")
    add.add_argument("name", metavar="NAMN")
    add.add_argument("--admin", action="store_true", help="gör användaren till admin")
    change = commands.add_parser("set-password", help="byt en användares lösenord")
    change.add_argument("name", metavar="NAMN")
    commands.add_parser("list-users", help="visa alla användare")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("PD_LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        with Store(Settings.from_env().data_dir) as store:
            return _run(args, store)
    except PedagogiskError as exc:
        print(f"fel: {exc.message}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, EOFError):
        print("fel: Avbrutet; inget ändrades.", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, store: Store) -> int:
    if args.command == "list-users":
        for user in list_users(store):
            role = "admin" if user.is_admin else "användare"
            created = time.strftime("%Y-%m-%d", time.localtime(user.created_at))
            print(f"{user.name}\t{role}\t{created}")
        return 0

    name = clean_name(args.name)
    if args.command == "add-user":
        if user_exists(store, name):
            raise AccountError(f"Användaren '{name}' finns redan.")
        add_user(store, name, _read_password(), admin=args.admin)
        print(f"Användaren '{name}' är skapad.")
    else:
        if not user_exists(store, name):
            raise NotFoundError(f"Användaren '{name}' finns inte.")
        set_password(store, name, _read_password())
        print(f"Lösenordet för '{name}' är bytt; alla dess sessioner är avslutade.")
    return 0


def _read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    password = getpass.getpass("Lösenord: ")
    if getpass.getpass("Samma lösenord igen: ") != password:
        raise AccountError("Lösenorden var inte lika.")
    return password


if __name__ == "__main__":
    raise SystemExit(main())
