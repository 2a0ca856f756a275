"""The models shipped in python/segtrt/weights: they load safely, they detect, and the README's
accuracy table is their committed `segtrt eval --json` measurement, digit for digit."""

import json
from pathlib import Path

import numpy as np
import pytest

from segtrt.demo import VALIDATION_SEED, shipped_checkpoints

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = shipped_checkpoints()
MAX_SHIPPED_MB = 10


def readme_row(name: str) -> list[str]:
    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith(f"| `{name}` |")]
    assert len(rows) == 1, f"README.md needs exactly one accuracy row for {name}"
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_three_models_are_shipped():
    assert {path.stem.split("_")[0] for path in SHIPPED.values()} == {"maskrcnn", "solov2", "solo"}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_readme_table_is_the_committed_measurement(name):
    metrics = json.loads(SHIPPED[name].with_suffix(".metrics.json").read_text())
    measured = [metrics["segm"][key] for key in ("AP", "AP50", "AP75", "APs", "APm", "APl")]
    measured += [metrics["bbox"]["AP"], metrics["boundary_f"]]
    assert readme_row(name)[1:] == [f"{value:.3f}" for value in measured]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_is_small_and_finds_objects(name, tmp_path):
    from segtrt.models.checkpoint import load_checkpoint, read_checkpoint
    from segtrt.data.coco import CocoDataset
    from segtrt.data.synth import write_dataset
    from segtrt.evaluation.coco import evaluate_backend
    from segtrt.runtime.backends import open_backend

    assert SHIPPED[name].stat().st_size < MAX_SHIPPED_MB * 2**20
    assert "train_state" not in read_checkpoint(SHIPPED[name])  # stripped for shipping
    _, meta = load_checkpoint(SHIPPED[name])  # weights_only: a shipped file cannot run code
    write_dataset(tmp_path, 4, seed=VALIDATION_SEED, progress=False)
    assert CocoDataset(tmp_path).class_names == list(meta["class_names"])
    metrics = evaluate_backend(open_backend(SHIPPED[name]), tmp_path, progress=False)
    assert metrics["segm"]["AP50"] > 0.2, metrics["segm"]
    assert np.isfinite(metrics["boundary_f"])
