"""What every Gradio handler of the app shares: who asks, and errors as messages.

Handlers read the logged-in user from ``gr.Request`` (set by the session
login that ``web.server`` mounts Gradio behind) and only touch that user's
rows; the project's errors reach the page as Swedish messages, not crashes.
"""

from __future__ import annotations

import functools
from typing import Any

import gradio as gr

from pipeline.errors import PedagogiskError


def signed_in(request: gr.Request) -> str:
    """The signed-in user's name; a Gradio error for anyone else."""
    name = getattr(request, "username", None)
    if not name:
        raise gr.Error("Du är inte inloggad.")
    return str(name)


def guarded(handler: Any) -> Any:
    """``handler`` with the project's errors turned into a Swedish message."""

    @functools.wraps(handler)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except PedagogiskError as exc:
            raise gr.Error(exc.message) from exc

    return wrapped
