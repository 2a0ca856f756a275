#!/usr/bin/env python3
"""Compare the precision variants of a model (accuracy, latency, size): the same as `segtrt report`."""

import sys

from segtrt.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
