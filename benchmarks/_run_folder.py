"""Opening a `tge run` folder for the diagnostic scripts beside this file, with their one-line errors."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def read_run(run_dir: Path, prog: str, *, rewards: bool = False) -> Any:
    """``run_dir`` as a :class:`tge_ray.pipeline.run_folder.RunFolder`, or None after one error line
    on stderr naming ``prog``. ``rewards``: the run must have a TGE reward stage."""
    from tge_ray.pipeline.run_folder import RunFolder, RunFolderError

    try:
        run = RunFolder.open(run_dir)
        if rewards:
            run.artifact("rewards")
    except RunFolderError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return None
    return run
