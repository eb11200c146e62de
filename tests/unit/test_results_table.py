"""docs/results/ml1m.json holds the ML-1M runs of docs/model.md's table: every run is in the table, and back."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEYS = {"seed", "command", "machine", "wall_s", "val_ndcg10", "test_ndcg10", "test_recall10"}


def _table_rows() -> list[str]:
    text = (ROOT / "docs/model.md").read_text(encoding="utf-8")
    section = text.split("### MovieLens-1M (SASRec's `ml-1m.txt`")[1].split("\n### ")[0]
    return [line for line in section.splitlines() if line.startswith("| ") and "SASRec+CE (ours)" in line]


def test_every_ml1m_run_is_a_row_of_the_docs_table_with_the_same_numbers():
    runs = json.loads((ROOT / "docs/results/ml1m.json").read_text(encoding="utf-8"))
    rows = _table_rows()
    assert len(runs) == len(rows) >= 2
    for run in runs:
        assert set(run) >= KEYS, KEYS - set(run)
        numbers = (f"{run['test_ndcg10']:.4f}", f"{run['test_recall10']:.4f}", f"{run['val_ndcg10']}")
        matches = [row for row in rows if all(n in row for n in numbers)]
        assert len(matches) == 1, (run, numbers)
        cells = [c.strip(" *") for c in matches[0].split("|")]
        assert f"{run['wall_s']:,}" in " ".join(cells), (run["wall_s"], matches[0])
        dim = re.search(r"\| (\d+) \|", matches[0])
        assert dim is not None and f"--dim {dim[1]} " in run["command"]
