"""Data for segtrt: a synthetic shapes set, a COCO-format loader and training augmentations.

Images are RGB uint8 [h, w, 3]; a target is a dict of NumPy arrays
{"boxes": float32 [n, 4] x1y1x2y2 pixels, "labels": int64 [n] 0-based, "masks": uint8 [n, h, w]}.
"""
