"""The calibration images: a seeded sample of an image folder or a COCO set, pre-processed as the model says.

    images = CalibrationImages.sample("data/calib", count=64, seed=0)
    for batch in images.model_inputs(info.preprocess):   # [1, 3, H, W] float32, letterboxed from the metadata
        ...

Pre-processing is always segtrt.runtime.preprocess.to_model_input with the ONNX file's own Preprocess, never
re-typed here. No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from segtrt import SegtrtError
from segtrt.runtime.preprocess import Preprocess, to_model_input


@dataclass(frozen=True)
class CalibrationImages:
    """The chosen image files: a sample of `count` files drawn with `seed`, in the source's order."""

    source: Path
    files: tuple[Path, ...]
    seed: int

    @classmethod
    def sample(cls, source, count: int, seed: int = 0) -> "CalibrationImages":
        """`count` images of a folder, a COCO set (folder with annotations.json + images/, or its JSON file) or
        a glob pattern, drawn reproducibly with `seed`; SegtrtError if it holds fewer than `count`."""
        if count < 1:
            raise SegtrtError(f"--count must be at least 1, got {count}")
        files = _all_images(source)
        if len(files) < count:
            raise SegtrtError(f"calibration set {source} holds {len(files)} image(s), fewer than --count {count}: "
                              "give a larger set or a smaller --count")
        from segtrt.runtime.sources import read_image

        order = np.random.default_rng(seed).permutation(len(files))
        chosen = tuple(files[i] for i in sorted(order[:count]))
        for path in chosen:  # an unreadable image fails now, not minutes into calibration
            read_image(path)
        return cls(Path(source), chosen, seed)

    def __len__(self) -> int:
        return len(self.files)

    def model_inputs(self, preprocess: Preprocess, progress: str | None = None) -> Iterator[np.ndarray]:
        """Each image as the model input [1, 3, H, W] float32; SegtrtError naming an unreadable file."""
        from tqdm import tqdm

        from segtrt.runtime.sources import read_image

        for path in tqdm(self.files, desc=progress, unit="image", disable=progress is None):
            batch, _ = to_model_input([read_image(path)], preprocess)
            yield batch


def _all_images(source) -> list[Path]:
    """Every image of the source, in a stable order: a COCO set's listed images, else a folder's or pattern's."""
    from segtrt.runtime.sources import image_files

    path = Path(source)
    if (path.is_dir() and (path / "annotations.json").is_file()) or (path.suffix == ".json" and path.is_file()):
        from segtrt.data.coco import CocoDataset

        dataset = CocoDataset(path)
        return [dataset.image_dir / dataset.images[i]["file_name"] for i in dataset.image_ids]
    return image_files(path)
