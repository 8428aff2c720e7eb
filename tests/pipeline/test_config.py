"""Settings from PD_* environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.errors import PedagogiskError


def test_defaults_need_no_environment() -> None:
    settings = Settings.from_env({})

    assert settings.data_dir == Path("data")
    assert (settings.engine, settings.language) == ("local", "sv")
    assert settings.memory_budget_mb == 512


def test_values_are_read_and_typed() -> None:
    settings = Settings.from_env(
        {
            "PD_DATA_DIR": "/srv/pd",
            "PD_ENGINE": "openai",
            "PD_MEMORY_BUDGET_MB": "1024",
            "PD_SEGMENT_SECONDS": "45.5",
            "PD_WORD_TIMESTAMPS": "true",
            "OPENAI_API_KEY": "sk-test",
        }
    )

    assert settings.data_dir == Path("/srv/pd")
    assert settings.engine == "openai"
    assert settings.memory_budget_mb == 1024
    assert settings.segment_seconds == 45.5
    assert settings.word_timestamps is True
    assert settings.openai_api_key == "sk-test"
    assert "sk-test" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PD_ENGINE", "cloud", "PD_ENGINE måste vara"),
        ("PD_MEMORY_BUDGET_MB", "many", "ogiltigt värde"),
        ("PD_MEMORY_BUDGET_MB", "100", "minst 256"),
        ("PD_SEGMENT_SECONDS", "5", "mellan 10 och 600"),
        ("PD_WORD_TIMESTAMPS", "kanske", "ogiltigt värde"),
    ],
)
def test_bad_values_are_refused_in_swedish(name: str, value: str, message: str) -> None:
    with pytest.raises(PedagogiskError, match=message):
        Settings.from_env({name: value})
