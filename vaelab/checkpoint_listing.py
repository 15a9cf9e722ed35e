"""The checkpoint listing without torch when nothing changed (``python -m vaelab list`` in a fraction of a second).

:func:`vaelab.checkpoints.list_checkpoints` reads and checks every file with torch, and importing torch alone takes
over a second. What it found is kept in ``<dir>/.vaelab-listing.json``, one entry per file, keyed by the file's
size, modification and change times and inode: an unchanged file is listed from there. Only when a file is new or
changed is torch imported and that file's variant folder checked again by list_checkpoints (the one judge of what
is listed and what is unreadable); the cache is then rewritten atomically. A change to vaelab's own code empties
it. A cache that cannot be read is ignored and one that cannot be written is skipped: the listing is the same.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import vaelab

CACHE_NAME = ".vaelab-listing.json"
CACHE_FORMAT = 1
_CODE = Path(__file__).resolve().parent  # the vaelab package: its files' times invalidate the cache


@dataclass
class CheckpointInfo:
    """One row of the listing (checkpoints.list_checkpoints makes them; defined here, where torch is not needed)."""

    path: Path
    name: str
    variant: str
    dataset: dict[str, Any] | None
    epochs: int | None
    test_loss: float | None
    created: str | None
    error: str | None = None  # set when the file could not be read

    @property
    def dataset_label(self) -> str:
        """'mnist-5k', or 'train -> test' when the test split came from another source."""
        if not self.dataset:
            return "?"
        train, test = self.dataset.get("train", "?"), self.dataset.get("test", "?")
        return train if test == train else f"{train} -> {test}"


def checkpoint_folder(directory: str | Path | None = None) -> Path:
    """The folder ``list`` reads: ``directory``, else ``$VAELAB_CHECKPOINT_DIR``, else ``checkpoints``."""
    return Path(directory or os.environ.get("VAELAB_CHECKPOINT_DIR") or "checkpoints")


def list_saved(directory: str | Path | None = None) -> list[CheckpointInfo]:
    """Every ``<dir>/<variant>/*.pt`` that list_checkpoints would list, in its order, with its verdict."""
    root = checkpoint_folder(directory)
    paths = sorted(root.glob("*/*.pt"))
    if not paths:
        return []
    code = _code_stamp()
    cached = _read_cache(root, code)
    stamps = {p: _stamp(p) for p in paths}
    stale = {p.parent.name for p in paths if stamps[p] is None or cached.get(_key(root, p), {}).get("stamp")
             != stamps[p]}
    entries = {_key(root, p): cached.get(_key(root, p)) for p in paths}
    if stale:
        checked = _check(root, stale)
        for p in paths:
            if p.parent.name in stale:
                entries[_key(root, p)] = {"stamp": stamps[p], "row": checked.get(_key(root, p))}
    if entries != cached:
        _write_cache(root, code, entries)
    return [_row_from(root, entry["row"]) for entry in entries.values() if entry["row"] is not None]


def _key(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _stamp(path: Path) -> list[int] | None:
    """What changes when a file is written, replaced or touched (None: it vanished meanwhile)."""
    try:
        s = path.lstat()
    except OSError:
        return None
    return [s.st_size, s.st_mtime_ns, s.st_ctime_ns, s.st_ino]


def _code_stamp() -> str:
    """vaelab's version and the newest modification time of its modules: the rules the verdicts came from."""
    newest = max((e.stat().st_mtime_ns for folder in (_CODE, _CODE / "variants") for e in os.scandir(folder)
                  if e.name.endswith(".py")), default=0)
    return f"{vaelab.__version__}:{newest}"


def _check(root: Path, variants: set[str]) -> dict[str, dict[str, Any]]:
    """list_checkpoints' rows (as plain dicts) for the files in these variant folders; imports torch."""
    from vaelab.checkpoints import list_checkpoints

    if any(ch in v for v in variants for ch in "*?["):  # a folder name glob would read as a pattern
        infos = list_checkpoints(root)
    else:
        infos = [info for v in sorted(variants) for info in list_checkpoints(root, variant=v)]
    rows = {}
    for info in infos:
        row = asdict(info)
        row["path"] = _key(root, info.path)
        rows[row["path"]] = row
    return rows


def _row_from(root: Path, row: dict[str, Any]) -> CheckpointInfo:
    return CheckpointInfo(**{**row, "path": root / row["path"]})


def _read_cache(root: Path, code: str) -> dict[str, Any]:
    try:
        with (root / CACHE_NAME).open(encoding="utf-8") as f:
            cache = json.load(f)
        if cache.get("format") == CACHE_FORMAT and cache.get("code") == code:
            return {k: v for k, v in cache["files"].items() if _well_formed(v)}  # the rest is checked again
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass
    return {}


_FIELDS = set(CheckpointInfo.__dataclass_fields__)


def _well_formed(entry: Any) -> bool:
    return (isinstance(entry, dict) and set(entry) == {"stamp", "row"} and isinstance(entry["stamp"], list)
            and (entry["row"] is None or isinstance(entry["row"], dict) and set(entry["row"]) == _FIELDS))


def _write_cache(root: Path, code: str, entries: dict[str, Any]) -> None:
    """Temp file beside the cache, then one rename: a reader sees the old cache or the new one."""
    try:
        fd, tmp = tempfile.mkstemp(dir=root, prefix=f"{CACHE_NAME}.", suffix=".tmp")
    except OSError:  # a folder this user cannot write: list without a cache
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"format": CACHE_FORMAT, "code": code, "files": entries}, f)
        os.replace(tmp, root / CACHE_NAME)
    except (OSError, TypeError, ValueError):
        Path(tmp).unlink(missing_ok=True)
