"""The app-level tests' running app; the helpers live in ``tests.apprunner``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.apprunner import (
    PASSWORDS,
    ROOT,
    RunningApp,
    add_users,
    app_env,
    app_with_users,
    free_port,
    start_app,
    stop_app,
    tus_headers,
    tus_upload,
    wait_for_transcript,
)

# The tests in this folder import these names from here.
__all__ = [
    "PASSWORDS",
    "ROOT",
    "RunningApp",
    "add_users",
    "app_env",
    "free_port",
    "start_app",
    "stop_app",
    "tus_headers",
    "tus_upload",
    "wait_for_transcript",
]


@pytest.fixture(scope="module")
def running_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    data_dir = tmp_path_factory.mktemp("app") / "data"
    with app_with_users(data_dir) as app:
        yield app
