"""Accounts: users with argon2 passwords, and ``python -m web.accounts``.

Names are trimmed and NFC-normalized, so the same letters typed on any system
give the same user; passwords are stored only as argon2 hashes. Signing in
lives in ``web.sessions`` and the login routes in ``web.auth``. Run
``python -m web.accounts`` to manage users from the command line.
"""

from __future__ import annotations

import argparse
import functools
import getpass
import logging
import os
import secrets
import sys
import threading
import time
import unicodedata
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

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

ADMIN_NAME = "admin"
NAME_MAX_CHARS = 64
NAME_SYMBOLS = " ._-@+"
PASSWORD_MIN_CHARS = 8


class AccountError(PedagogiskError):
    """A user name or password that cannot be accepted."""

    status = 400


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
    name = normalize_name(name)
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
    name = normalize_name(name)
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
    rows = store.query("SELECT 1 FROM users WHERE name = ?", (normalize_name(name),))
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
    name = normalize_name(name)
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


def normalize_name(text: str) -> str:
    """A name as typed, trimmed and NFC, for looking it up; nothing is checked."""
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
