"""The project's one exception hierarchy.

Every error a user can meet carries a message in Swedish that says what went
wrong and what to do next, and the HTTP status it maps to in the web app.
The technical cause stays in the exception chain and the log.

    PedagogiskError
    ├── InputError          the recording cannot be used (400)
    ├── NotFoundError       no such recording or transcript (404)
    ├── ModelError          the local model cannot be loaded (500)
    ├── EngineError         a transcription engine failed (502)
    └── StorageError        the data directory cannot take more (507)
"""

from __future__ import annotations


class PedagogiskError(Exception):
    """Base of every error the project raises on purpose."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(PedagogiskError):
    """The recording is not usable audio."""

    status = 400


class NotFoundError(PedagogiskError):
    status = 404


class ModelError(PedagogiskError):
    """A local model is missing, damaged or does not fit."""

    status = 500


class EngineError(PedagogiskError):
    """A transcription engine failed after its own retries."""

    status = 502


class StorageError(PedagogiskError):
    """The disk is full or the data directory cannot be written."""

    status = 507
