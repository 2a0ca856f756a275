"""Evaluation stage: COCO box/mask AP (coco.py) and the boundary F-score (boundary.py). No torch."""
