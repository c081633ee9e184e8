"""A report as a list of blocks, rendered twice: Markdown (PNGs beside it) and one HTML file.

The HTML is self-contained: every figure is a ``data:image/png;base64,`` URI, the style sheet is
inline, and nothing is loaded from elsewhere, so the file can be mailed or attached as it is.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class Note:
    """A remark about the report itself (e.g. artifacts that are gone), set apart from results."""

    text: str


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Figure:
    """A PNG under the report's figure folder; ``path`` is where it lies while being written."""

    path: Path
    caption: str


@dataclass(frozen=True)
class Code:
    """A block of text (the resolved config); collapsed under ``summary`` in HTML."""

    text: str
    language: str
    summary: str


Block = Heading | Paragraph | Note | Table | Figure | Code


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, blocks: list[Block], figure_folder: str) -> str:
    """Markdown; figures are linked as ``figure_folder/<name>`` (relative to report.md)."""
    out = [f"# {title}", ""]
    for block in blocks:
        if isinstance(block, Heading):
            out += [f"{'#' * block.level} {block.text}", ""]
        elif isinstance(block, Paragraph):
            out += [block.text, ""]
        elif isinstance(block, Note):
            out += [f"> **Note:** {block.text}", ""]
        elif isinstance(block, Table):
            out.append("| " + " | ".join(_md_cell(c) for c in block.header) + " |")
            out.append("|" + "---|" * len(block.header))
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            out.append("")
        elif isinstance(block, Figure):
            out += [f"![{block.caption}]({figure_folder}/{block.path.name})", "", f"*{block.caption}*", ""]
        elif isinstance(block, Code):
            out += [f"{block.summary}:", "", f"```{block.language}", block.text.rstrip("\n"), "```", ""]
    return "\n".join(out)


_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: .15em; margin-top: 1.8em; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; white-space: nowrap; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .9em; color: #555; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: .5em .8em; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; font-size: .85em; }
details summary { cursor: pointer; font-weight: 600; }
"""


def render_html(title: str, blocks: list[Block]) -> str:
    """One HTML file with the figures embedded as base64 data URIs and an inline style sheet."""
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{esc(title)}</h1>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{esc(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            out.append(f"<p>{esc(block.text)}</p>")
        elif isinstance(block, Note):
            out.append(f'<p class="note"><strong>Note:</strong> {esc(block.text)}</p>')
        elif isinstance(block, Table):
            out.append('<div class="table-wrap"><table>')
            out.append("<thead><tr>" + "".join(f"<th>{esc(c)}</th>" for c in block.header) + "</tr></thead>")
            out.append("<tbody>")
            out += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in block.rows]
            out.append("</tbody></table></div>")
        elif isinstance(block, Figure):
            data = base64.b64encode(block.path.read_bytes()).decode("ascii")
            out.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{esc(block.caption)}">'
                f"<figcaption>{esc(block.caption)}</figcaption></figure>"
            )
        elif isinstance(block, Code):
            out.append(
                f"<details><summary>{esc(block.summary)}</summary>"
                f'<pre><code class="language-{esc(block.language)}">{esc(block.text)}</code></pre></details>'
            )
    out += ["</body>", "</html>", ""]
    return "\n".join(out)
