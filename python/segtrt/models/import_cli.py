"""`segtrt import`: an mmdetection or torchvision checkpoint -> a segtrt checkpoint for every later command.

    segtrt import --from mmdet solov2_r50_fpn_1x_coco.pth [--config solov2_r50_fpn_1x_coco.py] --out solov2.pt
    segtrt import --from torchvision maskrcnn_state_dict.pth --out maskrcnn.pt [--set max_detections=50]
"""

from __future__ import annotations

from pathlib import Path

from segtrt import SegtrtError


def add_arguments(parser) -> None:
    from segtrt.models.importers import FRAMEWORKS

    parser.add_argument("--from", dest="framework", required=True, choices=FRAMEWORKS,
                        help="mmdet: SOLO / Decoupled SOLO / SOLOv2 .pth; torchvision: a Mask R-CNN state dict")
    parser.add_argument("checkpoint", help="the framework's weights file (.pth)")
    parser.add_argument("--config", help="mmdetection config .py of the weights (read, never run; default: the "
                        "checkpoint's own meta config, else options inferred from the tensor shapes)")
    parser.add_argument("--out", required=True, help="the segtrt checkpoint to write (.pt)")
    parser.add_argument("--set", dest="settings", action="append", metavar="KEY=VALUE", default=[],
                        help="override a model option (e.g. max_candidates=1000, score_thr=0.2), a pre-processing "
                        "field (e.g. scale='(1024, 600)', input_size='(608, 1024)') or class_names=a,b,c; repeatable")


def main(args) -> int:
    from segtrt.models.checkpoint import save_checkpoint
    from segtrt.models.importers import import_model, parse_settings

    out = Path(args.out)
    if out.suffix not in (".pt", ".pth"):
        raise SegtrtError(f"--out must end in .pt, got {out}")
    imported = import_model(args.framework, args.checkpoint, args.config, parse_settings(args.settings))
    save_checkpoint(out, imported.model, imported.class_names, imported.preprocess)
    print(format_summary(imported, out))
    return 0


def format_summary(imported, out: Path) -> str:
    model, preprocess = imported.model, imported.preprocess
    options = model.options
    caps = {key: options[key] for key in ("max_candidates", "nms_pre", "score_thr", "box_score_threshold",
                                          "max_detections") if key in options}
    lines = [
        f"{model.kind} ({model.backbone_name}, {model.num_classes} classes: "
        f"{', '.join(imported.class_names[:4])}{', ...' if model.num_classes > 4 else ''}) -> {out}",
        f"  pre-processing: {preprocess.resize} to {tuple(preprocess.scale)}, pad to /{preprocess.size_divisor}, "
        f"{preprocess.channel_order}, normalise {preprocess.normalise}, paste rule {preprocess.paste}",
        "  " + ", ".join(f"{key} {value}" for key, value in caps.items()),
        *(f"  {note}" for note in imported.notes),
    ]
    return "\n".join(lines)
