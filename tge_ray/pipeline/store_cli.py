"""``tge store STORAGE list|verify|gc``: what an artifact store holds, whether it is sound, and
removing what no run uses.

    list     every artifact (stage, key, size, age, state, the runs that used it) and every
             other folder: temporary, resume and moved-aside ones; sizes are checked, not hashes
    verify   every file's SHA-256 against its manifest: one line per damaged artifact, exit 1
             when there is one (the next run that needs it moves it aside and rebuilds it)
    gc       remove the artifacts that no run folder under ``--runs`` (default: STORAGE, where
             ``tge run`` and ``tge sweep`` put them) names, the moved-aside artifacts, stale
             temporary folders and every resume folder whose lock is free; ``--dry-run`` only
             says what it would remove

Run folders name the artifacts they used in ``results.json`` (:class:`~tge_ray.pipeline.run_folder.RunRecord`).
An artifact that a run still in flight has built is named by no run folder yet: run ``gc``
when no run is writing to the store.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tge_ray.errors import TGEError


def add_parser(sub: Any) -> None:
    """The ``store`` subcommand of ``tge``."""
    store = sub.add_parser(
        "store",
        help="list, verify or garbage-collect an artifact store",
        description="Inspect the artifact store of a storage folder (the `storage` of `tge run`, the --storage "
        "of `tge sweep`): list its artifacts, verify every file's hash, or remove what no run folder uses.",
    )
    store.add_argument("storage", metavar="STORAGE", help="the storage folder (it holds artifacts/)")
    actions = store.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="artifacts with stage, key, size, age, state and the runs that used them")
    verify = actions.add_parser("verify", help="check every file's SHA-256; exit 1 when an artifact is damaged")
    gc = actions.add_parser("gc", help="remove the artifacts no run folder uses, and leftovers of interrupted runs")
    gc.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    for action in (listing, gc):
        action.add_argument("--runs", type=Path, metavar="DIR",
                            help="where the run folders are, searched recursively (default: STORAGE)")
    listing.set_defaults(func=cmd_list)
    verify.set_defaults(func=cmd_verify)
    gc.set_defaults(func=cmd_gc)


def _open(storage: str) -> Any:
    """The store of a local storage folder, unswept; one TGEError line when there is none."""
    from tge_ray.pipeline.artifacts import ArtifactStore, is_uri

    if is_uri(storage):
        raise TGEError(f"tge store reads local folders, not {storage!r}: run it on a machine that mounts the storage")
    folder = Path(storage).expanduser()
    if not folder.is_dir():
        raise TGEError(f"storage folder {folder} does not exist: give the folder `tge run` wrote to (its storage=)")
    store = ArtifactStore(str(folder), sweep=False)
    if not store.root.is_dir():
        raise TGEError(f"{folder} holds no artifact store (no {store.root.name}/ folder): give the storage "
                       "folder of a `tge run` or `tge sweep`")
    return store


def _artifacts(store: Any) -> list[Path]:
    return sorted(p for p in store.root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _runs_by_artifact(store: Any, runs: Path | None) -> tuple[dict[str, list[str]], int]:
    """Artifact name -> the run folders (relative to the runs folder) that used it; the number
    of run folders found. A results.json that cannot be read is one TGEError line, since gc
    would otherwise take its artifacts for unused."""
    from tge_ray.pipeline import files
    from tge_ray.pipeline.run_folder import RunFolderError, RunRecord

    top = (runs or Path(store.storage)).expanduser().resolve()
    if not top.is_dir():
        raise TGEError(f"--runs {top} is not a folder: give the folder that holds the run folders")
    used: dict[str, list[str]] = {}
    count = 0
    for here, dirs, names in os.walk(top):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and Path(here, d) != store.root)
        if files.RESULTS_FILE not in names:
            continue
        dirs[:] = []  # a run folder holds no other
        results = Path(here, files.RESULTS_FILE)
        try:
            record = RunRecord.from_json(json.loads(results.read_text()), str(results))
        except (OSError, ValueError, RunFolderError) as exc:
            raise TGEError(f"{results} cannot be read ({str(exc).splitlines()[0]}): move that folder "
                           "away or pass --runs with the folder of your run folders") from None
        count += 1
        run = str(Path(here).relative_to(top))
        for ref in record.artifacts.values():
            used.setdefault(ref.name or ref.path.name, []).append(run)
    return used, count


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _human_size(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def _human_age(seconds: float) -> str:
    for limit, unit, scale in ((120, "s", 1), (7200, "min", 60), (172800, "h", 3600)):
        if seconds < limit:
            return f"{seconds / scale:.0f} {unit}"
    return f"{seconds / 86400:.0f} d"


def _stage_key(name: str) -> tuple[str, str]:
    stage, _, key = name.rpartition("-")
    return stage, key


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


def cmd_list(args: argparse.Namespace) -> int:
    from tge_ray.pipeline.leftovers import in_use

    store = _open(args.storage)
    used, _ = _runs_by_artifact(store, args.runs)
    now = time.time()
    rows = [("stage", "key", "size", "age", "state", "runs")]
    for folder in _artifacts(store):
        stage, key = _stage_key(folder.name)
        found, damage = store.lookup(folder.name)
        manifest = store.manifest_of(folder)
        state = ("incomplete" if found is None else f"corrupt ({damage})" if damage is not None
                 else "ok" if manifest and "files" in manifest else "ok, no hashes recorded")
        runs = used.get(folder.name, [])
        shown = ", ".join(runs[:2]) + (f" +{len(runs) - 2} more" if len(runs) > 2 else "")
        rows.append((stage, key, _human_size(_size(folder)), _human_age(now - folder.stat().st_mtime), state,
                     shown or "-"))
    for leftover in store.leftovers():
        stage, key = ("run", "-") if leftover.kind == "run folder" else _stage_key(leftover.path.name[1:].split(".")[0])
        if leftover.kind == "corrupt":
            state = "corrupt, moved aside"
        elif leftover.stale is not None:
            state = f"stale {'temp' if leftover.kind != 'resume' else 'resume folder'} ({leftover.stale})"
        elif any(in_use(store.root, name) for name in leftover.artifacts):
            state = "being written"
        else:
            state = "resumable" if leftover.kind == "resume" else "temp"
        rows.append((stage, key, _human_size(_size(leftover.path)),
                     _human_age(now - leftover.path.stat().st_mtime), state, leftover.path.name))
    if len(rows) == 1:
        print(f"no artifacts in {store.root}")
        return 0
    _print_table(rows)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    store = _open(args.storage)
    folders = _artifacts(store)
    damaged, unrecorded = 0, 0
    for folder in folders:
        damage = store.verify(folder)
        unrecorded += "files" not in (store.manifest_of(folder) or {"files": None})
        if damage is not None:
            damaged += 1
            print(f"corrupt: {folder.name}: {damage}")
    print(f"verified {len(folders)} artifact(s) in {store.root}"
          + (f" ({unrecorded} without recorded hashes, checked by their zip CRCs)" if unrecorded else "")
          + f": {damaged} corrupt" + ("; the next run that needs one moves it aside and rebuilds it" if damaged else ""))
    return 1 if damaged else 0


def cmd_gc(args: argparse.Namespace) -> int:
    from tge_ray.io import owner_tag
    from tge_ray.pipeline.leftovers import artifact_lock

    store = _open(args.storage)
    used, count = _runs_by_artifact(store, args.runs)
    if count == 0:
        where = (args.runs or Path(store.storage)).expanduser()
        raise TGEError(f"no run folders under {where}: gc would remove every artifact; pass --runs with the "
                       "folder of your run folders (or remove the store's artifacts/ folder yourself)")
    verb = "would remove" if args.dry_run else "removed"
    freed, removed, kept = 0, 0, 0
    for folder in _artifacts(store):
        if folder.name in used:
            kept += 1
            continue
        with artifact_lock(store.root, folder.name, blocking=False) as free:
            if not free:  # being replaced by a run: it is that run's now
                kept += 1
                continue
            size = _size(folder)
            if not args.dry_run:  # renamed first: an interrupted gc leaves a temp folder the sweep removes
                doomed = store.root / f".{folder.name}.tmp-{owner_tag()}-gc"
                os.rename(folder, doomed)
                shutil.rmtree(doomed)
        print(f"{verb} {folder.name} ({_human_size(size)}, used by no run)")
        freed, removed = freed + size, removed + 1
    sizes = {leftover.path: _size(leftover.path) for leftover in store.leftovers()}
    for leftover in store.sweep(everything=True, dry_run=args.dry_run):
        print(f"{verb} {leftover.path.name} ({leftover.kind} folder, {_human_size(sizes[leftover.path])})")
        freed, removed = freed + sizes[leftover.path], removed + 1
    print(f"{verb} {removed} folder(s), {_human_size(freed)}; kept {kept} artifact(s) used by {count} run folder(s)")
    return 0
