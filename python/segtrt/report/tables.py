"""The report's tables, as cells that both the Markdown and the HTML page render.

    for table in report_tables(rows):
        print(to_markdown(table))      # table.title, table.headers, table.cells (strings)

Rows are grouped by model (kind, flavour, checkpoint) in the order they were given. AP drops are the
fp32 row's AP minus the row's (positive: the variant lost accuracy). No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Table:
    title: str
    headers: tuple[str, ...]
    cells: tuple[tuple[str, ...], ...]
    note: str = ""


def grouped(rows: list[dict]) -> list[dict]:
    """The rows with each model's rows together, models in order of first appearance."""
    order = list(dict.fromkeys(row["model"] for row in rows))
    return sorted(rows, key=lambda row: order.index(row["model"]))


def report_tables(rows: list[dict]) -> list[Table]:
    """The summary, AP by IoU and object size, and one per-layer sensitivity table per variant that has one."""
    rows = grouped(rows)
    tables = [summary_table(rows), size_table(rows)]
    tables += [sensitivity_table(row) for row in rows if sensitivity(row)]
    return tables


def summary_table(rows: list[dict]) -> Table:
    headers = ("model", "variant", "backend", "mask AP", "mask AP drop", "box AP", "box AP drop", "boundary F",
               "latency p50 ms", "p95 ms", "FPS", "size MB", "arithmetic")
    cells = tuple((
        row["model"], row["variant"], row["backend"], ap(row["mask_ap"]), drop(row["mask_ap_drop"]),
        ap(row["box_ap"]), drop(row["box_ap_drop"]), ap(row["boundary_f"]), f"{row['latency_p50_ms']:.1f}",
        f"{row['latency_p95_ms']:.1f}", f"{row['fps']:.1f}", f"{row['size_bytes'] / 1e6:.1f}",
        ("emulated: " if row["emulated"] else "") + row["note"],
    ) for row in rows)
    return Table("Accuracy, latency and size per variant", headers, cells, measured_note(rows))


def size_table(rows: list[dict]) -> Table:
    names = ("AP50", "AP75", "APs", "APm", "APl")
    headers = ("model", "variant", *(f"mask {n}" for n in names), *(f"box {n}" for n in names))
    cells = tuple((row["model"], row["variant"], *(ap(row[f"mask_{n.lower()}"]) for n in names),
                   *(ap(row[f"box_{n.lower()}"]) for n in names)) for row in rows)
    return Table("AP by IoU threshold and object size (COCO: small < 32², medium < 96², large)", headers, cells)


def sensitivity(row: dict) -> list[dict]:
    """The per-layer sensitivity calibration recorded for a variant ([] when none), most sensitive first:
    {"layer", "proxy_error" (output error with that layer alone quantised), "ap_drop" (mask AP drop with it and
    every layer before it fallen back; None where no fallback step ended on it), "fallback"}."""
    return list(row.get("calibration", {}).get("sensitivity") or [])


def sensitivity_table(row: dict) -> Table:
    layers = sensitivity(row)
    cells = tuple((entry["layer"], f"{entry['proxy_error']:.4g}",
                   "-" if entry.get("ap_drop") is None else drop(entry["ap_drop"]),
                   "float (fell back)" if entry["fallback"] else "int8") for entry in layers)
    fallbacks = sum(1 for entry in layers if entry["fallback"])
    calibration = row["calibration"]
    budget = (f" to keep the mask AP drop within {calibration['max_ap_drop']}"
              if calibration.get("max_ap_drop") is not None else "")
    if calibration.get("mask_ap") is not None and calibration.get("fp32_mask_ap") is not None:
        budget += (f" (calibration measured mask AP {calibration['mask_ap']:.4f} against FP32's "
                   f"{calibration['fp32_mask_ap']:.4f} on {calibration.get('val_images', '?')} images of its own)")
    return Table(f"Per-layer sensitivity: {row['model']} {row['variant']} ({row['file']})",
                 ("layer", "proxy error (layer alone)", "mask AP drop with it and the layers above in float",
                  "kept as"), cells,
                 f"{fallbacks} of {len(layers)} layers fell back to float{budget}; recorded by calibration in the "
                 "ONNX metadata, not re-measured by the report.")


def measured_note(rows: list[dict]) -> str:
    """One sentence per distinct way the rows were measured."""
    notes = []
    for row in rows:
        m = row["measured"]
        note = (f"AP: pycocotools over {m['eval_images']} images of {m['data']}; latency: {m['latency_scope']}, "
                f"{m['warmup']} warm-up then {m['latency_images']} timed, {m['threads']} thread(s), "
                f"provider {m['provider']}, {m['cpu_cores']} CPU cores visible.")
        if note not in notes:
            notes.append(note)
    return " ".join(notes)


def ap(value: float) -> str:
    return "n/a" if value is None or value < 0 else f"{value:.3f}"


def drop(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"  # budgets are 0.002-0.010: a fourth digit tells them apart


def to_markdown(table: Table) -> str:
    def line(cells) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    lines = [f"### {table.title}", "", line(table.headers), line(["---"] * len(table.headers))]
    lines += [line(cells) for cells in table.cells]
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines)


def report_markdown(rows: list[dict], command: str = "") -> str:
    """The whole report.md: the command that made it, then every table."""
    parts = ["# segtrt accuracy vs precision report", ""]
    if command:
        parts += ["```bash", command, "```", ""]
    parts.append("AP drop: the fp32 row's AP of the same model minus the row's (positive: accuracy lost). "
                 "Rows marked emulated ran in ONNX Runtime, which keeps the variant's rounding points but not "
                 "TensorRT's kernels; a TensorRT engine row is real only on a GPU.")
    parts += ["", "\n\n".join(to_markdown(table) for table in report_tables(rows)), ""]
    return "\n".join(parts)
