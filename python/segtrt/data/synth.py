"""`segtrt synth`: a synthetic instance segmentation set in COCO format.

Five shape classes (circle, rectangle, triangle, star, ring) in saturated colours
and textures, on low-saturation textured backgrounds with line and dot clutter.
Object sizes cover COCO's small (< 32² px), medium and large (> 96² px) ranges, so
AP_S, AP_M and AP_L are all defined. Later shapes occlude earlier ones; each
annotation is the VISIBLE part of its shape, and shapes left mostly hidden are
dropped (their pixels stay in the image as clutter, as real occluded objects do).

Every image draws from its own generator seeded by (seed, image index), so a set
is byte-identical for a given seed and size whatever else changes.

Output: DIR/images/000000.png ... and DIR/annotations.json (compressed RLE masks).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from segtrt import SegtrtError

CLASS_NAMES = ("circle", "rectangle", "triangle", "star", "ring")

# Square root of a shape's nominal area, per COCO size band (pixels).
SIZE_BANDS = {"small": (7.0, 28.0), "medium": (36.0, 88.0), "large": (104.0, 150.0)}
SIZE_BAND_WEIGHTS = {"small": 0.45, "medium": 0.4, "large": 0.15}
MAX_OBJECTS = 8
MIN_VISIBLE_FRACTION = 0.35  # a shape with less of its area visible is dropped
MIN_VISIBLE_PIXELS = 12


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="output directory (created)")
    parser.add_argument("--num-images", type=int, default=500, help="number of images (default 500)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed gives the same set")
    parser.add_argument(
        "--size", type=int, nargs=2, default=(192, 192), metavar=("H", "W"), help="image size (default 192 192)"
    )


def main(args) -> int:
    write_dataset(args.out, args.num_images, args.seed, tuple(args.size))
    print(f"wrote {args.num_images} images and annotations.json to {args.out}")
    return 0


def write_dataset(out_dir, num_images: int, seed: int, size: tuple[int, int] = (192, 192), progress=True) -> Path:
    """Generate `num_images` images into out_dir/images and out_dir/annotations.json; returns the JSON path."""
    import cv2
    from pycocotools import mask as mask_utils
    from tqdm import tqdm

    from segtrt.files import atomic_write

    if num_images < 1:
        raise SegtrtError(f"--num-images must be at least 1, got {num_images}")
    if min(size) < 32:
        raise SegtrtError(f"--size {size[0]} {size[1]} is too small; use at least 32 32")
    out_dir = Path(out_dir)
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)

    images, annotations = [], []
    for index in tqdm(range(num_images), desc="synth", unit="img", disable=not progress):
        image, masks, labels = render_image(np.random.default_rng([seed, index]), size)
        file_name = f"{index:06d}.png"
        cv2.imwrite(str(image_dir / file_name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        images.append({"id": index + 1, "file_name": file_name, "height": size[0], "width": size[1]})
        for mask, label in zip(masks, labels):
            rle = mask_utils.encode(np.asfortranarray(mask))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": int(label) + 1,
                    "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                    "area": float(mask_utils.area(rle)),
                    "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                    "iscrowd": 0,
                }
            )
    dataset = {
        "info": {"description": "segtrt synthetic shapes", "seed": seed, "size": list(size)},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASS_NAMES)],
    }
    json_path = out_dir / "annotations.json"
    atomic_write(json_path, lambda file: file.write(json.dumps(dataset, indent=1).encode()))
    return json_path


DEMO_PAN_PX = 2  # how far the demo video's view moves per frame
DEMO_SCENE_FRAMES = 40  # frames per scene before the demo video cuts to a new one


def write_demo_video(path, num_frames: int = 120, size: tuple[int, int] = (192, 192), fps: float = 10.0,
                     seed: int = 0) -> Path:
    """A video of synthetic shapes for demos and `segtrt run` (no torch): the view pans across a scene
    DEMO_PAN_PX per frame and cuts to a new scene every DEMO_SCENE_FRAMES frames, so the shapes move as
    a camera would see them. MPEG-4 in an .mp4/.avi container, written to a temporary file and renamed
    into place (atomic). Returns the path."""
    import os

    import cv2

    if num_frames < 1:
        raise SegtrtError(f"a demo video needs at least 1 frame, got {num_frames}")
    if min(size) < 32:
        raise SegtrtError(f"demo video size {size[0]} {size[1]} is too small; use at least 32 32")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")
    height, width = size
    writer = cv2.VideoWriter(str(temporary), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise SegtrtError(f"cannot write video {path} (OpenCV writes .mp4 and .avi)")
    try:
        for scene_start in range(0, num_frames, DEMO_SCENE_FRAMES):
            count = min(DEMO_SCENE_FRAMES, num_frames - scene_start)
            scene, _, _ = render_image(np.random.default_rng([seed, scene_start]),
                                       (height, width + DEMO_PAN_PX * (count - 1)))
            for offset in range(count):
                view = scene[:, DEMO_PAN_PX * offset: DEMO_PAN_PX * offset + width]
                writer.write(np.ascontiguousarray(view[..., ::-1]))
        writer.release()
        os.replace(temporary, path)
    finally:
        writer.release()
        temporary.unlink(missing_ok=True)
    return path


def render_image(rng: np.random.Generator, size: tuple[int, int]):
    """One image: (RGB uint8 [H, W, 3], visible masks uint8 [n, H, W], labels int64 [n])."""
    height, width = size
    image = _background(rng, height, width)
    _draw_clutter(rng, image)

    owner = np.full((height, width), -1, np.int32)  # which shape each pixel shows
    drawn_areas, labels = [], []
    for shape_index in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        label = int(rng.integers(len(CLASS_NAMES)))
        mask = _shape_mask(rng, CLASS_NAMES[label], height, width)
        if not mask.any():
            continue
        texture = _object_texture(rng, height, width)
        image[mask] = texture[mask]
        owner[mask] = len(labels)
        drawn_areas.append(int(mask.sum()))
        labels.append(label)

    noise = rng.normal(0.0, rng.uniform(2.0, 7.0), image.shape)
    image = np.clip(image + noise, 0, 255).astype(np.uint8)

    masks, kept = [], []
    for index, area in enumerate(drawn_areas):
        visible = owner == index
        count = int(visible.sum())
        if count >= MIN_VISIBLE_PIXELS and count >= MIN_VISIBLE_FRACTION * area:
            masks.append(visible.astype(np.uint8))
            kept.append(labels[index])
    masks = np.stack(masks) if masks else np.zeros((0, height, width), np.uint8)
    return image, masks, np.array(kept, np.int64)


def _random_colour(rng, saturation: tuple[float, float], value: tuple[float, float]) -> np.ndarray:
    """An RGB colour (float [3], 0..255) from a random hue and the given HSV ranges."""
    hue = rng.uniform(0.0, 6.0)
    s, v = rng.uniform(*saturation), rng.uniform(*value)
    # HSV -> RGB by the standard piecewise formula on the hue sextant.
    c = v * s
    x = c * (1 - abs(hue % 2 - 1))
    sextant = int(hue)
    r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][sextant]
    return (np.array([r, g, b]) + (v - c)) * 255.0


def _ramp(rng, height: int, width: int) -> np.ndarray:
    """A [H, W] coordinate along a random direction, scaled to 0..1 over the image."""
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = xs * math.cos(angle) + ys * math.sin(angle)
    return (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)


def _blend(first: np.ndarray, second: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Per-pixel mix of two colours [3] with weights [H, W] in 0..1 -> [H, W, 3]."""
    return first * (1 - weight[..., None]) + second * weight[..., None]


def _pattern(rng, height: int, width: int, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Two colours laid out as a flat fill, a gradient or stripes -> float [H, W, 3]."""
    kind = rng.choice(["flat", "gradient", "stripes"], p=[0.4, 0.3, 0.3])
    if kind == "flat":
        return np.broadcast_to(first, (height, width, 3)).astype(np.float32)
    ramp = _ramp(rng, height, width)
    if kind == "gradient":
        return _blend(first, second, ramp)
    periods = rng.uniform(3, 14) * max(height, width) / 192
    return _blend(first, second, (np.sin(ramp * 2 * math.pi * periods) > 0).astype(np.float32))


def _background(rng, height: int, width: int) -> np.ndarray:
    """Low-saturation textured background, float [H, W, 3]."""
    first = _random_colour(rng, (0.0, 0.3), (0.2, 0.9))
    second = _random_colour(rng, (0.0, 0.3), (0.2, 0.9))
    image = _pattern(rng, height, width, first, second)
    if rng.random() < 0.5:  # coarse blotchy noise
        import cv2

        blotches = rng.normal(0, rng.uniform(8, 25), (max(height // 8, 1), max(width // 8, 1), 3))
        image = image + cv2.resize(blotches.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    return np.ascontiguousarray(image, dtype=np.float32)


def _draw_clutter(rng, image: np.ndarray) -> None:
    """Thin lines, curves and dots that belong to no class, drawn in place."""
    import cv2

    height, width = image.shape[:2]
    for _ in range(int(rng.integers(0, 8))):
        colour = tuple(float(c) for c in _random_colour(rng, (0.0, 0.6), (0.1, 1.0)))
        points = rng.uniform(0, [width, height], (int(rng.integers(2, 5)), 2)).astype(np.int32)
        cv2.polylines(image, [points], False, colour, int(rng.integers(1, 3)))
    for _ in range(int(rng.integers(0, 10))):
        colour = tuple(float(c) for c in _random_colour(rng, (0.0, 0.6), (0.1, 1.0)))
        centre = (int(rng.integers(width)), int(rng.integers(height)))
        cv2.circle(image, centre, int(rng.integers(1, 3)), colour, -1)


def _object_texture(rng, height: int, width: int) -> np.ndarray:
    """Saturated fill for one object (flat, gradient or stripes), float [H, W, 3]."""
    first = _random_colour(rng, (0.55, 1.0), (0.45, 1.0))
    second = np.clip(first + rng.uniform(-70, 70, 3), 0, 255)
    return _pattern(rng, height, width, first, second)


def _size_of(rng, height: int, width: int) -> float:
    """Square root of a nominal shape area, from a random COCO size band, capped to fit the image."""
    bands = list(SIZE_BANDS)
    band = bands[rng.choice(len(bands), p=[SIZE_BAND_WEIGHTS[b] for b in bands])]
    low, high = SIZE_BANDS[band]
    return min(math.exp(rng.uniform(math.log(low), math.log(high))), 0.75 * min(height, width))


def _shape_mask(rng, name: str, height: int, width: int) -> np.ndarray:
    """A filled shape of the named class as a bool mask [H, W]; roughly `_size_of` squared in area."""
    import cv2

    side = _size_of(rng, height, width)
    angle = rng.uniform(0, 2 * math.pi)
    if name == "circle":
        radius = side / math.sqrt(math.pi)
    elif name == "rectangle":
        aspect = rng.uniform(0.45, 2.2)
        half_w, half_h = side * math.sqrt(aspect) / 2, side / math.sqrt(aspect) / 2
        radius = math.hypot(half_w, half_h)
    elif name == "triangle":
        radius = side / math.sqrt(1.299)  # equilateral: area = 1.299 R²
    elif name == "star":
        radius = side / math.sqrt(1.12)  # five points, inner radius 0.45 R: area ≈ 1.12 R²
    else:  # ring with inner radius 0.55 R
        radius = side / math.sqrt(0.7 * math.pi)
    # Keep most of each shape inside the image so border crops do not dominate.
    margin = min(0.6 * radius, height / 2, width / 2)
    cx, cy = rng.uniform(margin, width - margin), rng.uniform(margin, height - margin)

    canvas = np.zeros((height, width), np.uint8)
    if name in ("circle", "ring"):
        cv2.circle(canvas, (round(cx), round(cy)), max(1, round(radius)), 1, -1)
        if name == "ring":
            cv2.circle(canvas, (round(cx), round(cy)), max(1, round(0.55 * radius)), 0, -1)
        return canvas.astype(bool)
    if name == "rectangle":
        corners = np.array([[-half_w, -half_h], [half_w, -half_h], [half_w, half_h], [-half_w, half_h]])
        rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        points = corners @ rotation.T
    else:
        count = 3 if name == "triangle" else 10
        angles = angle + np.arange(count) * 2 * math.pi / count
        radii = np.full(count, radius) if name == "triangle" else np.where(np.arange(count) % 2, 0.45, 1.0) * radius
        points = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    points = np.round(points + [cx, cy]).astype(np.int32)
    cv2.fillPoly(canvas, [points], 1)
    return canvas.astype(bool)
