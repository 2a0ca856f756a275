"""Where images come from: one decoder for every file a stage reads, and `--source` as users give it.

A source is an image file, a folder (its images, sorted by name, not recursive) or
a glob pattern (`photos/*.jpg`, `**` allowed). Images are RGB uint8 [h, w, 3].
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Iterator

import numpy as np

from segtrt import SegtrtError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_image(path) -> np.ndarray:
    """RGB uint8 [h, w, 3] of an image file; SegtrtError if it is missing, corrupt or not an image."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise SegtrtError(f"image {path} does not exist")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SegtrtError(f"cannot decode image {path}; the file is corrupt or not an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode_image(data: bytes, name: str = "the image") -> np.ndarray:
    """RGB uint8 [h, w, 3] of an encoded image (a file's bytes: PNG, JPEG, ...), decoded as read_image decodes
    files; SegtrtError naming `name` if the bytes are not an image."""
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise SegtrtError(f"cannot decode {name} ({len(data)} bytes); it is corrupt or not an image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_files(source) -> list[Path]:
    """The image files of a source (file, folder or glob), sorted; SegtrtError when it names none."""
    text = str(source)
    path = Path(text)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        where = f"folder {path}"
    elif glob.has_magic(text):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        where = f"pattern {text!r}"
    else:
        raise SegtrtError(f"source {text} does not exist; give an image, a folder of images or a glob pattern")
    if not files:
        raise SegtrtError(f"{where} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def file_images(files) -> Iterator[tuple[Path, np.ndarray]]:
    """(path, RGB image) for each file, decoded one at a time as the loop asks for them."""
    for path in files:
        yield path, read_image(path)
