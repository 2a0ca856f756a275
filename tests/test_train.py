"""Training loop tests.

The exact-resume test uses a tiny stand-in model that follows the segtrt model
contract (loss / forward, kind, options), so it runs in a second; the
end-to-end test trains the real SOLO for one iteration and evaluates it via the CLI.
"""

import json
import os
import signal

import numpy as np
import pytest
import torch
from torch import nn

import segtrt.models
from segtrt import SegtrtError, cli
from segtrt.data.synth import write_dataset
from segtrt.training.train import batch_indices, learning_rate, train

RECIPE = {
    "model": "solo", "backbone": "edge", "model_options": {}, "batch_size": 2, "optimizer": "sgd", "lr": 0.05,
    "weight_decay": 1e-4, "warmup": 2, "schedule": "cosine", "clip_grad": 10.0, "input_size": [64, 64],
    "scale_jitter": [0.75, 1.25], "copy_paste": 0.5, "seed": 3,
}


class StandInModel(nn.Module):
    """Per-pixel foreground + class logits; BatchNorm (buffers) and dropout (torch RNG) make resume non-trivial."""

    kind = "solo"
    interrupt_at_call = None  # on this call of loss (1-based), stop the run ...
    interrupt = staticmethod(lambda: None)  # ... with this function

    def __init__(self, num_classes, backbone="edge", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), **options):
        super().__init__()
        self.num_classes, self.backbone_name, self.options = num_classes, backbone, dict(options)
        self.mean, self.std = tuple(mean), tuple(std)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.3),
                                  nn.Conv2d(8, 1 + num_classes, 1))

    def loss(self, images, targets):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == self.interrupt_at_call:
            self.interrupt()
        logits = self.body(images / 255)
        foreground = torch.stack([t["masks"].sum(0) for t in targets]).clamp(max=1).float()
        loss_mask = nn.functional.binary_cross_entropy_with_logits(logits[:, 0], foreground)
        counts = torch.stack([torch.bincount(t["labels"], minlength=self.num_classes) for t in targets]).float()
        loss_cls = ((logits[:, 1:].mean((2, 3)) - counts) ** 2).mean()
        return {"loss_mask": loss_mask, "loss_cls": loss_cls}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_data")
    write_dataset(root, 5, seed=1, size=(64, 64), progress=False)
    return root


def test_learning_rate_schedule():
    recipe = dict(RECIPE, lr=0.1, warmup=10)
    assert learning_rate(0, recipe, 100) == pytest.approx(1e-4)
    assert learning_rate(5, recipe, 100) == pytest.approx(0.1 * (0.001 + 0.999 * 0.5))
    assert learning_rate(10, recipe, 100) == pytest.approx(0.1)
    assert learning_rate(55, recipe, 100) == pytest.approx(0.05)
    assert learning_rate(100, recipe, 100) == pytest.approx(0.0)
    step = dict(recipe, schedule="step")
    assert [learning_rate(i, step, 100) for i in (50, 80, 95)] == pytest.approx([0.1, 0.01, 0.001])


def test_batches_walk_through_every_image_once_per_epoch():
    seen = sum((batch_indices(i, 3, 7, seed=5) for i in range(7)), [])  # 21 positions = 3 epochs of 7
    for epoch in range(3):
        assert sorted(seen[epoch * 7 : (epoch + 1) * 7]) == list(range(7))
    assert seen[:7] != seen[7:14]
    assert batch_indices(4, 3, 7, seed=5) == seen[12:15]


def _ctrl_c():
    raise KeyboardInterrupt


def _sigterm():
    os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize("interrupt", [_ctrl_c, _sigterm], ids=["ctrl-c", "sigterm"])
def test_interrupted_run_saves_and_resumes_exactly(data, tmp_path, monkeypatch, interrupt):
    monkeypatch.setattr(segtrt.models, "model_class", lambda kind: StandInModel)
    straight = train(RECIPE, data, tmp_path / "straight.pt", 4, progress=False)

    monkeypatch.setattr(StandInModel, "interrupt_at_call", 3)  # during the third iteration
    monkeypatch.setattr(StandInModel, "interrupt", staticmethod(interrupt))
    with pytest.raises(KeyboardInterrupt):
        train(RECIPE, data, tmp_path / "resumed.pt", 4, progress=False)
    assert torch.load(tmp_path / "resumed.pt", weights_only=True)["train_state"]["iteration"] == 2
    monkeypatch.setattr(StandInModel, "interrupt_at_call", None)
    # Recipe and length come from the checkpoint: a different recipe passed here must not matter.
    resumed = train(dict(RECIPE, lr=9.0), data, tmp_path / "resumed.pt", resume=True, progress=False)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    shortened = train(RECIPE, data, tmp_path / "other.pt", 3, progress=False)
    assert not torch.equal(shortened.state_dict()["body.0.weight"], straight.state_dict()["body.0.weight"])

    checkpoint = torch.load(tmp_path / "resumed.pt", weights_only=True)
    assert checkpoint["train_state"]["iteration"] == 4 and checkpoint["class_names"][0] == "circle"
    with pytest.raises(SegtrtError, match="holds a solo model, not maskrcnn"):
        train(dict(RECIPE, model="maskrcnn"), data, tmp_path / "resumed.pt", resume=True, progress=False)


def test_bad_training_inputs(data, tmp_path):
    with pytest.raises(SegtrtError, match="does not exist"):
        train(RECIPE, data, tmp_path / "none.pt", 2, resume=True, progress=False)
    with pytest.raises(SegtrtError, match="scale-jitter"):
        train(dict(RECIPE, scale_jitter=[1.5, 1.0]), data, tmp_path / "x.pt", 2, progress=False)
    assert cli.main(["train", "--model", "solo", "--data", str(data), "--out", str(tmp_path / "y.pt"),
                     "--model-options", "{oops"]) == 2


def test_train_then_eval_real_solo_through_the_cli(data, tmp_path):
    checkpoint = tmp_path / "solo.pt"
    assert cli.main(["train", "--model", "solo", "--data", str(data), "--out", str(checkpoint), "--iterations", "1",
                     "--batch-size", "1", "--input-size", "64", "64", "--warmup", "1"]) == 0
    out = tmp_path / "metrics.json"
    assert cli.main(["eval", "--checkpoint", str(checkpoint), "--data", str(data), "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert set(metrics["segm"]) == set(metrics["bbox"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert all(-1 <= value <= 1 for value in list(metrics["segm"].values()) + list(metrics["bbox"].values()))
    assert np.isfinite(metrics["boundary_f"])


def test_init_from_copies_the_weights_that_fit(tmp_path):
    from segtrt.models.checkpoint import save_checkpoint
    from segtrt.models import build_model
    from segtrt.runtime.preprocess import Preprocess
    from segtrt.training.train import initialise_from

    torch.manual_seed(0)
    donor = build_model("solov2", 2, "edge")
    save_checkpoint(tmp_path / "solov2.pt", donor, ["a", "b"], Preprocess(input_size=(64, 64)), half=True)
    torch.manual_seed(1)
    model = build_model("solo", 2, "edge")
    fresh = {name: tensor.clone() for name, tensor in model.state_dict().items()}

    copied, total = initialise_from(model, tmp_path / "solov2.pt")

    state, donor_state = model.state_dict(), donor.state_dict()
    assert 0 < copied < total
    for name, tensor in state.items():
        fits = name in donor_state and donor_state[name].shape == tensor.shape
        expected = fresh[name]
        if fits:  # the donor was saved in float16
            expected = donor_state[name].half().float() if tensor.is_floating_point() else donor_state[name]
        torch.testing.assert_close(tensor, expected, rtol=0, atol=0, msg=name)
    assert any(name.startswith("backbone") for name in donor_state)  # the backbone is among the copied
    with pytest.raises(SegtrtError, match="does not exist"):
        initialise_from(model, tmp_path / "missing.pt")
