"""`segtrt train`: train Mask R-CNN, SOLOv2 or SOLO on a COCO-format set.

The recipe: flip, scale jitter + letterbox and copy-paste (segtrt.data.augment);
SGD with momentum (or AdamW), linear warm-up then a cosine or step schedule,
gradient-norm clipping. Checkpoints are written atomically every
`--checkpoint-every` iterations, at the end, when `--minutes` runs out and on
Ctrl-C.

Resuming is exact: every iteration draws its batch, its augmentations and the
torch random state from generators seeded by (seed, iteration), and the
learning rate is a function of the iteration, so the only state to restore is
the weights, the optimizer and the iteration number.
"""

from __future__ import annotations

import json
import math
import time
from functools import lru_cache

import numpy as np

from segtrt import SegtrtError
from segtrt.models import BACKBONES, MODELS

DEFAULT_LR = {"sgd": 0.01, "adamw": 3e-4}
# SOLO-family heads collapse (every mask to 0) under SGD at 1e-2 from scratch; AdamW with
# mmdetection's gradient clip trains them. Mask R-CNN trains with plain SGD.
MODEL_DEFAULTS = {
    "maskrcnn": {"optimizer": "sgd", "clip_grad": 10.0},
    "solov2": {"optimizer": "adamw", "clip_grad": 35.0},
    "solo": {"optimizer": "adamw", "clip_grad": 35.0},
}
DEFAULT_WEIGHT_DECAY = {"sgd": 1e-4, "adamw": 0.05}
DEFAULT_ITERATIONS = 1000
STEP_MILESTONES = (0.75, 0.92)  # fractions of training where the step schedule divides the rate by 10


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, choices=list(MODELS), help="model kind")
    parser.add_argument("--data", required=True, help="dataset folder (annotations.json + images/) or COCO JSON")
    parser.add_argument("--images", help="image folder (default DATA/images, or images/ beside a JSON file)")
    parser.add_argument("--out", required=True, help="checkpoint to write (.pt)")
    parser.add_argument("--backbone", default="edge", choices=BACKBONES, help="backbone (default edge)")
    parser.add_argument("--model-options", default="{}", metavar="JSON",
                        help='model options as a JSON object, e.g. \'{"fpn_channels": 64}\'')
    parser.add_argument("--iterations", type=int,
                        help=f"total training iterations (default {DEFAULT_ITERATIONS}, or the resumed run's)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per iteration (default 8)")
    parser.add_argument("--optimizer", choices=["sgd", "adamw"],
                        help="optimizer (default sgd with momentum 0.9 for maskrcnn, adamw for solo/solov2)")
    parser.add_argument("--lr", type=float, help="peak learning rate (default 0.01 for sgd, 3e-4 for adamw)")
    parser.add_argument("--weight-decay", type=float, help="weight decay (default 1e-4 for sgd, 0.05 for adamw)")
    parser.add_argument("--warmup", type=int, default=100, help="linear warm-up iterations (default 100)")
    parser.add_argument("--schedule", default="cosine", choices=["cosine", "step"], help="decay after warm-up")
    parser.add_argument("--clip-grad", type=float,
                        help="gradient-norm clip, 0 for none (default 10 for maskrcnn, 35 for solo/solov2)")
    parser.add_argument("--input-size", type=int, nargs=2, default=(192, 192), metavar=("H", "W"),
                        help="model input size, multiples of 32 (default 192 192)")
    parser.add_argument("--scale-jitter", type=float, nargs=2, default=(0.75, 1.25), metavar=("LOW", "HIGH"),
                        help="range of the random scale around the letterbox size (default 0.75 1.25)")
    parser.add_argument("--copy-paste", type=float, default=0.5, metavar="P",
                        help="copy-paste probability (default 0.5)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--init-from", metavar="CKPT",
                        help="start from another segtrt checkpoint's weights wherever names and shapes agree "
                             "(e.g. a trained SOLOv2's backbone, FPN and category branch for a SOLO)")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint at --out with its recipe")
    parser.add_argument("--checkpoint-every", type=int, default=100,
                        help="iterations between checkpoints (default 100)")
    parser.add_argument("--minutes", type=float, help="stop (and save) after this many minutes")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")


def main(args) -> int:
    defaults = MODEL_DEFAULTS[args.model]
    args.optimizer = args.optimizer or defaults["optimizer"]
    args.clip_grad = defaults["clip_grad"] if args.clip_grad is None else args.clip_grad
    recipe = {
        "model": args.model,
        "backbone": args.backbone,
        "model_options": _parse_json_options(args.model_options),
        "batch_size": args.batch_size,
        "optimizer": args.optimizer,
        "lr": args.lr if args.lr is not None else DEFAULT_LR[args.optimizer],
        "weight_decay": args.weight_decay if args.weight_decay is not None else DEFAULT_WEIGHT_DECAY[args.optimizer],
        "warmup": args.warmup,
        "schedule": args.schedule,
        "clip_grad": args.clip_grad,
        "input_size": list(args.input_size),
        "scale_jitter": list(args.scale_jitter),
        "copy_paste": args.copy_paste,
        "seed": args.seed,
        "init_from": args.init_from,
    }
    train(recipe, args.data, args.out, args.iterations, images=args.images, resume=args.resume,
          checkpoint_every=args.checkpoint_every, minutes=args.minutes, threads=args.threads)
    print(f"saved {args.out}; evaluate it with: segtrt eval --checkpoint {args.out} --data DIR")
    return 0


def learning_rate(iteration: int, recipe: dict, total: int) -> float:
    """Learning rate of an iteration: linear warm-up from 0.1% of the peak, then cosine or step decay."""
    peak, warmup = recipe["lr"], recipe["warmup"]
    if iteration < warmup:
        return peak * (0.001 + 0.999 * iteration / warmup)
    progress = (iteration - warmup) / max(1, total - warmup)
    if recipe["schedule"] == "cosine":
        return peak * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return peak * 0.1 ** sum(iteration >= fraction * total for fraction in STEP_MILESTONES)


def batch_indices(iteration: int, batch_size: int, size: int, seed: int) -> list[int]:
    """Dataset indices of an iteration's batch: epochs walk through seeded permutations."""
    indices = []
    for position in range(iteration * batch_size, (iteration + 1) * batch_size):
        epoch, offset = divmod(position, size)
        indices.append(int(_epoch_order(seed, epoch, size)[offset]))
    return indices


@lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, size: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, size]).permutation(size)


def train(recipe: dict, data, out, iterations: int | None = None, images=None, resume=False, checkpoint_every=100,
          minutes=None, threads=2, progress=True):
    """Train per `recipe` (see `main`) up to `iterations`; returns the model (in train mode).

    With `resume`, recipe and (unless given) iterations come from the checkpoint at `out`,
    since the schedule depends on both.
    """
    import torch
    from tqdm import tqdm

    from segtrt.models.checkpoint import read_checkpoint, save_checkpoint
    from segtrt.data.augment import TrainAugment
    from segtrt.data.coco import CocoDataset
    from segtrt.models import build_model
    from segtrt.runtime.preprocess import Preprocess

    torch.set_num_threads(max(1, threads))
    start_time = time.monotonic()
    dataset = CocoDataset(data, images, skip_empty=True)
    state = None
    if resume:
        checkpoint = read_checkpoint(out)
        state = checkpoint.get("train_state")
        if state is None:
            raise SegtrtError(f"{out} has no training state to resume from (it was saved for shipping)")
        if state["recipe"]["model"] != recipe["model"]:
            raise SegtrtError(f"{out} holds a {state['recipe']['model']} model, not {recipe['model']}; check --model")
        recipe = state["recipe"]
        iterations = iterations if iterations is not None else state["iterations"]
        if checkpoint["class_names"] != dataset.class_names:
            raise SegtrtError(
                f"{out} was trained on classes {checkpoint['class_names']}, the data has {dataset.class_names}"
            )
    iterations = iterations if iterations is not None else DEFAULT_ITERATIONS
    _check_recipe(recipe, iterations)

    preprocess = Preprocess(input_size=tuple(recipe["input_size"]))
    torch.manual_seed(recipe["seed"])  # the initial weights, so a seed reproduces a whole run
    model = build_model(recipe["model"], len(dataset.class_names), recipe["backbone"], preprocess,
                        **recipe["model_options"])
    optimizer = _optimizer(model, recipe)
    start = 0
    if state is not None:
        model.load_state_dict(checkpoint["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        start = state["iteration"]
    elif recipe.get("init_from"):
        copied, total = initialise_from(model, recipe["init_from"])
        print(f"initialised {copied} of {total} weights ({copied / total:.0%}) from {recipe['init_from']}")
    model.train()
    augment = TrainAugment(preprocess.input_size, tuple(recipe["scale_jitter"]),
                           copy_paste_probability=recipe["copy_paste"])

    def save(iteration):
        train_state = {"iteration": iteration, "iterations": iterations, "optimizer": optimizer.state_dict(),
                       "recipe": recipe}
        save_checkpoint(out, model, dataset.class_names, preprocess, train_state=train_state)

    recent = {}
    iteration = start
    previous_sigterm = _sigterm_as_interrupt()
    bar = tqdm(total=iterations, initial=start, desc=f"train {recipe['model']}", unit="it", disable=not progress)
    try:
        while iteration < iterations:
            if minutes is not None and time.monotonic() - start_time > minutes * 60:
                bar.write(f"time budget of {minutes} min reached at iteration {iteration}; continue with --resume")
                break
            losses = _step(model, optimizer, dataset, augment, recipe, iteration, iterations)
            iteration += 1
            for name, value in losses.items():  # running means over ~20 iterations for a readable bar
                recent[name] = value if name not in recent else 0.95 * recent[name] + 0.05 * value
            bar.set_postfix({name: f"{value:.3f}" for name, value in recent.items()}, refresh=False)
            bar.update()
            if iteration % checkpoint_every == 0:
                save(iteration)
    except KeyboardInterrupt:
        save(iteration)
        bar.write(f"interrupted: saved iteration {iteration} to {out}")
        raise
    finally:
        bar.close()
        _restore_sigterm(previous_sigterm)
    save(iteration)
    return model


def initialise_from(model, path) -> tuple[int, int]:
    """Copy the tensors of checkpoint `path` whose names and shapes match `model`'s.

    Returns (values copied, values in the model).
    """
    from segtrt.models.checkpoint import read_checkpoint

    own = model.state_dict()
    fitting = {
        name: tensor.to(own[name].dtype)
        for name, tensor in read_checkpoint(path)["state_dict"].items()
        if name in own and own[name].shape == tensor.shape
    }
    if not fitting:
        raise SegtrtError(f"no weights of {path} fit a {model.kind} model (every name or shape differs)")
    model.load_state_dict(fitting, strict=False)
    return sum(t.numel() for t in fitting.values()), sum(t.numel() for t in own.values())


def _step(model, optimizer, dataset, augment, recipe, iteration: int, total: int) -> dict:
    """One optimisation step; returns the loss values as floats."""
    import torch

    rng = np.random.default_rng([recipe["seed"], iteration])
    torch.manual_seed(int(rng.integers(2**62)))
    samples = [augment.sample(dataset, index, rng)
               for index in batch_indices(iteration, recipe["batch_size"], len(dataset), recipe["seed"])]
    images = torch.from_numpy(np.stack([image for image, _ in samples])).permute(0, 3, 1, 2).float()
    targets = [{key: torch.from_numpy(target[key]) for key in ("boxes", "labels", "masks")} for _, target in samples]

    losses = model.loss(images, targets)
    total_loss = sum(losses.values())
    if not torch.isfinite(total_loss):
        raise SegtrtError(
            f"the loss became {float(total_loss)} at iteration {iteration}; lower --lr or raise --warmup"
        )
    for group in optimizer.param_groups:
        group["lr"] = learning_rate(iteration, recipe, total)
    optimizer.zero_grad(set_to_none=True)
    total_loss.backward()
    if recipe["clip_grad"] > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe["clip_grad"])
    optimizer.step()
    return {name: value.item() for name, value in losses.items()} | {"loss": total_loss.item()}


def _sigterm_as_interrupt():
    """Treat SIGTERM (a job scheduler stopping the run) like Ctrl-C, so the run is saved first.

    Returns the previous handler, or None where handlers cannot be set (not the main thread).
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def _restore_sigterm(previous) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _optimizer(model, recipe: dict):
    """SGD (momentum 0.9) or AdamW; no weight decay on norm weights and biases."""
    import torch

    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    groups = [{"params": decay, "weight_decay": recipe["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    if recipe["optimizer"] == "adamw":
        return torch.optim.AdamW(groups, lr=recipe["lr"])
    return torch.optim.SGD(groups, lr=recipe["lr"], momentum=0.9)


def _check_recipe(recipe: dict, iterations: int) -> None:
    if iterations < 1 or recipe["batch_size"] < 1:
        raise SegtrtError("--iterations and --batch-size must be at least 1")
    if recipe["lr"] <= 0:
        raise SegtrtError(f"--lr must be positive, got {recipe['lr']}")
    low, high = recipe["scale_jitter"]
    if not 0 < low <= high:
        raise SegtrtError(f"--scale-jitter needs 0 < LOW <= HIGH, got {low} {high}")


def _parse_json_options(text: str) -> dict:
    try:
        options = json.loads(text)
    except json.JSONDecodeError as error:
        raise SegtrtError(f"--model-options is not valid JSON ({error})") from None
    if not isinstance(options, dict):
        raise SegtrtError("--model-options must be a JSON object such as '{\"fpn_channels\": 64}'")
    return options
