"""COCO's 80 object classes, the one copy in segtrt, for models trained on COCO.

mmdetection numbers them 0..79 in this order; torchvision's COCO models number
COCO's category ids (1..90, with ten unused ids) and count the background as 0,
so their 90 foreground labels are `torchvision_coco_names()`.
"""

from __future__ import annotations

COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)
# COCO's category id of each class above (instances_*.json): ids 12, 26, 29, 30, 45, 66, 68, 69, 71, 83 are unused.
COCO_CATEGORY_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34,
    35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
    64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
)
UNUSED_ID = "N/A"  # torchvision's name for an unused category id


def torchvision_coco_names() -> tuple[str, ...]:
    """The names of torchvision's 90 COCO foreground labels (category ids 1..90; unused ids are "N/A")."""
    by_id = dict(zip(COCO_CATEGORY_IDS, COCO_CLASSES))
    return tuple(by_id.get(category, UNUSED_ID) for category in range(1, 91))
