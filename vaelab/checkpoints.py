"""Checkpoints: ``<dir>/<variant>/<name>.pt``, plain dicts written atomically and read with a safe loader.

A checkpoint holds the variant, its config, the dataset spec, the weights, the trainer's state (to resume),
the history, the final test metrics, library versions and the time. Loading always uses
``torch.load(..., weights_only=True)``; a broken, foreign or incompatible file raises ``CheckpointError`` with a
message that says what is wrong.
"""

from __future__ import annotations

import os
import platform
import re
import stat
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import vaelab
from vaelab.budget import ENV_VAR as BUDGET_ENV_VAR
from vaelab.budget import MB, budget_mb, check_budget
from vaelab.checkpoint_listing import CheckpointInfo  # torch-free: `python -m vaelab list` reads it too
from vaelab.config import BaseConfig, ConfigError
from vaelab.data import DataBundle
from vaelab.payload_limits import MAX_PICKLE_BYTES, LoadLimitError, check_structure, scan_pickle, thinned_history
from vaelab.training import Trainer
from vaelab.variants import VARIANTS, build_model, get_variant
from vaelab.variants.base import Variant

FORMAT_VERSION = 1
MAX_NAME_LENGTH = 80
REQUIRED_KEYS = ("format_version", "variant", "config", "input_dim", "n_classes", "model_state")
# Keys update_metadata may not change: they define what the weights mean.
PROTECTED_KEYS = frozenset({"format_version", "variant", "config", "input_dim", "n_classes", "image_shape",
                            "model_state", "trainer_state", "history"})
TENSOR_KEYS = ("model_state", "trainer_state", "history")  # kept out of Checkpoint.meta
_NAME_CHARS = re.compile(r"[A-Za-z0-9._-]+")
TEMP_SUFFIX = ".tmp"  # a save's temp file: .<name>.pt.<random>.tmp beside the target
UPLOAD_SUFFIX = ".upload"
STALE_TEMP_SECONDS = 600.0  # a temp file untouched this long belongs to a save that died
_UMASK = os.umask(0)  # read once at import (single-threaded then): os.umask can only be read by setting it
os.umask(_UMASK)
MAX_UPLOAD_MB = 50  # keep equal to server.maxUploadSize in .streamlit/config.toml
MAX_UNPACKED_FACTOR = 4  # an upload's zip entries may unpack to at most this many times the upload limit
MAX_ARCHIVE_ENTRIES = 10_000  # a checkpoint stores one entry per tensor: a few dozen


class CheckpointError(Exception):
    """A checkpoint cannot be written, read or used; the message says why."""


@dataclass
class Checkpoint:
    path: Path
    variant: str
    config: BaseConfig
    model: Variant  # in eval mode
    meta: dict[str, Any]  # everything but weights, trainer state and history
    history: list[dict[str, Any]]
    trainer_state: dict[str, Any] = field(default_factory=dict, repr=False)


def checkpoint_dir() -> Path:
    return Path(os.environ.get("VAELAB_CHECKPOINT_DIR") or "checkpoints")


def sanitize_name(name: str) -> str:
    """A safe file stem: letters, digits, '-', '_', '.'; whitespace becomes '-'; a trailing '.pt' is dropped."""
    if not isinstance(name, str):
        raise CheckpointError(f"checkpoint name must be text (got {name!r})")
    stem = re.sub(r"\s+", "-", name.strip())
    if stem.endswith(".pt"):
        stem = stem[:-3]
    if not stem:
        raise CheckpointError("checkpoint name is empty")
    if "/" in stem or "\\" in stem:
        raise CheckpointError(f"checkpoint name {name!r} must not contain '/' or '\\'")
    if ".." in stem:
        raise CheckpointError(f"checkpoint name {name!r} must not contain '..'")
    if stem.startswith("."):
        raise CheckpointError(f"checkpoint name {name!r} must not start with '.'")
    if len(stem) > MAX_NAME_LENGTH:
        raise CheckpointError(f"checkpoint name is {len(stem)} characters long; at most {MAX_NAME_LENGTH} allowed")
    if not _NAME_CHARS.fullmatch(stem):
        bad = sorted(set(re.sub(r"[A-Za-z0-9._-]", "", stem)))
        raise CheckpointError(f"checkpoint name {name!r} contains {''.join(bad)!r}; allowed: letters, digits, "
                              f"'-', '_', '.' (spaces become '-')")
    return stem


def checkpoint_path(variant: str, name: str, directory: str | Path | None = None) -> Path:
    get_variant(variant)
    return Path(directory or checkpoint_dir()) / variant / f"{sanitize_name(name)}.pt"


# -- writing ------------------------------------------------------------------------------------------------
def save_trainer(trainer: Trainer, name: str, directory: str | Path | None = None, overwrite: bool = False) -> Path:
    """Write the trainer (weights, state to resume, history, metadata) to ``<dir>/<variant>/<name>.pt``."""
    path = checkpoint_path(trainer.variant, name, directory)
    if path.exists() and not overwrite:
        raise CheckpointError(_exists_message(path))
    _atomic_save(_payload(trainer, path.stem), path, overwrite=overwrite)
    return path


def save_trainer_to(trainer: Trainer, path: str | Path, overwrite: bool = False) -> Path:
    """Write the trainer to an explicit file path (the CLI's ``--out``); the name is the file's stem."""
    path = Path(path)
    if path.suffix != ".pt":
        raise CheckpointError(f"{path}: a checkpoint file name must end in .pt")
    sanitize_name(path.stem)
    if path.exists() and not overwrite:
        raise CheckpointError(f"{path} already exists; choose another path or overwrite it")
    _atomic_save(_payload(trainer, path.stem), path, overwrite=overwrite)
    return path


def rescue_path(variant: str) -> Path:
    """Where a run goes when its checkpoint cannot be written: the system's temp folder, a name no one has."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(tempfile.gettempdir()) / f"vaelab-rescue-{variant}-{stamp}-{os.getpid()}.pt"


def save_or_rescue(trainer: Trainer, save: Callable[[], Path]) -> tuple[Path | None, str | None]:
    """(path, None) when ``save()`` wrote the checkpoint; else (rescue path or None, the reason): the trained model
    is written to :func:`rescue_path` instead, so a failed save never loses a run."""
    try:
        return save(), None
    except CheckpointError as error:
        reason = str(error)
    try:
        return save_trainer_to(trainer, rescue_path(trainer.variant), overwrite=False), reason
    except CheckpointError as error:
        return None, f"{reason}; the rescue copy failed too ({error})"


def _exists_message(path: Path) -> str:
    return (f"a checkpoint named {path.stem!r} already exists for {path.parent.name} ({path}); "
            "choose another name or overwrite it")


def _payload(trainer: Trainer, name: str) -> dict[str, Any]:
    state = trainer.state_dict()
    model_state = state.pop("model")
    broken = next((k for k, v in model_state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if broken is not None:
        raise CheckpointError(f"refusing to save {name!r}: the weight {broken} holds inf or nan (a diverged run); "
                              "nothing was written")
    history = thinned_history(state.pop("history"))  # a very long run keeps its shape within the load limit
    for duplicated in ("variant", "config"):
        state.pop(duplicated)
    tests = [row for row in history if row["kind"] == "test"]
    metrics = {k: v for k, v in tests[-1].items() if k not in ("kind", "step", "epoch", "time")} if tests else {}
    data = trainer.data
    payload = {
        "format_version": FORMAT_VERSION,
        "variant": trainer.variant,
        "name": name,
        "config": trainer.config.to_dict(),
        "dataset": {**data.spec, "binarize": trainer.config.binarize},
        "input_dim": data.input_dim,
        "n_classes": data.n_classes,
        "image_shape": list(data.image_shape),
        "model_state": model_state,
        "trainer_state": state,
        "history": history,
        "metrics": metrics,
        "versions": {"torch": str(torch.__version__), "vaelab": vaelab.__version__,  # TorchVersion is not plain
                     "python": platform.python_version()},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "epochs": trainer.epoch,
        "steps": trainer.step,
        "train_time": trainer.elapsed,
    }
    return payload


def update_metadata(path: str | Path, **meta: Any) -> dict[str, Any]:
    """Merge ``meta`` into a checkpoint's top-level metadata (e.g. cached evaluation results) and rewrite it
    atomically. Values must be plain data (numbers, text, lists, dicts, tensors). Returns the new metadata."""
    path = Path(path)
    protected = sorted(set(meta) & PROTECTED_KEYS)
    if protected:
        raise CheckpointError(f"update_metadata cannot change {protected[0]!r}; it defines the saved model")
    for key, value in meta.items():
        _check_plain(value, key)
    payload = _read_payload(path)
    payload.update(_compact(meta))
    _atomic_save(payload, path)
    return {k: v for k, v in payload.items() if k not in TENSOR_KEYS}


def _compact(value: Any) -> Any:
    """Tensors copied to storages of their own: torch.save writes a view's whole storage (a slice of a dataset
    would carry the dataset into the file)."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_compact(v) for v in value)
    return value


def delete_checkpoint(path: str | Path) -> None:
    path = Path(path)
    if path.suffix != ".pt" or not path.is_file():
        raise CheckpointError(f"{path} is not a checkpoint file")
    path.unlink()


def _atomic_save(payload: dict[str, Any], path: Path, overwrite: bool = True) -> None:
    """torch.save to a temp file in the same folder, then publish it: readers see the old file or the new one.

    The file gets the mode a plain new file would (the user's umask), or keeps the mode of the file it replaces.
    A folder that cannot be written is a CheckpointError naming it (nothing is left behind)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    except OSError as e:
        raise CheckpointError(f"cannot write {path}: {e.strerror or e} ({path.parent})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_name, stat.S_IMODE(path.stat().st_mode) if path.exists() else _new_file_mode())
        _check_safe_loadable(Path(tmp_name))
        _publish(Path(tmp_name), path, overwrite)
    except OSError as e:
        Path(tmp_name).unlink(missing_ok=True)
        raise CheckpointError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _new_file_mode() -> int:
    """0o666 less the process's umask: what open() would give a new file (mkstemp gives 0o600)."""
    return 0o666 & ~_UMASK


def clean_stale_temp_files(directory: str | Path | None = None, older_than_s: float = STALE_TEMP_SECONDS) -> int:
    """Delete the hidden temp files of saves and uploads that never finished (a process killed mid-write) under
    ``<dir>/<variant>/``, if untouched for ``older_than_s`` seconds (a save in progress keeps writing). Returns how
    many were deleted."""
    root = Path(directory or checkpoint_dir())
    now, removed = time.time(), 0
    for pattern in (f"*/.*{TEMP_SUFFIX}", f"*/.*{UPLOAD_SUFFIX}"):
        for tmp in root.glob(pattern):
            try:
                if tmp.is_file() and not tmp.is_symlink() and now - tmp.stat().st_mtime > older_than_s:
                    tmp.unlink()
                    removed += 1
            except OSError:  # gone meanwhile, or not ours to delete: leave it
                continue
    return removed


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move a finished temp file to ``path`` in one step. Without ``overwrite`` a hard link claims the name, which
    fails if another session took it meanwhile (two saves of one new name: one wins, the other is told)."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise CheckpointError(_exists_message(path)) from None
    except OSError:  # a file system without hard links: check, then replace
        if path.exists():
            raise CheckpointError(_exists_message(path)) from None
        os.replace(tmp, path)
        return
    tmp.unlink()


def _check_safe_loadable(path: Path) -> None:
    """Refuse to publish a file that the weights-only loader would reject (e.g. a str subclass slipped in)."""
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"refusing to write {path.name}: a safe load could not read it back ({first})") from e


def _check_plain(value: Any, where: str) -> None:
    if value is None or isinstance(value, bool | int | float | str | torch.Tensor):
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str | int):
                raise CheckpointError(f"metadata {where}: keys must be text or whole numbers (got {k!r})")
            _check_plain(v, f"{where}.{k}")
        return
    raise CheckpointError(f"metadata {where}: {type(value).__name__} cannot be stored safely; use numbers, text, "
                          "lists, dicts or tensors")


# -- reading ------------------------------------------------------------------------------------------------
def _read_payload(path: Path, map_location: Any = "cpu", mmap: bool = False) -> dict[str, Any]:
    """The raw dict, checked for shape and version (not yet for variant, config or weights)."""
    if not path.is_file():
        why = "not a file" if path.exists() else "no such file"
        raise CheckpointError(f"{path} is not a readable vaelab checkpoint: {why}")
    budget = budget_mb() * MB
    _check_archive(path, budget)  # before torch reads it: sizes from the zip directory, the pickle scanned
    try:
        payload = _torch_load(path, map_location, mmap)
    except Exception as e:  # a broken entry, a pickle holding objects a safe load refuses ...
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "Unsupported global" in str(e):
            reason = "it holds Python objects that a safe (weights-only) load refuses"
        elif "weights only load failed" in str(e).lower():
            reason = "its bytes are not a PyTorch file"
        raise CheckpointError(f"{path} is not a readable vaelab checkpoint ({reason[:200]})") from e
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} is not a vaelab checkpoint (it holds a {type(payload).__name__}, "
                              "not a dict)")
    try:
        check_structure(payload, budget)  # nesting, history length, tensors' sizes: before anything walks it
    except LoadLimitError as e:
        raise CheckpointError(f"{path} is refused: {e}") from None
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"{path} is not a vaelab checkpoint (missing: {', '.join(missing)})")
    version = payload["format_version"]
    if type(version) is not int or version != FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {version!r}, this vaelab reads {FORMAT_VERSION}")
    _check_meta(path, payload)
    return payload


# the metadata every reader uses (listing, Compare, eval): key -> the types it may have (None: absent)
_META_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "created": (str,), "epochs": (int,), "steps": (int,), "train_time": (int, float),
    "dataset": (dict,), "image_shape": (list, tuple), "metrics": (dict,), "versions": (dict,), "evaluation": (dict,),
}


def _check_meta(path: Path, payload: dict[str, Any]) -> None:
    """The metadata's types, so that no reader meets a number where it expects a table (CheckpointError)."""
    for key, types in _META_TYPES.items():
        value = payload.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            raise CheckpointError(f"{path}: its {key!r} is {value!r:.60}, not a "
                                  f"{' or '.join(t.__name__ for t in types)}")
    bad = None
    if any(not isinstance(v, str) for k, v in (payload.get("dataset") or {}).items() if v is not None):
        bad = "dataset", "a table of source names"
    elif any(isinstance(v, bool) or not isinstance(v, int | float) for v in (payload.get("metrics") or {}).values()):
        bad = "metrics", "a table of numbers"
    elif any(not isinstance(v, dict) for v in (payload.get("evaluation") or {}).values()):
        bad = "evaluation", "a table of results"
    elif payload.get("image_shape") is not None and not (
            len(payload["image_shape"]) == 2 and all(type(v) is int and v >= 1 for v in payload["image_shape"])):
        bad = "image_shape", "two whole numbers >= 1"
    elif negative := next((k for k in ("epochs", "steps") if type(payload.get(k)) is int and payload[k] < 0), None):
        bad = negative, "a whole number >= 0"
    if bad is not None:
        raise CheckpointError(f"{path}: its {bad[0]!r} is {payload[bad[0]]!r:.60}, not {bad[1]}")


def _check_archive(path: Path, budget: float) -> None:
    """A zip (the format torch.save writes) whose entries unpack within the memory budget, whose pickle (the
    structure around the tensors) is small, and whose pickle would build a bounded structure: scanned opcode by
    opcode, nothing built. CheckpointError saying which limit."""
    unreadable = f"{path} is not a readable vaelab checkpoint"
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
            if len(entries) > MAX_ARCHIVE_ENTRIES:
                raise CheckpointError(f"{path} is refused: it holds {len(entries):,} entries; at most "
                                      f"{MAX_ARCHIVE_ENTRIES:,} allowed")
            unpacked = sum(entry.file_size for entry in entries)
            if unpacked > budget + MAX_PICKLE_BYTES:
                raise CheckpointError(f"{path} is refused: it would unpack to {unpacked / MB:,.0f} MB, over the "
                                      f"memory budget of {budget / MB:,.0f} MB ({BUDGET_ENV_VAR})")
            pickles = [entry for entry in entries if entry.filename.rpartition("/")[2] == "data.pkl"]
            if len(pickles) != 1:
                raise CheckpointError(f"{unreadable} (its bytes are not a PyTorch file: no single data.pkl)")
            if pickles[0].file_size > MAX_PICKLE_BYTES:
                raise CheckpointError(f"{path} is refused: its structure is {pickles[0].file_size / MB:,.1f} MB; "
                                      f"at most {MAX_PICKLE_BYTES / MB:.0f} MB allowed")
            structure = archive.read(pickles[0])  # at most the size checked above
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, NotImplementedError,
            RuntimeError) as e:  # not a zip, a truncated one, an unknown compression, a bad CRC ...
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        reason = "its bytes are not a PyTorch file" if not _is_zip(path) else f"a broken archive: {first}"
        raise CheckpointError(f"{unreadable} ({reason})") from None
    try:
        scan_pickle(structure)
    except LoadLimitError as e:
        raise CheckpointError(f"{path} is refused: {e}") from None


def _torch_load(path: Path, map_location: Any, mmap: bool) -> Any:
    """torch.load, weights only. A mapped load that fails is tried once unmapped (mapping needs tensors laid out as
    torch.save lays them)."""
    if mmap:
        try:
            return torch.load(path, map_location=map_location, weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 (the unmapped load below reports what is wrong)
            pass
    return torch.load(path, map_location=map_location, weights_only=True)


def _is_zip(path: Path) -> bool:
    """zipfile.is_zipfile, which itself raises on some broken end records (a multi-disk claim)."""
    try:
        return zipfile.is_zipfile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False


def read_metadata(path: str | Path, with_history: bool = False) -> dict[str, Any]:
    """A checkpoint's metadata (config, dataset, metrics, cached evaluations ...; its history too when asked)
    without building its model; CheckpointError when the file is unreadable."""
    path = Path(path)
    payload = _read_payload(path, mmap=True)
    keep = {"history"} if with_history else set()
    return {k: v for k, v in payload.items() if k not in TENSOR_KEYS or k in keep}


def _checked_variant(path: Path, payload: dict[str, Any], expected_variant: str | None) -> str:
    variant = payload["variant"]
    if not isinstance(variant, str):
        raise CheckpointError(f"{path}: its variant is {variant!r:.60}, not a variant name")
    try:
        get_variant(variant)
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None
    if expected_variant is not None and variant != expected_variant:
        raise CheckpointError(f"{path} holds a {variant!r} model, not {expected_variant!r}")
    return variant


def _checked_config(path: Path, payload: dict[str, Any], variant: str) -> BaseConfig:
    if not isinstance(payload["config"], dict):
        raise CheckpointError(f"{path}: its config is a {type(payload['config']).__name__}, not a table of fields")
    try:
        return get_variant(variant).config_cls.from_dict(payload["config"])
    except (ConfigError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: its config is rejected: {e}") from None


def _check_weight_shapes(path: Path, payload: dict[str, Any], variant: str, config: BaseConfig) -> None:
    """The stored weights have the names and shapes the config's model needs (checked on the meta device: no
    memory, no copy of the weights)."""
    state = payload["model_state"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: the weights do not match the config (model_state is a "
                              f"{type(state).__name__}, not a dict)")
    try:
        check_budget(variant, config, payload["input_dim"], payload["n_classes"])  # before any model exists
        with torch.device("meta"):
            model = build_model(variant, config, payload["input_dim"], payload["n_classes"])
    except (ConfigError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: its config is rejected: {e}") from None
    resizable = set(model.resizable_state)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k not in resizable}
    stored = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else None for k, v in state.items()
              if k not in resizable}
    missing, unexpected = sorted(expected.keys() - stored.keys()), sorted(stored.keys() - expected.keys())
    mismatched = [k for k in expected if k in stored and stored[k] != expected[k]]
    if mismatched:
        k = mismatched[0]
        detail = f"size mismatch for {k}: stored {list(stored[k] or [])}, the config needs {list(expected[k])}"
    elif missing or unexpected:
        detail = f"missing: {', '.join(missing) or '-'}; unexpected: {', '.join(unexpected) or '-'}"
    else:
        detail = model.stored_state_problem(state) if resizable else None
        if detail is None:
            return
    raise CheckpointError(f"{path}: the weights do not match the config ({detail[:300]})")


def _check_finite_weights(path: Path, payload: dict[str, Any]) -> None:
    broken = next((k for k, v in payload["model_state"].items()
                   if isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all())),
                  None)
    if broken is not None:
        raise CheckpointError(f"{path}: the weight {broken} holds inf or nan (a diverged run)")


_NONE = type(None)
# what Trainer.state_dict writes besides model, variant, config and history: key -> (types, lowest allowed value)
_TRAINER_STATE_FIELDS: dict[str, tuple[tuple[type, ...], int | None]] = {
    "state_version": ((int,), None), "seed": ((int,), 0), "log_every": ((int,), 1), "optimizer": ((dict,), None),
    "step": ((int,), 0), "epoch": ((int,), 0), "elapsed": ((int, float), 0), "error": ((str, _NONE), None),
    "generator_state": ((torch.Tensor,), None), "rng_state": ((torch.Tensor,), None),
    "cuda_rng_state": ((torch.Tensor, _NONE), None), "permutation": ((torch.Tensor, _NONE), None),
    "position": ((int,), 0), "epoch_start_generator_state": ((torch.Tensor, _NONE), None),
}
_TRAINER_STATE_DTYPES = {"generator_state": torch.uint8, "rng_state": torch.uint8, "cuda_rng_state": torch.uint8,
                         "epoch_start_generator_state": torch.uint8, "permutation": torch.int64}
HISTORY_KINDS = ("train", "test")


def _check_trainer_state(path: Path, state: Any) -> None:
    """An empty state (a checkpoint to view, not to resume) or every field Trainer.load_state_dict reads, typed."""
    if state is None or (isinstance(state, dict) and not state):
        return
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: its trainer state is a {type(state).__name__}, not a table")
    for key, (types, low) in _TRAINER_STATE_FIELDS.items():
        if key not in state:
            raise CheckpointError(f"{path}: its trainer state has no {key!r}")
        value = state[key]
        if isinstance(value, bool) or not isinstance(value, types):
            raise CheckpointError(f"{path}: its trainer state's {key!r} is {value!r:.60}, not a "
                                  f"{' or '.join(t.__name__ for t in types)}")
        if low is not None and value < low:
            raise CheckpointError(f"{path}: its trainer state's {key!r} is {value!r}; it must be >= {low}")
        dtype = _TRAINER_STATE_DTYPES.get(key)
        if isinstance(value, torch.Tensor) and dtype is not None and (value.dtype != dtype or value.dim() != 1):
            raise CheckpointError(f"{path}: its trainer state's {key!r} is a {value.dtype} tensor of shape "
                                  f"{list(value.shape)}, not a 1-D {dtype} tensor")


def _check_history(path: Path, history: Any) -> None:
    """A list of rows: dicts with a kind ('train' or 'test'), a whole step >= 0 and numbers (or None) elsewhere."""
    if history is None:
        return
    if not isinstance(history, list):
        raise CheckpointError(f"{path}: its history is a {type(history).__name__}, not a list of rows")
    for i, row in enumerate(history):
        if not isinstance(row, dict) or row.get("kind") not in HISTORY_KINDS:
            raise CheckpointError(f"{path}: history row {i} is not a train or test row")
        if isinstance(row.get("step"), bool) or not isinstance(row.get("step"), int) or row["step"] < 0:
            raise CheckpointError(f"{path}: history row {i} has no whole step >= 0")
        bad = next((k for k, v in row.items() if k != "kind" and v is not None
                    and (isinstance(v, bool) or not isinstance(v, int | float))), None)
        if bad is not None:
            raise CheckpointError(f"{path}: history row {i}: {bad!r} is {row[bad]!r:.60}, not a number")


def load_checkpoint(path: str | Path, map_location: Any = "cpu", expected_variant: str | None = None) -> Checkpoint:
    """Read and check a checkpoint; the model comes back in eval mode."""
    path = Path(path)
    payload = _read_payload(path, map_location)
    variant = _checked_variant(path, payload, expected_variant)
    config = _checked_config(path, payload, variant)
    _check_weight_shapes(path, payload, variant, config)  # the memory budget and every shape, on the meta device
    _check_finite_weights(path, payload)
    _check_trainer_state(path, payload.get("trainer_state"))
    _check_history(path, payload.get("history"))
    try:
        model = build_model(variant, config, payload["input_dim"], payload["n_classes"])
    except (ConfigError, TypeError, ValueError, RuntimeError) as e:  # e.g. a negative input_dim
        raise CheckpointError(f"{path}: its config is rejected: {e}") from None
    try:
        model.load_state_dict(payload["model_state"])
    except (RuntimeError, KeyError, TypeError, AttributeError) as e:
        first = str(e).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else (first[0] if first else type(e).__name__)
        raise CheckpointError(f"{path}: the weights do not match the config ({detail[:300]})") from None
    if isinstance(map_location, str | torch.device):
        model.to(map_location)
    model.eval()
    meta = {k: v for k, v in payload.items() if k not in TENSOR_KEYS}
    return Checkpoint(path=path, variant=variant, config=config, model=model, meta=meta,
                      history=list(payload.get("history") or []), trainer_state=payload.get("trainer_state") or {})


def restore_trainer(ckpt: Checkpoint, data: DataBundle, device: str = "cpu") -> Trainer:
    """A Trainer that continues exactly where the checkpoint's run stopped (needs the same training data)."""
    state = ckpt.trainer_state
    if not state:
        raise CheckpointError(f"{ckpt.path} holds no trainer state to resume from")
    if data.input_dim != ckpt.meta["input_dim"]:
        raise CheckpointError(f"{ckpt.path} was trained on images of {ckpt.meta['input_dim']} pixels; this data "
                              f"has {data.input_dim}")
    trainer = Trainer(ckpt.variant, ckpt.config, data, seed=state["seed"], device=device,
                      log_every=state["log_every"])
    full = {**state, "variant": ckpt.variant, "config": ckpt.config.to_dict(), "history": ckpt.history,
            "model": ckpt.model.state_dict()}
    try:
        trainer.load_state_dict(full)
    except (ValueError, KeyError, RuntimeError, TypeError, IndexError) as e:
        raise CheckpointError(f"{ckpt.path}: cannot resume training: {e}") from None
    return trainer


def list_checkpoints(directory: str | Path | None = None, variant: str | None = None) -> list[CheckpointInfo]:
    """Every ``<dir>/<variant>/*.pt``, sorted by variant and name. Broken files are listed with ``error`` set
    (and a warning), never raised."""
    root = Path(directory or checkpoint_dir())
    paths = sorted(root.glob(f"{variant}/*.pt" if variant else "*/*.pt"))
    return [_info(p) for p in paths if _inside(p, root)]


def _inside(path: Path, root: Path) -> bool:
    """A real file of the checkpoint folder: not a symbolic link, not reached through one, not leading outside."""
    return not path.is_symlink() and not path.parent.is_symlink() and root.resolve() in path.resolve().parents


def _info(path: Path) -> CheckpointInfo:
    try:
        payload = _read_payload(path, mmap=True)
        folder = path.parent.name
        variant = _checked_variant(path, payload, folder if folder in VARIANTS else None)
        _check_weight_shapes(path, payload, variant, _checked_config(path, payload, variant))
        _check_finite_weights(path, payload)
        tests = payload.get("metrics") or {}
        loss = tests.get("total")
        return CheckpointInfo(path=path, name=path.stem, variant=variant,  # the file name (a copy may be renamed)
                              dataset=payload.get("dataset"), epochs=payload.get("epochs"),
                              test_loss=None if loss is None else float(loss), created=payload.get("created"))
    except Exception as e:  # listing never fails because of one file
        message = str(e) if isinstance(e, CheckpointError) else f"{path}: unreadable metadata ({e})"
        warnings.warn(f"skipping a broken checkpoint: {message}", stacklevel=3)
        return CheckpointInfo(path=path, name=path.stem, variant=path.parent.name, dataset=None, epochs=None,
                              test_loss=None, created=None, error=message)


# -- upload and download --------------------------------------------------------------------------------------
def import_checkpoint(data: bytes, filename: str, variant: str, directory: str | Path | None = None,
                      overwrite: bool = False, max_mb: float = MAX_UPLOAD_MB) -> Path:
    """Store uploaded bytes as ``<dir>/<variant>/<name>.pt`` after checking them like any checkpoint.

    The name comes from ``filename`` (sanitised: no separators or '..'). The bytes go to a temp file next to the
    target, are read back only with the weights-only loader (``load_checkpoint(expected_variant=variant)``, so a
    pickle that would run code is refused without running), then published atomically. Raises CheckpointError
    saying why; nothing is left behind then."""
    if not isinstance(data, bytes | bytearray):
        raise CheckpointError(f"upload {filename!r}: expected bytes (got {type(data).__name__})")
    limit = int(max_mb * 1024 * 1024)
    if len(data) > limit:
        raise CheckpointError(f"upload {filename!r} is {len(data) / 2**20:.1f} MB; at most {max_mb:g} MB allowed")
    if not data:
        raise CheckpointError(f"upload {filename!r} is empty")
    path = checkpoint_path(variant, filename, directory)
    if path.exists() and not overwrite:
        raise CheckpointError(_exists_message(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=UPLOAD_SUFFIX)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            _check_unpacked_size(tmp, limit * MAX_UNPACKED_FACTOR)
            load_checkpoint(tmp, expected_variant=variant)
        except CheckpointError as e:
            raise CheckpointError(str(e).replace(str(tmp), f"upload {filename!r}")) from None
        os.chmod(tmp, _new_file_mode())
        _publish(tmp, path, overwrite)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _check_unpacked_size(path: Path, limit: int) -> None:
    """Refuse a zip (torch's format) whose entries would unpack to more than ``limit`` bytes (a zip bomb)."""
    if not _is_zip(path):
        return  # torch's legacy format is one pickle stream: its size is the file's size
    try:
        with zipfile.ZipFile(path) as archive:
            total = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as e:
        raise CheckpointError(f"{path} is not a readable vaelab checkpoint ({e})") from None
    if total > limit:
        raise CheckpointError(f"{path} would unpack to {total / 2**20:.0f} MB; at most {limit / 2**20:.0f} MB "
                              "allowed")


def checkpoint_bytes(path: str | Path, directory: str | Path | None = None) -> bytes:
    """The bytes of a listed checkpoint (for a download); only ``*.pt`` files inside the checkpoint folder."""
    root = Path(directory or checkpoint_dir()).resolve()
    target = Path(path).resolve()
    if target.suffix != ".pt" or root not in target.parents or not target.is_file():
        raise CheckpointError(f"{path} is not a checkpoint file in {root}")
    return target.read_bytes()
