"""Limits on what loading a file may build, checked before it is built: a checkpoint's pickle is scanned opcode by
opcode (nothing is created) and the loaded structure is walked without recursion.

    scan_pickle(data)                 # LoadLimitError: too many objects, a stack too deep, a malformed stream
    check_structure(payload, budget)  # LoadLimitError: nesting too deep, a history too long, tensors too large

The limits are generous for anything vaelab writes (a history of MAX_HISTORY_ROWS rows is hundreds of epochs at the
default logging) and small against the memory budget. Torch-free: ``torch.Tensor`` is recognised by duck typing, so
this module costs nothing to import.
"""

from __future__ import annotations

import pickletools
from dataclasses import dataclass
from typing import Any

MAX_PICKLE_BYTES = 8 * 2**20  # the pickle of a checkpoint: its structure (the tensors are stored beside it)
MAX_PICKLE_OPS = 1_000_000  # opcodes in that pickle: each creates at most one object
MAX_PICKLE_STACK = 5_000  # the unpickler's stack (a flat list pushes 1,000 items at a time; nesting pushes more)
MAX_DEPTH = 32  # containers inside containers in the loaded payload (vaelab writes at most 6)
MAX_HISTORY_ROWS = 20_000  # rows of a run's history (the trainer thins older train rows to stay below it)
MAX_ROW_FIELDS = 64  # fields of one history row


class LoadLimitError(ValueError):
    """A file would build more than a load may: the message says which limit and by how much."""


@dataclass(frozen=True)
class PickleScan:
    ops: int  # opcodes read
    max_stack: int  # the deepest the unpickler's stack would go (items and marks)


def scan_pickle(data: bytes, max_ops: int = MAX_PICKLE_OPS, max_stack: int = MAX_PICKLE_STACK) -> PickleScan:
    """Walk a pickle stream's opcodes without running them: the number of opcodes and the unpickler's stack depth
    are bounded, and a malformed stream is refused. Stops at the first limit passed (its cost is bounded too)."""
    if len(data) > MAX_PICKLE_BYTES:
        raise LoadLimitError(f"its structure is {len(data) / 2**20:,.1f} MB; at most {MAX_PICKLE_BYTES / 2**20:.0f} "
                             "MB allowed")
    depth, marks, ops, deepest = 0, [], 0, 0
    try:
        for op, _arg, _pos in pickletools.genops(data):
            ops += 1
            if ops > max_ops:
                raise LoadLimitError(f"it would build more than {max_ops:,} objects (a history or table far "
                                     f"longer than any run writes)")
            before, after = op.stack_before, op.stack_after
            if op.name == "MARK":
                marks.append(depth)
            elif pickletools.markobject in before:  # APPENDS, SETITEMS, TUPLE, ...: pop to the last mark
                if not marks:
                    raise LoadLimitError("its structure is malformed (a pop to a mark with no mark)")
                depth = marks.pop() - before.index(pickletools.markobject) + len(after)
            elif op.name == "POP" and marks and marks[-1] == depth:
                marks.pop()
            else:
                depth += len(after) - len(before)
            if depth < 0:
                raise LoadLimitError("its structure is malformed (it pops more than it pushed)")
            deepest = max(deepest, depth + len(marks))
            if deepest > max_stack:
                raise LoadLimitError(f"its structure nests deeper than a load allows (more than {max_stack:,} "
                                     "levels open at once)")
    except LoadLimitError:
        raise
    except Exception as e:  # genops: an unknown opcode, a truncated argument, no STOP
        raise LoadLimitError(f"its structure is malformed ({str(e).strip()[:120] or type(e).__name__})") from None
    return PickleScan(ops, deepest)


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "element_size") and hasattr(value, "shape")


def tensor_bytes(value: Any) -> int:
    """Bytes a tensor's values take once materialised: its shape's count, not its storage (an expanded view of one
    number may claim a billion)."""
    count = 1
    for size in value.shape:
        count *= int(size)
    return count * int(value.element_size())


def check_structure(payload: Any, budget_bytes: float, max_depth: int = MAX_DEPTH) -> int:
    """Walk a loaded payload without recursion: nesting at most ``max_depth``, every list or dict named
    ``history`` at most MAX_HISTORY_ROWS rows of at most MAX_ROW_FIELDS fields, and the tensors' bytes together
    within ``budget_bytes``. Returns those bytes."""
    total = 0
    pending: list[tuple[Any, int, str]] = [(payload, 0, "")]
    while pending:
        value, depth, where = pending.pop()
        if _is_tensor(value):
            total += tensor_bytes(value)
            if total > budget_bytes:
                raise LoadLimitError(f"its tensors would take more than {budget_bytes / 2**20:,.0f} MB (the memory "
                                     f"budget, VAELAB_MEMORY_BUDGET_MB); {where or 'a tensor'} has shape "
                                     f"{list(value.shape)}")
            continue
        if not isinstance(value, dict | list | tuple):
            continue
        if depth >= max_depth:
            raise LoadLimitError(f"its structure nests more than {max_depth} levels deep (at {where or 'the top'})")
        if where == "history" and isinstance(value, list):
            _check_history_size(value)
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(item, dict | list | tuple) or _is_tensor(item):
                name = str(key) if depth == 0 else f"{where}[{key!r}]"
                pending.append((item, depth + 1, name[:80]))
    return total


def _check_history_size(rows: list) -> None:
    if len(rows) > MAX_HISTORY_ROWS:
        raise LoadLimitError(f"its history has {len(rows):,} rows; at most {MAX_HISTORY_ROWS:,} allowed")
    wide = next((i for i, row in enumerate(rows) if isinstance(row, dict) and len(row) > MAX_ROW_FIELDS), None)
    if wide is not None:
        raise LoadLimitError(f"its history row {wide} has {len(rows[wide]):,} fields; at most {MAX_ROW_FIELDS} "
                             "allowed")


def thinned_history(rows: list[dict], max_rows: int = MAX_HISTORY_ROWS) -> list[dict]:
    """At most ``max_rows`` rows, so that every saved run loads again: every test row, and the train rows evenly
    spaced (the first and the last kept), in their order."""
    if len(rows) <= max_rows:
        return rows
    train = [i for i, row in enumerate(rows) if row.get("kind") == "train"]
    room = max(2, max_rows - (len(rows) - len(train)))
    kept = {train[round(j * (len(train) - 1) / (room - 1))] for j in range(room)}
    return [row for i, row in enumerate(rows) if row.get("kind") != "train" or i in kept]
