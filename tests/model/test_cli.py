"""The CLI: train -> evaluate -> export, and its error messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from encoders.cli import main

TINY = [
    "--epochs",
    "3",
    "--max-len",
    "10",
    "--dim",
    "16",
    "--layers",
    "1",
    "--batch-size",
    "64",
    "--top-k",
    "10",
    "--no-text",
    "--no-progress",
    "--device",
    "cpu",
]


def test_train_evaluate_export(sim_dir, tmp_path, capsys):
    root = tmp_path / "models"
    events = str(sim_dir / "events.jsonl")
    assert main(["train", "--events", events, "--out", str(root), *TINY]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    version = Path(out[-1])
    assert version.parent == root and (version / "manifest.json").is_file()
    assert any(line.startswith("sasrec") for line in out)
    assert any(line.startswith("popularity") for line in out)
    assert any(line.startswith("cooccurrence") for line in out)
    manifest = json.loads((version / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["training"]["epochs"] == 3 and manifest["top_k"] == 10
    assert manifest["config"]["max_len"] == 10 and manifest["config"]["lr"] == 2e-3

    assert main(["evaluate", "--model", str(version), "--events", events]) == 0
    table = capsys.readouterr().out
    assert "ndcg@10" in table and "sasrec" in table and "cooccurrence" in table

    ckpts = list((tmp_path / "models-checkpoints").glob("*.pt"))
    assert [c.stem for c in ckpts] == [version.name]
    assert main(["export", "--checkpoint", str(ckpts[0]), "--out", str(root), "--top-k", "5"]) == 0
    again = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert again != version and again.parent == root
    assert json.loads((again / "manifest.json").read_text())["top_k"] == 5
    assert sorted(p.name for p in root.iterdir()) == sorted([version.name, again.name])


def test_missing_input_is_a_sentence_not_a_traceback(tmp_path, capsys):
    rc = main(["train", "--events", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert rc == 2 and "does not exist" in err and "--events" in err and "Traceback" not in err
    (tmp_path / "empty.jsonl").write_text("")
    rc = main(["train", "--events", str(tmp_path / "empty.jsonl"), "--out", str(tmp_path / "m")])
    assert rc == 2 and "is empty" in capsys.readouterr().err
    rc = main(["export", "--checkpoint", str(tmp_path / "x.pt"), "--out", str(tmp_path / "m")])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    rc = main(
        [
            "train",
            "--events",
            str(tmp_path / "empty.jsonl"),
            "--out",
            str(tmp_path / "m"),
            "--lr-drops",
            "1",
            "--lr-drop-factor",
            "1.5",
        ]
    )
    assert rc == 2 and "lr_drop_factor in (0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_python_dash_m_encoders():
    res = subprocess.run(
        [sys.executable, "-m", "encoders", "train", "--help"], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0
    for flag in ("--events", "--sasrec", "--ratings", "--text-model", "--loss", "--patience"):
        assert flag in res.stdout


def test_streamrec_forwards_training_commands_after_the_verbose_flag(capsys):
    import pytest

    from streams.tools.cli import main as streamrec

    for argv in (["train", "--help"], ["-v", "train", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            streamrec(argv)
        assert exit_info.value.code == 0
        usage = capsys.readouterr().out
        assert "--precision" in usage and "--sasrec" in usage


def test_bf16_training_records_its_precision_and_matches_fp32(sim_dir, tmp_path, capsys):
    scores = {}
    for precision in ("fp32", "bf16"):
        root = tmp_path / precision
        argv = [
            "train",
            "--events",
            str(sim_dir / "events.jsonl"),
            "--out",
            str(root),
            "--precision",
            precision,
            "--seed",
            "3",
            "--no-blend",  # the model's own scores: a co-occurrence blend can hide the precision's difference
            *TINY,
        ]
        assert main(argv) == 0
        version = Path(capsys.readouterr().out.strip().splitlines()[-1])
        manifest = json.loads((version / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["config"]["precision"] == precision
        assert manifest["blend"] is None and "sasrec_alone" not in manifest["metrics"]
        scores[precision] = manifest["metrics"]["sasrec"]["ndcg@10"]
    assert scores["bf16"] != scores["fp32"]  # bf16 matmuls really ran
    assert abs(scores["bf16"] - scores["fp32"]) < 0.05, scores
