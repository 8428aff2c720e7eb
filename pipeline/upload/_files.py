"""An upload on disk: its bytes, its info file, its lock, and their removal."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import NotFoundError, PedagogiskError
from pipeline.upload._protocol import (
    CHECKSUM_MESSAGE,
    EXPIRED_MESSAGE,
    LOCKED_MESSAGE,
    NOT_FOUND_MESSAGE,
    UploadError,
)

# One logger for the whole package, so log lines still name pipeline.upload.
log = logging.getLogger(__package__)

DEFAULT_TTL_S = 24 * 3600.0
MB = 1024**2
_WRITE_BACK_NOW = getattr(os, "POSIX_FADV_DONTNEED", None)
_ID = re.compile(r"[A-Za-z0-9_-]{22}")


@dataclass(frozen=True)
class _Info:
    """The info file beside an upload's bytes."""

    length: int | None  # None until a deferred length is sent
    offset: int  # bytes fsync'ed to the data file
    metadata: str  # the Upload-Metadata header as the client sent it
    expires: float
    completed: bool = False
    notified: bool = False
    owner: str = ""  # empty in info files written before it was kept


def purge_expired(
    root: Path, *, now: float | None = None, ttl_s: float = DEFAULT_TTL_S
) -> int:
    """Remove unfinished uploads past their expiry and return how many went.

    Also removes what a crash can leave behind after ``ttl_s``: bytes without an
    info file, half-written info files, and info files of completed uploads whose
    bytes the app has moved away. Uploads receiving right now are left alone.
    Blocking: run it in a thread from a periodic task.
    """
    now = time.time() if now is None else now
    removed = 0
    for info_path in Path(root).glob("*/*.info"):
        try:
            info = _read_info(info_path)
        except (PedagogiskError, OSError, ValueError, TypeError):
            continue
        data = info_path.with_suffix("")
        if info.expires >= now or (info.completed and data.exists()):
            continue
        if _remove(data, info_path):
            removed += 1
    for path in Path(root).glob("*/*"):
        leftover = path.name.endswith(".tmp") or (
            _ID.fullmatch(path.name) and not _info_path(path).exists()
        )
        with contextlib.suppress(FileNotFoundError):
            if leftover and path.stat().st_mtime < now - ttl_s:
                path.unlink()
                removed += 1
    if removed:
        log.info("purged %d expired uploads", removed)
    return removed


class _Upload:
    """One upload held under its lock for the length of one request.

    The lock is a ``flock`` on the data file, so it also holds between
    processes and dies with a killed one. Every method blocks; call them
    through ``to_thread``.
    """

    def __init__(self, data: Path, fd: int, info: _Info, ttl_s: float) -> None:
        self.data = data
        self.fd = fd  # -1 when the app has moved a completed upload away
        self.info = info
        self.ttl_s = ttl_s
        self.written = info.offset
        self._hash: Any = None
        self._digest = b""
        self._commit_bytes = 0

    @classmethod
    def open(cls, data: Path, info_path: Path, ttl_s: float) -> _Upload:
        try:
            fd = os.open(data, os.O_RDWR)
        except FileNotFoundError:
            fd = -1
        try:
            if fd >= 0 and not _try_lock(fd):
                raise UploadError(423, LOCKED_MESSAGE)
            info = _read_info(info_path)
            if fd < 0 and not info.completed:
                raise NotFoundError(NOT_FOUND_MESSAGE)
            if fd >= 0 and os.fstat(fd).st_size < info.offset:
                # Only a broken disk or a hand outside this module does this;
                # tell the client the truth so it sends the missing bytes again.
                log.warning("upload %s lost bytes past its offset", data.name)
                info = dataclasses.replace(info, offset=os.fstat(fd).st_size)
                _write_info(info_path, info)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        return cls(data, fd, info, ttl_s)

    def begin(self, checksum: tuple[str, bytes] | None, commit_bytes: int) -> None:
        """Get ready to append at the committed offset, dropping any stale tail."""
        os.ftruncate(self.fd, self.info.offset)
        self.written = self.info.offset
        self._hash = None
        if checksum is not None:
            self._hash = hashlib.new(checksum[0], usedforsecurity=False)
            self._digest = checksum[1]
        self._commit_bytes = 0 if checksum else commit_bytes

    def write(self, block: bytearray) -> None:
        start = self.written
        view = memoryview(block)
        while view:
            written = os.pwrite(self.fd, view, self.written)
            if self._hash is not None:
                self._hash.update(view[:written])
            self.written += written
            view = view[written:]
        if _WRITE_BACK_NOW is not None:
            # Start writing the block out now, so a commit's fdatasync finds
            # little left to write and dirty pages of a 2 GB upload never pile up.
            os.posix_fadvise(self.fd, start, self.written - start, _WRITE_BACK_NOW)
        if self._commit_bytes and (
            self.written - self.info.offset >= self._commit_bytes
        ):
            self.commit()

    def commit(self, **changes: Any) -> None:
        """Make the bytes written so far durable, then record them."""
        if self.written != self.info.offset:
            os.fdatasync(self.fd)
        expires = time.time() + self.ttl_s
        info = dataclasses.replace(
            self.info, offset=self.written, expires=expires, **changes
        )
        _write_info(_info_path(self.data), info)
        self.info = info

    def finish(self) -> None:
        if self._hash is not None and self._hash.digest() != self._digest:
            self.rollback()
            raise UploadError(460, CHECKSUM_MESSAGE)
        self.commit(completed=self.written == self.info.length)

    def rollback(self) -> None:
        os.ftruncate(self.fd, self.info.offset)
        self.written = self.info.offset

    def keep_received(self) -> None:
        """Commit what an interrupted body delivered, as far as the disk allows."""
        if self._hash is not None:
            self.rollback()
            return
        # On a full disk the info file needs room too; give some bytes back.
        for keep in (self.written, self.written - 64 * 1024, self.written - MB):
            if keep <= self.info.offset:
                break
            try:
                os.ftruncate(self.fd, keep)
                self.written = keep
                self.commit()
                return
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
        self.rollback()

    def mark_notified(self) -> None:
        self.info = dataclasses.replace(self.info, notified=True)
        _write_info(_info_path(self.data), self.info)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _owner_dir(root: Path, owner: str) -> Path:
    return root / hashlib.sha256(owner.encode()).hexdigest()[:32]


def _upload_paths(root: Path, owner: str, upload_id: str) -> tuple[Path, Path]:
    if not _ID.fullmatch(upload_id):
        raise NotFoundError(NOT_FOUND_MESSAGE)
    data = _owner_dir(root, owner) / upload_id
    return data, _info_path(data)


def _info_path(data: Path) -> Path:
    return data.with_name(data.name + ".info")


def _read_info(info_path: Path) -> _Info:
    try:
        return _Info(**json.loads(info_path.read_bytes()))
    except FileNotFoundError as exc:
        raise NotFoundError(NOT_FOUND_MESSAGE) from exc


def _write_info(info_path: Path, info: _Info) -> None:
    """Replace the info file atomically and durably."""
    tmp = info_path.with_name(info_path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(json.dumps(dataclasses.asdict(info)).encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, info_path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    folder = os.open(info_path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _remove(data: Path, info_path: Path) -> bool:
    """Delete an upload unless a request holds it; False when one does."""
    if not info_path.exists():
        raise NotFoundError(NOT_FOUND_MESSAGE)
    try:
        fd = os.open(data, os.O_RDONLY)
    except FileNotFoundError:
        info_path.unlink(missing_ok=True)
        return True
    try:
        if not _try_lock(fd):
            return False
        info_path.unlink(missing_ok=True)
        data.unlink(missing_ok=True)
        return True
    finally:
        os.close(fd)


def _check_not_expired(info: _Info) -> None:
    if not info.completed and info.expires < time.time():
        raise UploadError(410, EXPIRED_MESSAGE)
