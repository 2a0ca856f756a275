"""Annotated pictures of detections: masks in class colours, their outlines, boxes, labels and scores.

NumPy and OpenCV only.
"""

from __future__ import annotations

import numpy as np

MASK_OPACITY = 0.5
# Distinct, saturated colours (RGB); class i gets PALETTE[i % len(PALETTE)].
PALETTE = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
    (170, 110, 40), (128, 0, 0), (170, 255, 195), (128, 128, 0), (0, 0, 128), (128, 128, 128),
)


def class_colour(label: int) -> tuple[int, int, int]:
    return PALETTE[int(label) % len(PALETTE)]


def draw_instances(image: np.ndarray, instances: dict, class_names) -> np.ndarray:
    """A copy of RGB uint8 image [h, w, 3] with each instance drawn; instances as the runtime returns them.

    Lower-scored instances are drawn first, so the best ones stay on top where they overlap.
    """
    import cv2

    canvas = image.copy()
    order = np.argsort(instances["scores"], kind="stable")
    for index in order:
        colour = np.array(class_colour(instances["labels"][index]), np.float32)
        mask = instances["masks"][index]
        canvas[mask] = (canvas[mask] * (1 - MASK_OPACITY) + colour * MASK_OPACITY).astype(np.uint8)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(canvas, contours, -1, colour.tolist(), 1)
    thickness = max(1, round(min(image.shape[:2]) / 300))
    font_scale = max(0.35, min(image.shape[:2]) / 800)
    for index in order:
        label = int(instances["labels"][index])
        colour = class_colour(label)
        x1, y1, x2, y2 = (int(round(v)) for v in instances["boxes"][index])
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        name = class_names[label] if 0 <= label < len(class_names) else str(label)
        text = f"{name} {instances['scores'][index]:.2f}"
        (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        top = max(y1 - height - baseline, 0)
        cv2.rectangle(canvas, (x1, top), (x1 + width, top + height + baseline), colour, cv2.FILLED)
        cv2.putText(canvas, text, (x1, top + height), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return canvas
