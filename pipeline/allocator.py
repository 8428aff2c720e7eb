"""glibc's allocator, set up once at program start for a small server.

Two of glibc's defaults cost the local engine a lot of memory that is free
but never handed back:

- Blocks below the mmap threshold come from glibc's heaps and stay there
  after ``free``; the threshold rises (up to 32 MiB) each time a large block
  is freed, so CTranslate2's buffers of every segment end up in the heaps. A
  fixed 1 MiB threshold serves them with mmap, which returns them at once.
- Each thread that allocates may get an arena of its own (up to 8 per core),
  and every arena keeps its own free memory. Two are enough for the worker,
  the web server and the upload threads.

Measured with the whole app in docs/benchmarks.md ("Whole-app memory").
The fixed threshold has a price: every large buffer is mapped and zeroed
afresh, which made the local engine about a third slower, so a budget of
``TIGHT_BUDGET_MB`` or more keeps glibc's defaults.
A value set in the environment (``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_ARENA_MAX``) is left as it is; other C libraries are left alone.
"""

from __future__ import annotations

import ctypes
import logging
import os

from pipeline.config import TIGHT_BUDGET_MB

log = logging.getLogger(__name__)

MMAP_THRESHOLD_BYTES = 1 << 20
ARENA_MAX = 2
# mallopt(3) parameter numbers from glibc's malloc.h.
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def tune(budget_mb: int) -> None:
    """Apply the two settings above below a tight budget; call before any thread."""
    if budget_mb >= TIGHT_BUDGET_MB:
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (musl, macOS)
        return

    for env_name, param, value in (
        ("MALLOC_MMAP_THRESHOLD_", _M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
        ("MALLOC_ARENA_MAX", _M_ARENA_MAX, ARENA_MAX),
    ):
        if env_name in os.environ:
            continue
        if libc.mallopt(param, value) != 1:
            log.warning("mallopt refused %s=%d", env_name, value)
