"""The SQLite connection under ``Store``: one lock, atomic writes, plain reads.

It knows nothing of the tables; ``pipeline.storage`` hands it the schema.
Errors from SQLite and the file system are translated here into
``StorageError``, with a message that tells the user what to do.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from pipeline.errors import StorageError

log = logging.getLogger(__name__)

DISK_FULL_MESSAGE = (
    "Disken på servern är full. Inget har gått förlorat; ta bort gamla "
    "inspelningar eller be administratören frigöra utrymme och försök igen."
)


class Database:
    """A thread-safe SQLite connection, its schema applied on opening."""

    def __init__(
        self,
        path: Path,
        schema: str,
        added_columns: tuple[tuple[str, str, str], ...],
    ) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                path,
                check_same_thread=False,
                timeout=30,
                isolation_level=None,
            )
        except (OSError, sqlite3.Error) as exc:
            raise storage_error(exc) from exc
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=NORMAL")
        self._conn = conn
        self._lock = threading.RLock()
        with self._lock:
            conn.executescript(schema)
            _add_missing_columns(conn, added_columns)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write; disk-full and I/O errors become ``StorageError``."""
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                    self._conn.execute("COMMIT")
                except BaseException:
                    # SQLite has already rolled back after some errors (a full
                    # disk among them); a second rollback would hide the cause.
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                raise storage_error(exc) from exc

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._conn.execute(sql, params)
            names = [column[0] for column in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor]


def _add_missing_columns(
    conn: sqlite3.Connection, added_columns: tuple[tuple[str, str, str], ...]
) -> None:
    """Bring a database made by an older version up to ``added_columns``."""
    for table, column, kind in added_columns:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column in present:
            continue
        try:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        except sqlite3.OperationalError as exc:
            # Another process opening the same database got there first.
            if "duplicate column" not in str(exc):
                raise
            continue
        log.info("added column %s.%s to the database", table, column)


def storage_error(exc: BaseException) -> StorageError:
    """The ``StorageError`` a user sees for a failed database or file write."""
    log.error("storage failed: %s", exc)
    text = str(exc).lower()
    full = "disk is full" in text or getattr(exc, "errno", None) == errno.ENOSPC
    if full:
        return StorageError(DISK_FULL_MESSAGE)
    return StorageError(
        "Datakatalogen på servern går inte att skriva till. Kontakta administratören."
    )


def disk_error(exc: OSError) -> StorageError:
    """Translate a file-system error met while writing audio or exports."""
    return storage_error(exc)
