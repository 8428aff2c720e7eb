"""Resumable uploads: the server side of the tus 1.0 protocol.

``make_upload_router`` gives a FastAPI router that takes a recording in pieces,
straight to disk, and picks up where a dropped connection, a reloaded page or a
restarted server left off. Extensions: creation, creation-with-upload,
creation-defer-length, termination, expiration and checksum (sha1, md5).
A second PATCH to an upload that is still receiving gets 423 Locked, which tus
clients retry; a PATCH at the wrong offset gets 409.

Layout under ``root``::

    <owner-hash>/<upload-id>        the bytes received so far
    <owner-hash>/<upload-id>.info   JSON: length, offset, metadata, expiry, owner

The info file is the truth. Its offset counts only bytes that were fsync'ed
before the file was replaced, so a new process, even after ``kill -9``, resumes
at that offset and drops whatever an interrupted request left past it. A PATCH
that is refused therefore never moves the offset. Each owner has a folder of its
own, so another owner's upload ids answer 404.

``end_stalled`` is the server's side of a deferred length: an upload whose
client went away before it could say how long the file is (a browser recording
whose tab was closed) is ended at the offset it reached and handed over.

The parts: ``_protocol`` (headers, checksums and the messages a client reads),
``_files`` (an upload's bytes, info file and lock), ``_router`` (the endpoints),
``_body`` (a request body streamed to disk), ``_handover`` and ``_stalled``
(completed uploads given to the app) and ``_stats`` (counters for metrics).
"""

from pipeline.upload._body import BLOCK_BYTES, QUEUE_BLOCKS
from pipeline.upload._files import DEFAULT_TTL_S, MB, purge_expired
from pipeline.upload._handover import CompletionHandler
from pipeline.upload._protocol import (
    CHECKSUM_ALGORITHMS,
    CHECKSUM_MESSAGE,
    CONTENT_TYPE_MESSAGE,
    DROPPED_MESSAGE,
    EXPIRED_MESSAGE,
    HANDOFF_MESSAGE,
    IDLE_MESSAGE,
    LOCKED_MESSAGE,
    MAX_METADATA_CHARS,
    NO_ROOM_MESSAGE,
    NOT_FOUND_MESSAGE,
    OFFSET_MESSAGE,
    OFFSET_TYPE,
    TOO_LARGE_MESSAGE,
    TOO_LONG_MESSAGE,
    TUS_EXTENSIONS,
    TUS_VERSION,
    VERSION_MESSAGE,
    UploadError,
)
from pipeline.upload._router import (
    DEFAULT_COMMIT_BYTES,
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_SIZE,
    DEFAULT_RESERVE_BYTES,
    DELETE_WAIT_S,
    DISK_THREADS,
    make_upload_router,
)
from pipeline.upload._stalled import end_stalled
from pipeline.upload._stats import UploadStats

__all__ = [
    "make_upload_router",
    "purge_expired",
    "end_stalled",
    "CompletionHandler",
    "UploadError",
    "UploadStats",
    "TUS_VERSION",
    "TUS_EXTENSIONS",
    "CHECKSUM_ALGORITHMS",
    "OFFSET_TYPE",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_TTL_S",
    "DEFAULT_RESERVE_BYTES",
    "DEFAULT_COMMIT_BYTES",
    "DEFAULT_IDLE_TIMEOUT_S",
    "MB",
    "BLOCK_BYTES",
    "QUEUE_BLOCKS",
    "DISK_THREADS",
    "MAX_METADATA_CHARS",
    "DELETE_WAIT_S",
    "NOT_FOUND_MESSAGE",
    "EXPIRED_MESSAGE",
    "LOCKED_MESSAGE",
    "OFFSET_MESSAGE",
    "TOO_LARGE_MESSAGE",
    "NO_ROOM_MESSAGE",
    "TOO_LONG_MESSAGE",
    "CHECKSUM_MESSAGE",
    "VERSION_MESSAGE",
    "CONTENT_TYPE_MESSAGE",
    "DROPPED_MESSAGE",
    "IDLE_MESSAGE",
    "HANDOFF_MESSAGE",
]
