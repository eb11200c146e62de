"""The registry's shadow: the newest version of the root's shadow/ folder (or STREAMREC_SHADOW_MODEL), followed."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from serving.artifact import MANIFEST, ArtifactError
from serving.registry import REJECTED, SWAPPED, UNCHANGED, ModelRegistry


def version(root: Path, name: str, broken: bool = False) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / MANIFEST).write_text(json.dumps({"model_version": name, "broken": broken}))
    return folder


def load(path: Path):
    """A stand-in engine: what the registry reads of one (a broken manifest is refused like a bad artifact)."""
    manifest = json.loads((path / MANIFEST).read_text())
    if manifest["broken"]:
        raise ArtifactError(f"{path} is broken")
    return SimpleNamespace(version=manifest["model_version"], artifact=SimpleNamespace(path=path))


def test_no_shadow_folder_means_no_shadow(tmp_path):
    version(tmp_path, "v1")
    registry = ModelRegistry(tmp_path, load)
    assert registry.shadow is None and registry.poll_shadow() == UNCHANGED


def test_the_newest_shadow_version_is_scored_followed_and_dropped_when_removed(tmp_path):
    version(tmp_path, "v1")
    version(tmp_path / "shadow", "s1")
    registry = ModelRegistry(tmp_path, load)
    assert registry.current.version == "v1" and registry.shadow.version == "s1"
    assert [p.name for p in sorted(tmp_path.iterdir()) if (p / MANIFEST).is_file()] == ["v1"]  # shadow/ is no version
    assert registry.poll() == UNCHANGED  # the live model does not jump to the shadow
    version(tmp_path / "shadow", "s2")
    assert registry.poll_shadow() == SWAPPED and registry.shadow.version == "s2"
    assert registry.poll_shadow() == UNCHANGED
    version(tmp_path / "shadow", "s3", broken=True)
    assert registry.poll_shadow() == REJECTED and registry.shadow.version == "s2"
    assert registry.poll_shadow() == UNCHANGED  # refused once, not retried every poll
    for name in ("s2", "s3"):
        (tmp_path / "shadow" / name).rename(tmp_path / "shadow" / f".promoted-{name}")
    assert registry.poll_shadow() == SWAPPED and registry.shadow.version == "s1"  # the newest left
    (tmp_path / "shadow" / "s1").rename(tmp_path / "shadow" / ".promoted-s1")
    assert registry.poll_shadow() == SWAPPED and registry.shadow is None


def test_a_shadow_setting_pins_a_version_folder_even_beside_a_pinned_live_model(tmp_path):
    live = version(tmp_path / "root", "v1")
    candidate = version(tmp_path / "elsewhere", "c1")
    registry = ModelRegistry(live, load, shadow=candidate)
    assert registry.shadow.version == "c1" and registry.shadow_source == candidate


def test_a_shadow_setting_without_a_model_fails_at_start_with_what_to_do(tmp_path):
    version(tmp_path / "root", "v1")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match="STREAMREC_SHADOW_MODEL=.*holds no model version"):
        ModelRegistry(tmp_path / "root", load, shadow=tmp_path / "empty")
