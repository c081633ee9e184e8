"""Reading a `tge run` folder for the diagnostic scripts beside this file, with their one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def read_run(run_dir: Path, prog: str, *, config: bool = False, rewards: bool = False) -> dict[str, Any] | None:
    """``run_dir``'s results.json, or None after one error line on stderr naming ``prog``.

    ``config``: the folder must hold config.yaml too. ``rewards``: the run must have a TGE reward stage.
    """
    needed = "results.json or config.yaml" if config else "results.json"
    if not (run_dir / "results.json").is_file() or (config and not (run_dir / "config.yaml").is_file()):
        print(f"{prog}: error: {run_dir} is not a `tge run` folder (no {needed})", file=sys.stderr)
        return None
    results = json.loads((run_dir / "results.json").read_text())
    if rewards and "rewards" not in (results.get("artifacts") or {}):
        print(f"{prog}: error: {run_dir} has no TGE reward stage (run it with methods including tge)", file=sys.stderr)
        return None
    return results
