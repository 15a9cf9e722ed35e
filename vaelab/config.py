"""Config fields that carry their own label, range and help, and the one place they are validated.

Every variant config is a dataclass built from :func:`param` fields. The metadata drives the UI form,
the CLI ``--set field=value`` parser and validation, so all three reject the same values with the
same message (which names the field and its allowed range).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar


class ConfigError(ValueError):
    """A config value (or preset, variant, dataset name) is not allowed. The message names the field."""

    def __init__(self, field_name: str, message: str):
        self.field_name = field_name
        super().__init__(f"{field_name}: {message}")


@dataclass(frozen=True)
class FieldInfo:
    label: str
    help: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: the bound itself is not allowed
    high_open: bool = False
    choices: tuple[str, ...] | None = None
    group: str = "model"  # "model" or "training": how the form groups the widgets

    def range_text(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        lo = "-inf" if self.low is None else _fmt(self.low)
        hi = "inf" if self.high is None else _fmt(self.high)
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        return f"{left}{lo}, {hi}{right}"


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"


def param(
    default: Any,
    *,
    label: str,
    help: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    choices: tuple[str, ...] | None = None,
    group: str = "model",
) -> Any:
    """A dataclass field with metadata for forms, CLI flags and validation."""
    info = FieldInfo(label, help, low, high, low_open, high_open, choices, group)
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"info": info})
    return field(default=default, metadata={"info": info})


def redefault(cls: type, name: str, default: Any) -> Any:
    """The field ``name`` of config class ``cls`` with a new default and the same label, range and help."""
    (f,) = [f for f in dataclasses.fields(cls) if f.name == name]
    return field(default=default, metadata=f.metadata)


def field_info(f: dataclasses.Field) -> FieldInfo:
    return f.metadata.get("info") or FieldInfo(label=f.name, help="")


def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check_number(name: str, value: Any, kind: type, info: FieldInfo) -> None:
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(name, f"must be a whole number in {info.range_text()} (got {value!r})")
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(name, f"must be a number in {info.range_text()} (got {value!r})")
    if not math.isfinite(float(value)):
        raise ConfigError(name, f"must be finite, in {info.range_text()} (got {value!r})")
    lo_bad = info.low is not None and (value <= info.low if info.low_open else value < info.low)
    hi_bad = info.high is not None and (value >= info.high if info.high_open else value > info.high)
    if lo_bad or hi_bad:
        raise ConfigError(name, f"must be in {info.range_text()} (got {_fmt(float(value))})")


def validate_fields(cfg: Any) -> None:
    """Check every field of a config dataclass against its type and metadata."""
    types = field_types(type(cfg))
    for f in dataclasses.fields(cfg):
        info = field_info(f)
        value = getattr(cfg, f.name)
        kind = types[f.name]
        if kind is bool:
            if not isinstance(value, bool):
                raise ConfigError(f.name, f"must be true or false (got {value!r})")
        elif kind in (int, float):
            _check_number(f.name, value, kind, info)
        elif kind is str:
            if not isinstance(value, str):
                raise ConfigError(f.name, f"must be text (got {value!r})")
            if info.choices is not None and value not in info.choices:
                raise ConfigError(f.name, f"must be {info.range_text()} (got {value!r})")
        elif typing.get_origin(kind) is tuple:
            if not isinstance(value, tuple | list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            ):
                raise ConfigError(f.name, f"must be a list of whole numbers like 400,200 (got {value!r})")
            for v in value:
                _check_number(f.name, v, int, info)


def parse_value(cls: type, name: str, text: str) -> Any:
    """Turn the text a user typed (CLI ``--set`` or a text box) into the field's type."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        raise ConfigError(name, "unknown field; allowed: " + ", ".join(sorted(fields)))
    kind = field_types(cls)[name]
    info = field_info(fields[name])
    text = text.strip()
    try:
        if kind is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if typing.get_origin(kind) is tuple:
            return tuple(int(p) for p in text.replace(" ", "").split(",") if p)
        return text
    except ValueError:
        raise ConfigError(name, f"cannot read {text!r}; expected {_kind_name(kind)} in {info.range_text()}") from None


def _kind_name(kind: Any) -> str:
    if typing.get_origin(kind) is tuple:
        return "a comma-separated list of whole numbers"
    return {bool: "true/false", int: "a whole number", float: "a number", str: "text"}.get(kind, str(kind))


@dataclass
class BaseConfig:
    """Training settings shared by every variant. Subclasses add the model's own fields."""

    lr: float = param(
        1e-3, label="Learning rate", help="Adam step size.", low=0.0, high=10.0, low_open=True, group="training"
    )
    batch_size: int = param(100, label="Batch size", help="Images per step.", low=1, high=10000, group="training")
    epochs: int = param(10, label="Epochs", help="Passes over the training set.", low=1, high=10000, group="training")
    weight_decay: float = param(
        0.0, label="Weight decay",
        help="Adam's L2 weight decay on the weight matrices (not the biases): each step adds weight_decay * W to "
             "the gradient of every W, the gradient of (weight_decay / 2) ||W||^2. Pulls weights no image uses "
             "(e.g. to always-blank border pixels) to 0, so filters show clean strokes; 0 turns it off.",
        low=0.0, high=1.0, group="training")
    binarize: str = param(
        "none",
        label="Binarisation",
        help="none: grey levels as targets; static: threshold 0.5 once; dynamic: a fresh Bernoulli draw per epoch.",
        choices=("none", "static", "dynamic"),
        group="training",
    )

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    # what each preset is for, shown under the preset picker; a preset named after a course figure says which
    PRESET_NOTES: ClassVar[dict[str, str]] = {}

    def __post_init__(self) -> None:
        validate_fields(self)
        self.check()

    def check(self) -> None:
        """Cross-field rules (override in a variant; raise ConfigError naming the field)."""

    @classmethod
    def from_preset(cls, preset: str | None = None, **overrides: Any):
        values: dict[str, Any] = {}
        if preset is not None:
            if preset not in cls.PRESETS:
                allowed = ", ".join(cls.PRESETS) or "(none)"
                raise ConfigError("preset", f"unknown preset {preset!r}; allowed: {allowed}")
            values.update(cls.PRESETS[preset])
        known = {f.name for f in dataclasses.fields(cls)}
        for name in overrides:
            if name not in known:
                raise ConfigError(name, "unknown field; allowed: " + ", ".join(sorted(known)))
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        """Rebuild from ``asdict`` output (e.g. a checkpoint); lists become tuples where the field is a tuple."""
        types = field_types(cls)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(sorted(unknown)[0], "unknown field for " + cls.__name__)
        fixed = {k: tuple(v) if typing.get_origin(types[k]) is tuple and isinstance(v, list) else v
                 for k, v in values.items()}
        return cls(**fixed)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def replace(self, **changes: Any):
        return self.from_dict({**self.to_dict(), **changes})
