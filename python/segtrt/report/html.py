"""report.html: one self-contained page (inline SVG and CSS, no script, nothing fetched) with the plots and
tables of a report. No torch here.
"""

from __future__ import annotations

from html import escape

from segtrt.report.plots import Point, bars_svg, grouped_bars_svg, scatter_svg
from segtrt.report.tables import Table, grouped, report_tables, sensitivity

# Mark colours, each used by one kind of mark only, so a screenshot shows which plot drew what.
MODEL_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f00", "#00429d")
SIZE_COLOURS = (("small", "#ff7f0e"), ("medium", "#17becf"), ("large", "#6a3d9a"))
QUANTISED_COLOUR, FALLBACK_COLOUR = "#3b8c3b", "#e7298a"
PLOTTED_LAYERS = 30  # the most sensitive ones; the table lists every layer

STYLE = """
body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1500px; }
table { border-collapse: collapse; margin: 8px 0 4px; font-size: 13px; }
th, td { border: 1px solid #bbb; padding: 3px 7px; text-align: left; }
th { background: #f0f0f0; }
td.number { text-align: right; }
figure { margin: 16px 0; display: inline-block; vertical-align: top; }
figcaption { font-size: 13px; color: #444; max-width: 760px; }
.note { font-size: 12px; color: #555; max-width: 1200px; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; }
"""


def report_html(rows: list[dict], command: str = "") -> str:
    """The page: the command, the plots, then every table of segtrt.report.tables."""
    rows = grouped(rows)
    body = ["<h1>segtrt accuracy vs precision report</h1>"]
    if command:
        body.append(f"<pre>{escape(command)}</pre>")
    body.append('<section id="plots">')
    body += [_figure(latency_plot(rows), "Mask AP against median latency, one point per variant, coloured by "
                     "model. Emulated rows ran in ONNX Runtime: their latency is not TensorRT's."),
             _figure(size_plot(rows), "Mask AP by object size per variant (n/a: no object of that size).")]
    body += [_figure(sensitivity_plot(row), f"Per-layer sensitivity of {escape(row['model'])} "
                     f"{escape(row['variant'])}, the {min(len(sensitivity(row)), PLOTTED_LAYERS)} most sensitive of "
                     f"{len(sensitivity(row))} layers: the error proxy of quantising each layer alone; pink layers "
                     "fell back to float (not INT8).") for row in rows if sensitivity(row)]
    body.append("</section>")
    body += [_table(table) for table in report_tables(rows)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>segtrt report</title><style>{STYLE}</style></head>\n<body>\n" + "\n".join(body)
            + "\n</body></html>\n")


def model_colours(rows: list[dict]) -> dict[str, str]:
    models = list(dict.fromkeys(row["model"] for row in rows))
    return {model: MODEL_COLOURS[index % len(MODEL_COLOURS)] for index, model in enumerate(models)}


def latency_plot(rows: list[dict]) -> str:
    colours = model_colours(rows)
    points = [Point(row["variant"], row["latency_p50_ms"], row["mask_ap"], colours[row["model"]]) for row in rows]
    return scatter_svg(points, "latency p50 (ms per image)", "mask AP", "Mask AP against latency",
                       legend=list(colours.items()))


def size_plot(rows: list[dict]) -> str:
    groups = [(_short_label(row, rows), [_defined(row[f"mask_{name}"]) for name in ("aps", "apm", "apl")])
              for row in rows]
    return grouped_bars_svg(groups, list(SIZE_COLOURS), "mask AP", "Mask AP by object size")


def sensitivity_plot(row: dict) -> str:
    layers = sensitivity(row)[:PLOTTED_LAYERS]
    bars = [(entry["layer"], float(entry["proxy_error"]), FALLBACK_COLOUR if entry["fallback"] else QUANTISED_COLOUR)
            for entry in layers]
    return bars_svg(bars, "error proxy of quantising the layer alone", f"Per-layer sensitivity: {row['variant']}",
                    legend=[("kept INT8", QUANTISED_COLOUR), ("fell back to float", FALLBACK_COLOUR)])


def _short_label(row: dict, rows: list[dict]) -> str:
    """The variant, under the model's label when the report holds several models."""
    if len({r["model"] for r in rows}) == 1:
        return row["variant"]
    return f"{row['kind']} {row['flavour']}\n{row['variant']}"


def _defined(value: float) -> float | None:
    return None if value is None or value < 0 else value


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{caption}</figcaption></figure>"


def _table(table: Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
    body = "".join("<tr>" + "".join(_cell(c) for c in cells) + "</tr>" for cells in table.cells)
    note = f'<p class="note">{escape(table.note)}</p>' if table.note else ""
    return f"<h2>{escape(table.title)}</h2><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"


def _cell(text: str) -> str:
    """A table cell, numbers (and their n/a, -) right-aligned."""
    try:
        float(text)
        numeric = True
    except ValueError:
        numeric = text in ("n/a", "-")
    return f'<td class="number">{escape(text)}</td>' if numeric else f"<td>{escape(text)}</td>"
