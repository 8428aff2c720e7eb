"""Counters of the upload endpoint, read by the app's metrics."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class UploadStats:
    """Counters for metrics, shared with the app; nothing here resets them."""

    in_progress: int = 0  # request bodies being received right now
    bytes_received: int = 0  # body bytes read from clients since start
    completed: int = 0  # uploads handed to ``on_complete``
