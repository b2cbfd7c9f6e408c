"""Every plot dvc.yaml declares, drawn offline: one PNG per plot data file and an index.html that shows them.

`dvc plots show` writes an HTML page that loads Vega from a CDN, so without internet the page is blank. This draws
the same data (each stage's `plots:` and the top-level ones, with their x, y, title and template) with matplotlib,
so `plots/index.html` opens anywhere. A data file that is not there (the stage has not run, or DVC has not pulled
it) is listed as missing.

Usage: python -m scripts.plots [--out plots]   (make plots)
"""

from __future__ import annotations

import argparse
import csv
import html
from collections import defaultdict
from pathlib import Path

import yaml

from scripts.results_table import ROOT, global_context, render


def declared_plots(dvc: dict) -> list[tuple[str, dict]]:
    """(data path, its props) for every plot of dvc.yaml: the stages' and the top-level ones, in file order."""
    context = global_context(dvc)
    found = []
    entries = [entry for stage in dvc.get("stages", {}).values() for entry in stage.get("plots", [])]
    for entry in [*entries, *dvc.get("plots", [])]:
        path, props = next(iter(entry.items())) if isinstance(entry, dict) else (entry, None)
        found.append((render(str(path), [context]), dict(props or {})))
    return found


def number(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def draw(rows: list[dict], props: dict, title: str, out: Path) -> None:
    """One plot: bars for `bar_horizontal`, points for `scatter` (named when a text column names each row), else
    lines; a series per value of the rows' few-valued text columns (lines: the mean y per x where seeds repeat)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = list(rows[0])
    x, y = props.get("x", columns[0]), props.get("y", columns[-1])
    template = props.get("template", "linear")
    if template != "bar_horizontal" and (isinstance(y, list) or any(number(r[x]) is None for r in rows)):
        return draw_series(rows, x, y if isinstance(y, list) else [y], props, title, out)
    figure, axis = plt.subplots(figsize=(7, 4.2), dpi=110)
    if template == "bar_horizontal":  # y is the category, x the value
        axis.barh([r[y] for r in rows], [number(r[x]) or 0.0 for r in rows])
        axis.invert_yaxis()
    else:
        text = [c for c in columns if c not in (x, y) and all(number(r[c]) is None for r in rows if r[c])]
        few = [c for c in text if len({r[c] for r in rows}) <= 8]  # series: teacher/human, priority/random, ...
        names = next((c for c in text if len({r[c] for r in rows}) == len(rows) > 1), None)  # one per point
        groups: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in rows:
            px, py = number(r[x]), number(r[y])
            if px is not None and py is not None:
                groups[" ".join(r[c] for c in few)][px].append(py)
        for label, by_x in groups.items():
            if template == "scatter":
                points = [(px, py) for px, ys in by_x.items() for py in ys]
                axis.scatter([p[0] for p in points], [p[1] for p in points], label=label or None, alpha=0.7)
            else:  # the mean where seeds repeat an x
                xs = sorted(by_x)
                axis.plot(xs, [sum(by_x[v]) / len(by_x[v]) for v in xs], "o-", label=label or None)
        if template == "scatter" and names:
            for r in rows:
                axis.annotate(
                    r[names],
                    (number(r[x]) or 0, number(r[y]) or 0),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        if any(groups):
            axis.legend(fontsize=8)
    axis.set_xlabel(props.get("x_label", x))
    axis.set_ylabel(props.get("y_label", y))
    axis.set_title(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(out, metadata={"Software": None})
    plt.close(figure)


def draw_series(rows: list[dict], x: str, ys: list[str], props: dict, title: str, out: Path) -> None:
    """Several y columns as lines over an x that may be text (months): one line each, x in the rows' order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.2), dpi=110)
    positions = range(len(rows))
    for y in ys:
        axis.plot(positions, [number(r[y]) or 0.0 for r in rows], "-", label=y)
    step = max(1, len(rows) // 12)  # about a dozen labels, however long the axis
    axis.set_xticks(list(positions)[::step], [r[x] for r in rows][::step], rotation=45, fontsize=7)
    axis.legend(fontsize=8)
    axis.set_xlabel(props.get("x_label", x))
    axis.set_title(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(out, metadata={"Software": None})
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "plots", help="where the PNGs and index.html go")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    sections, missing = [], []
    for path, props in declared_plots(yaml.safe_load((ROOT / "dvc.yaml").read_text())):
        source = ROOT / path
        rows = list(csv.DictReader(source.open(encoding="utf-8"))) if source.is_file() else []
        if not rows:
            missing.append(path)
            continue
        title = props.get("title", path)
        image = path.replace("/", "__").rsplit(".", 1)[0] + ".png"
        draw(rows, props, title, args.out / image)
        sections.append(f'<h2>{html.escape(title)}</h2>\n<p><code>{html.escape(path)}</code></p>\n<img src="{image}">')
    if missing:
        sections.append(
            "<h2>Not drawn</h2>\n<p>No data yet (run the stage, or <code>dvc pull</code>): "
            + ", ".join(f"<code>{html.escape(p)}</code>" for p in missing)
            + "</p>"
        )
    page = "<!doctype html>\n<meta charset='utf-8'>\n<title>headline-ner plots</title>\n" + "\n".join(sections)
    (args.out / "index.html").write_text(page + "\n", encoding="utf-8")
    print(f"{len(sections) - bool(missing)} plots in {args.out / 'index.html'}; no data yet: {missing or 'none'}")


if __name__ == "__main__":
    main()
