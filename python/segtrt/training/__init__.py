"""Training stage: `segtrt train` (training/train.py) and `segtrt strip` (training/strip.py). Imports torch."""
