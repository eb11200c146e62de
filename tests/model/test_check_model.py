"""`streamrec check-model` accepts a good version and refuses a broken one with a sentence."""

import shutil
import subprocess
import sys

from serving.artifact import resolve_version
from tests.conftest import ROOT


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "streams", "check-model", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_model_accepts_a_trained_version(model_root):
    result = run(model_root)
    assert result.returncode == 0, result.stderr
    assert f"ok: {resolve_version(model_root)}" in result.stdout
    assert "sasrec" in result.stdout and "ndcg@10" in result.stdout


def test_check_model_refuses_a_corrupt_version(model_root, tmp_path):
    broken = tmp_path / resolve_version(model_root).name
    shutil.copytree(resolve_version(model_root), broken)
    (broken / "items.tsv").write_text("internal_id\\titem_id\\ttitle\\n")
    result = run(broken)
    assert result.returncode == 2
    assert "corrupt" in result.stderr and "sha256" in result.stderr
