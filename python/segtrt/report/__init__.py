"""`segtrt report`: accuracy, latency and size of each precision variant of a model, side by side.

    segtrt report --onnx m.onnx m.fp16.onnx m.int8.onnx --data data/val --out runs/report

measure (rows: evaluation + latency through the runtime's backends), tables (Markdown and the HTML page's
tables), plots (inline SVG), html (the self-contained page), cli (the command, atomic output). Runs
deployed files only: no torch anywhere here.
"""
