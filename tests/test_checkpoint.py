import pytest
import torch

from segtrt import SegtrtError
from segtrt.models.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint, strip_checkpoint
from segtrt.models import build_model
from segtrt.runtime.preprocess import Preprocess

CLASSES = ["circle", "square", "star"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("solov2", len(CLASSES)).eval()


def test_round_trip_keeps_weights_classes_and_preprocess(tmp_path, model):
    path = tmp_path / "m.pt"
    preprocess = Preprocess(input_size=(128, 192))
    save_checkpoint(path, model, CLASSES, preprocess)
    loaded, meta = load_checkpoint(path, expected_kind="solov2")
    assert meta["class_names"] == CLASSES and meta["preprocess"] == preprocess
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert not list(tmp_path.glob(".*.tmp")), "no temp file is left behind"


def test_half_precision_checkpoint_is_smaller_and_loads_as_float32(tmp_path, model):
    full, half = tmp_path / "full.pt", tmp_path / "half.pt"
    save_checkpoint(full, model, CLASSES, Preprocess())
    save_checkpoint(half, model, CLASSES, Preprocess(), half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, _ = load_checkpoint(half)
    weight = next(p for p in loaded.parameters() if p.ndim == 4)
    assert weight.dtype == torch.float32


@pytest.mark.parametrize("content, message", [
    (b"not a checkpoint at all", "cannot read checkpoint"),
    (None, "is not a segtrt checkpoint"),
])
def test_unreadable_or_foreign_files_are_refused(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    if content is None:
        torch.save({"state_dict": {}}, path)  # e.g. a plain torchvision or mmdetection file
    else:
        path.write_bytes(content)
    with pytest.raises(SegtrtError, match=message):
        load_checkpoint(path)


def test_missing_file_and_wrong_model_kind_are_refused(tmp_path, model):
    with pytest.raises(SegtrtError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, CLASSES, Preprocess())
    with pytest.raises(SegtrtError, match="holds a solov2 model, not maskrcnn"):
        load_checkpoint(path, expected_kind="maskrcnn")


def test_weights_that_do_not_fit_the_recorded_model_are_refused(tmp_path, model):
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, CLASSES, Preprocess())
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["num_classes"] = 5  # the category head no longer matches the weights
    torch.save(checkpoint, path)
    with pytest.raises(SegtrtError, match="does not match a solov2 model"):
        load_checkpoint(path)


def test_strip_drops_training_state_and_keeps_the_model(tmp_path, model):
    trained, shipped = tmp_path / "trained.pt", tmp_path / "shipped.pt"
    save_checkpoint(trained, model, CLASSES, Preprocess(), train_state={"iteration": 7})
    strip_checkpoint(trained, shipped)
    assert "train_state" not in read_checkpoint(shipped)
    assert shipped.stat().st_mode & 0o044, "shipped files are readable by others, unlike mkstemp's default"
    loaded, meta = load_checkpoint(shipped)
    assert meta["class_names"] == CLASSES
    for key, value in model.state_dict().items():
        if value.is_floating_point():  # float16 storage: relative error <= 2^-11, plus subnormal flush
            torch.testing.assert_close(loaded.state_dict()[key], value, rtol=2**-10, atol=1e-7, msg=key)


@pytest.mark.parametrize("kind", ["maskrcnn", "solov2"])
def test_the_preprocessing_is_the_one_source_of_mean_and_std(tmp_path, kind):
    """A model normalises with its pre-processing's numbers, and nothing can record other numbers for it."""
    preprocess = Preprocess(input_size=(64, 64), mean=(10.0, 20.0, 30.0), std=(2.0, 3.0, 4.0))
    model = build_model(kind, len(CLASSES), preprocess=preprocess).eval()
    seen = []
    model.backbone.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    with torch.no_grad():
        model(torch.full((1, 3, 64, 64), 40.0))
    expected = [(40.0 - m) / s for m, s in zip(preprocess.mean, preprocess.std)]  # what the backbone must see
    assert torch.allclose(seen[0][0, :, 0, 0], torch.tensor(expected))
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, CLASSES, preprocess)
    loaded, meta = load_checkpoint(path)
    assert (loaded.mean, loaded.std) == (preprocess.mean, preprocess.std) == (meta["preprocess"].mean, meta["preprocess"].std)
    with pytest.raises(SegtrtError, match="normalises with"):
        save_checkpoint(tmp_path / "other.pt", model, CLASSES, Preprocess(input_size=(64, 64)))  # ImageNet's numbers
    assert not (tmp_path / "other.pt").exists()


@pytest.mark.parametrize("kind", ["maskrcnn", "solov2"])
def test_a_model_whose_preprocessing_normalises_takes_its_input_as_it_is(tmp_path, kind):
    """normalise "before_resize" (torchvision's order): to_model_input normalises, so the model must not, and its
    checkpoint rebuilds it that way."""
    preprocess = Preprocess(resize="min_max", scale=(64, 64), input_size=(64, 64), normalise="before_resize")
    model = build_model(kind, len(CLASSES), preprocess=preprocess).eval()
    seen = []
    model.backbone.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    images = torch.full((1, 3, 64, 64), -1.5)
    with torch.no_grad():
        model(images)
    assert torch.equal(seen[0], images)
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, CLASSES, preprocess)
    loaded, meta = load_checkpoint(path)
    assert (loaded.mean, loaded.std) == (None, None) and meta["preprocess"].normalise == "before_resize"
    with pytest.raises(SegtrtError, match="the model takes normalised input, the pre-processing says it normalises"):
        save_checkpoint(tmp_path / "other.pt", model, CLASSES, Preprocess(input_size=(64, 64)))
