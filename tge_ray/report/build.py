"""``tge report DIR``: a run folder, a sweep folder or a folder of run folders, read back into
report.md and a self-contained report.html.

    classify     what DIR is; bad input is one line, exit 2, nothing written
    read         :class:`~tge_ray.pipeline.run_folder.RunFolder` (any version), or the sweep's
                 results table (:mod:`.sweep`), or every run folder inside (:mod:`.collection`)
    blocks       the report's content: :mod:`.run`, :mod:`.sweep`, :mod:`.collection`, their
                 figures from :mod:`.figures`
    write        :mod:`.document` renders Markdown and HTML; everything is made in a private
                 folder inside the output folder, then moved into place: report_figures/,
                 report.md, report.html

Where the artifacts are gone (a cleaned store, a folder copied to another machine), the report
says so in one line and shows the PNGs the run folder itself holds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tge_ray.errors import ReportError
from tge_ray.pipeline.files import RESULTS_FILE
from tge_ray.pipeline.run_folder import RunFolder
from tge_ray.report.collection import RunsFolder, load_runs, runs_blocks
from tge_ray.report.document import render_html, render_markdown
from tge_ray.report.run import run_blocks
from tge_ray.report.sweep import SweepFolder, load_sweep, sweep_blocks

FIGURES = "report_figures"


@dataclass(frozen=True)
class ReportPaths:
    """Where ``tge report`` wrote: the two reports and the PNGs report.md links to."""

    markdown: Path
    html: Path
    figures: tuple[Path, ...]


def classify(folder: Path) -> str:
    """``"run"``, ``"sweep"`` or ``"runs"`` (a folder of run folders); else a :class:`ReportError`."""
    from tge_ray.sweep.results import SWEEP_RESULTS

    what = (
        "give a run folder written by `tge run` (<storage>/<task>__<backbone>__H<h>__s<seed>__<time>) "
        "or a sweep folder written by `tge sweep` (<storage>/<space name>)"
    )
    if not folder.exists():
        raise ReportError(f"{folder} does not exist: {what}")
    if not folder.is_dir():
        raise ReportError(f"{folder} is a file, not a folder: {what}")
    if RunFolder.is_run_folder(folder):
        return "run"
    if (folder / SWEEP_RESULTS).is_file():
        return "sweep"
    if (folder / "tuner.pkl").is_file():
        raise ReportError(
            f"{folder} is a sweep without {SWEEP_RESULTS} (it has not finished): finish it with "
            f"`tge sweep SPACE.yaml --storage {folder.parent} --resume`, then report"
        )
    if RunFolder.inside(folder):
        return "runs"
    inside = sorted(p.parent.name for p in folder.glob(f"*/{SWEEP_RESULTS}"))
    hint = f" (it holds {len(inside)}, e.g. {folder / inside[0]})" if inside else ""
    raise ReportError(
        f"{folder} is neither a run folder (no {RESULTS_FILE}) nor a sweep folder (no {SWEEP_RESULTS}): {what}{hint}"
    )


def write_report(folder: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> ReportPaths:
    """Write report.md, report.html and report_figures/ for a run or sweep folder.

    ``out`` defaults to ``folder``. The input is read and checked before anything is written;
    the report is built in a private folder inside ``out`` and moved into place when complete.
    """
    source = Path(folder).expanduser()
    kind = classify(source)
    loaded: RunFolder | SweepFolder | RunsFolder = (
        RunFolder.open(source) if kind == "run" else load_sweep(source) if kind == "sweep" else load_runs(source)
    )
    target = Path(out).expanduser() if out is not None else source
    if target.exists() and not target.is_dir():
        raise ReportError(f"--out {target} is a file: give a folder")
    try:
        target.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target, prefix=".report.tmp-"))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ReportError(f"--out {target} cannot be written ({reason}): choose a writable folder") from None
    try:
        figures = tmp / FIGURES
        figures.mkdir()
        if isinstance(loaded, RunFolder):
            title, blocks = run_blocks(loaded, figures)
        elif isinstance(loaded, SweepFolder):
            title, blocks = sweep_blocks(loaded, figures)
        else:
            title, blocks = runs_blocks(loaded)
        (tmp / "report.md").write_text(render_markdown(title, blocks, FIGURES))
        (tmp / "report.html").write_text(render_html(title, blocks))
        names = sorted(p.name for p in figures.iterdir())
        final_figures = target / FIGURES
        if final_figures.exists():  # an older report's figures: set aside, removed with tmp
            os.replace(final_figures, tmp / f"{FIGURES}.old")
        os.replace(figures, final_figures)
        os.replace(tmp / "report.md", target / "report.md")
        os.replace(tmp / "report.html", target / "report.html")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ReportPaths(target / "report.md", target / "report.html", tuple(final_figures / n for n in names))
