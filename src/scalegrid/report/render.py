"""Write a `Document` as index.html (self-contained), report.md (beside figures/) and fits.json.

index.html embeds every figure as a base64 PNG data URI and its style inline: no scripts, no
fonts or stylesheets from elsewhere, so it opens offline, from an e-mail attachment as well as
from the results directory. report.md links figures/<name>.png relative to itself.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from pathlib import Path

from scalegrid.report import figures
from scalegrid.report.document import Document, Section, Table, jsonable

CSS = """
body { font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1d1d1f; max-width: 1080px; margin: 2rem auto; padding: 0 1.5rem; }
h1 { font-size: 1.7rem; margin-bottom: .2rem; }
h2 { font-size: 1.3rem; margin-top: 2.4rem; border-bottom: 1px solid #e3e3e3; padding-bottom: .25rem; }
h3 { font-size: 1.02rem; margin: 1.4rem 0 .4rem; }
.meta { color: #666; font-size: .88rem; }
.partial { background: #fff6dd; border-left: 4px solid #e0a800; padding: .6rem .9rem; margin: 1rem 0; }
.partial ul { margin: .3rem 0 0; }
.skipped { color: #777; font-style: italic; }
.note { color: #555; font-size: .9rem; }
.headline { background: #f4f7fb; border-left: 4px solid #3465a4; padding: .5rem .9rem; }
.headline li { margin: .15rem 0; }
nav ol { columns: 2; font-size: .93rem; }
figure { margin: 1.2rem 0; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { color: #444; font-size: .88rem; margin-top: .35rem; }
figcaption a { color: #3465a4; }
table { border-collapse: collapse; font-size: .86rem; margin: .5rem 0 1rem; display: block; overflow-x: auto; }
th, td { border-bottom: 1px solid #e6e6e6; padding: .25rem .6rem; text-align: left; vertical-align: top; }
th { background: #f6f6f6; font-weight: 600; white-space: nowrap; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
th.num { text-align: right; }
code { background: #f2f2f2; padding: 0 .25rem; border-radius: 3px; }
"""


def write_all(doc: Document, out_dir: Path) -> Path:
    """Write the three files; returns the index.html path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic_text(out_dir / "fits.json", json.dumps(fits_json(doc), indent=2, sort_keys=False) + "\n")
    _atomic_text(out_dir / "report.md", markdown(doc, out_dir))
    index = out_dir / "index.html"
    _atomic_text(index, html_page(doc))
    return index


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# fits.json


def fits_json(doc: Document) -> dict:
    return jsonable(
        {
            "title": doc.title,
            "results_dir": doc.results_dir,
            "generated_at": doc.generated_at,
            "provenance": doc.provenance,
            "partial": doc.partial,
            "partial_reasons": doc.partial_reasons,
            "sections": {
                s.key: {
                    "title": s.title,
                    "status": "skipped" if s.skipped else "ok",
                    **({"reason": s.skipped} if s.skipped else {}),
                    "fits": s.fits,
                    "notes": s.notes,
                    "figures": [f"figures/{f.name}.png" for f in s.figures],
                }
                for s in doc.sections
            },
        }
    )


# ---------------------------------------------------------------------------------------------
# Markdown


def markdown(doc: Document, out_dir: Path) -> str:
    lines = [f"# {doc.title}", "", _meta_line(doc), ""]
    if doc.partial:
        lines += ["> **Partial results.** This report shows what the store holds so far:", ">"]
        lines += [f"> - {reason}" for reason in doc.partial_reasons]
        lines.append("")
    for i, section in enumerate(doc.sections, 1):
        lines += [f"## {i}. {section.title}", ""]
        if section.skipped:
            lines += [f"*Skipped: {section.skipped}*", ""]
            continue
        if section.headline:
            lines += [f"- **{h}**" for h in section.headline] + [""]
        for paragraph in section.paragraphs:
            lines += [paragraph, ""]
        for figure in section.figures:
            rel = figure.png.relative_to(out_dir).as_posix()
            svg = figure.svg.relative_to(out_dir).as_posix()
            lines += [f"![{figure.title}]({rel})", "", f"*{figure.caption}* ([SVG]({svg}))", ""]
        for table in section.tables:
            lines += _md_table(table)
        for note in section.notes:
            lines += [f"> {note}", ""]
    return "\n".join(lines).rstrip() + "\n"


def _md_table(table: Table) -> list[str]:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    out = [f"**{table.title}**", ""]
    out.append("| " + " | ".join(cell(c) for c in table.columns) + " |")
    numeric = [bool(table.rows) and all(_is_numeric(r[i]) for r in table.rows if i < len(r)) for i in range(len(table.columns))]
    out.append("|" + "|".join("---:" if numeric[i] else ":---" for i in range(len(table.columns))) + "|")
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in table.rows]
    out.append("")
    if table.note:
        out += [f"*{table.note}*", ""]
    return out


def _meta_line(doc: Document) -> str:
    prov = ", ".join(f"{k} {v}" for k, v in doc.provenance.items() if v)
    return f"Results: `{doc.results_dir}` · generated {doc.generated_at}" + (f" · {prov}" if prov else "")


# ---------------------------------------------------------------------------------------------
# HTML


def html_page(doc: Document) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(doc.title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{e(doc.title)}</h1>",
        f'<p class="meta">Results: <code>{e(doc.results_dir)}</code> · generated {e(doc.generated_at)}'
        + "".join(f" · {e(k)} <code>{e(str(v))}</code>" for k, v in doc.provenance.items() if v)
        + "</p>",
    ]
    if doc.partial:
        parts.append('<div class="partial"><strong>Partial results.</strong> This report shows what the store holds so far:<ul>')
        parts += [f"<li>{e(r)}</li>" for r in doc.partial_reasons]
        parts.append("</ul></div>")
    parts.append("<nav><ol>")
    for section in doc.sections:
        mark = ' <span class="skipped">(skipped)</span>' if section.skipped else ""
        parts.append(f'<li><a href="#{e(section.key)}">{e(section.title)}</a>{mark}</li>')
    parts.append("</ol></nav>")
    for i, section in enumerate(doc.sections, 1):
        parts += _html_section(i, section)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _html_section(number: int, section: Section) -> list[str]:
    e = html.escape
    out = [f'<section id="{e(section.key)}">', f"<h2>{number}. {e(section.title)}</h2>"]
    if section.skipped:
        out += [f'<p class="skipped">Skipped: {e(section.skipped)}</p>', "</section>"]
        return out
    if section.headline:
        out.append('<ul class="headline">' + "".join(f"<li>{e(h)}</li>" for h in section.headline) + "</ul>")
    out += [f"<p>{e(p)}</p>" for p in section.paragraphs]
    for figure in section.figures:
        try:
            data = base64.b64encode(figure.png.read_bytes()).decode("ascii")
        except OSError as err:
            out.append(f'<p class="skipped">Figure {e(figure.title)} is missing ({e(err.strerror or str(err))}).</p>')
            continue
        size = _css_size(figure.png)
        out.append(
            f'<figure id="fig-{e(figure.name)}"><img src="data:image/png;base64,{data}" alt="{e(figure.title)}"{size}>'
            f"<figcaption><strong>{e(figure.title)}.</strong> {e(figure.caption)} "
            f'(<a href="figures/{e(figure.name)}.svg">SVG</a>, <a href="figures/{e(figure.name)}.png">PNG</a>)'
            "</figcaption></figure>"
        )
    for table in section.tables:
        out += _html_table(table)
    out += [f'<p class="note">{e(n)}</p>' for n in section.notes]
    out.append("</section>")
    return out


NUMERIC = re.compile(r"^[-+−]?(\d[\d,]*\.?\d*|\.\d+)(e[-+]?\d+)?[x%]?( \[.*\])?$|^n/a$|^-$")


def _is_numeric(text: str) -> bool:
    return bool(NUMERIC.match(str(text).strip()))


def _css_size(png: Path) -> str:
    """width/height attributes that show every figure at one scale (the PNG's dpi as 96 CSS px
    per inch), so text is the same size in every figure; CSS still shrinks wide ones to fit."""
    with png.open("rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        return ""
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    scale = 96 / figures.PNG_DPI
    return f' width="{round(width * scale)}" height="{round(height * scale)}"'


def _html_table(table: Table) -> list[str]:
    e = html.escape
    numeric = [all(_is_numeric(row[i]) for row in table.rows if i < len(row)) and bool(table.rows)
               for i in range(len(table.columns))]
    out = [f"<h3>{e(table.title)}</h3>", "<table><thead><tr>"]
    out += [f'<th{" class=num" if numeric[i] else ""}>{e(str(c))}</th>' for i, c in enumerate(table.columns)]
    out.append("</tr></thead><tbody>")
    for row in table.rows:
        out.append("<tr>" + "".join(
            f'<td{" class=num" if i < len(numeric) and numeric[i] else ""}>{e(str(c))}</td>' for i, c in enumerate(row)
        ) + "</tr>")
    out.append("</tbody></table>")
    if table.note:
        out.append(f'<p class="note">{e(table.note)}</p>')
    return out
