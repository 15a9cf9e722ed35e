"""Hyper-parameter widgets generated from a variant's config dataclass (labels, ranges, help, choices, presets).

No page writes its own hyper-parameter widgets: a page calls :func:`config_form` (the training panel does), and
may pass ``defaults`` (its own starting values) or ``fixed`` (values it controls with its own widgets; those
fields are not shown). Widget values live in ``st.session_state`` under ``<key_prefix>.<field>`` and persist
across page switches.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from collections.abc import Mapping
from typing import Any

import streamlit as st

from vaelab.config import BaseConfig, ConfigError, FieldInfo, field_info, field_types, parse_value
from vaelab.variants import get_variant

GROUPS = (("model", "Model"), ("training", "Training"))


def default_prefix(variant_key: str) -> str:
    return f"cfg.{variant_key}"


def widget_key(key_prefix: str, field_name: str) -> str:
    return f"{key_prefix}.{field_name}"


def form_container_key(key_prefix: str) -> str:
    """The key of the container around a form's widgets (its element's CSS class is ``st-key-<key>``)."""
    return "vaelab-form-" + re.sub(r"[^A-Za-z0-9_-]", "-", key_prefix)


def _is_tuple(kind: Any) -> bool:
    return typing.get_origin(kind) is tuple


def to_widget_value(kind: Any, value: Any) -> Any:
    """A config value as its widget holds it (tuples as "400,200" text)."""
    if _is_tuple(kind):
        return ",".join(str(v) for v in value)
    if kind is float:
        return float(value)
    if kind is int and not isinstance(value, bool):
        return int(value)
    return value


def starting_values(cls: type[BaseConfig], preset: str | None, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Class defaults, then the page's defaults, then the preset (a preset is a deliberate choice)."""
    values = cls.from_preset(None, **defaults).to_dict()
    if preset is not None:
        values.update(cls.PRESETS[preset])
    return values


def set_form_values(variant_key: str, values: BaseConfig | Mapping[str, Any], key_prefix: str | None = None) -> None:
    """Put config values into the form's widgets. Call it from a widget callback or before the form is drawn."""
    prefix = key_prefix or default_prefix(variant_key)
    cls = get_variant(variant_key).config_cls
    types = field_types(cls)
    items = values.to_dict() if isinstance(values, BaseConfig) else dict(values)
    for f in dataclasses.fields(cls):
        if f.name in items:
            st.session_state[widget_key(prefix, f.name)] = to_widget_value(types[f.name], items[f.name])


def _apply_preset(variant_key: str, prefix: str, defaults: Mapping[str, Any]) -> None:
    cls = get_variant(variant_key).config_cls
    preset = st.session_state[widget_key(prefix, "_preset")]
    set_form_values(variant_key, starting_values(cls, preset, defaults), prefix)


def _help(info: FieldInfo, kind: Any) -> str:
    allowed = "" if kind is bool else f" Allowed: {info.range_text()}."
    return f"{info.help}{allowed}"


def _float_step(class_default: float) -> float:
    """A step of the order of the field's default (0.001 for lr=1e-3), stable across runs."""
    if class_default == 0 or not math.isfinite(class_default):
        return 0.1
    return 10.0 ** math.floor(math.log10(abs(class_default)))


def _widget(f: dataclasses.Field, kind: Any, key: str, disabled: bool) -> Any:
    """Draw one field's widget; returns its raw value (text for tuples)."""
    info = field_info(f)
    common = {"key": key, "help": _help(info, kind), "disabled": disabled, "persist_state": "session"}
    if kind is bool:
        return st.checkbox(info.label, **common)
    if kind is str and info.choices is not None:
        return st.selectbox(info.label, list(info.choices), **common)
    # No min/max on the number inputs: the browser would silently keep the old value for one out of range (and
    # show the old value's message); the typed value reaches validation, which names the field and its range.
    if kind is int:
        return st.number_input(info.label, step=1, **common)
    if kind is float:
        step = _float_step(float(f.default)) if isinstance(f.default, int | float) else 0.1
        return st.number_input(info.label, step=step, format="%g", **common)
    placeholder = "e.g. 400,200" if _is_tuple(kind) else None
    return st.text_input(info.label, placeholder=placeholder, **common)


def _group_of(f: dataclasses.Field) -> str:
    group = field_info(f).group
    return group if group in dict(GROUPS) else "model"


def error_markdown(cls: type[BaseConfig], error: ConfigError, labels: Mapping[str, str] | None = None) -> str:
    """'**Label** (`field`): what is wrong', the message the form (and a link with a bad value) shows.

    ``labels`` names fields that are not the config's own (a link's ``seed``, ``preset``...)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    name = error.field_name
    label = field_info(fields[name]).label if name in fields else (labels or {}).get(name, name)
    message = str(error).removeprefix(f"{name}: ")
    return f"**{label}** (`{name}`): {message}"


def _report(cls: type[BaseConfig], error: ConfigError) -> None:
    st.error(error_markdown(cls, error), icon=":material/error:")


def config_form(variant_key: str, key_prefix: str | None = None, *, defaults: Mapping[str, Any] | None = None,
                fixed: Mapping[str, Any] | None = None, disabled: bool = False) -> BaseConfig | None:
    """Draw the variant's config widgets (preset picker, then Model and Training columns); return the config.

    defaults: starting values the page prefers (the user can change them; a preset overrides them).
    fixed: values the page sets itself (its own widgets); these fields get no widget.
    disabled: show the values read-only (e.g. while a run is in progress).
    Returns None (after an ``st.error`` naming the field) when a value is not allowed."""
    cls = get_variant(variant_key).config_cls
    prefix = key_prefix or default_prefix(variant_key)
    defaults = dict(defaults or {})
    fixed = dict(fixed or {})
    types = field_types(cls)
    presets = list(cls.PRESETS)

    preset_key = widget_key(prefix, "_preset")
    if presets and preset_key not in st.session_state:
        st.session_state[preset_key] = presets[0]
    first_preset = st.session_state.get(preset_key)
    start = starting_values(cls, first_preset, defaults)
    for f in dataclasses.fields(cls):  # first visit: fill the widgets (later visits keep the user's values)
        key = widget_key(prefix, f.name)
        if f.name not in fixed and key not in st.session_state:
            st.session_state[key] = to_widget_value(types[f.name], start[f.name])

    raw: dict[str, Any] = {}
    with st.container(key=form_container_key(prefix)):  # the presenter view hides the form by this key
        if presets:
            st.selectbox("Preset", presets, key=preset_key, disabled=disabled, persist_state="session",
                         on_change=_apply_preset, args=(variant_key, prefix, defaults),
                         help="Fills in every field below with the preset's values; edit them afterwards.")
            note = cls.PRESET_NOTES.get(st.session_state.get(preset_key), "")
            if note:
                st.caption(note)

        columns = st.columns(len(GROUPS))
        for (group, title), column in zip(GROUPS, columns, strict=True):
            group_fields = [f for f in dataclasses.fields(cls)
                            if _group_of(f) == group and f.name not in fixed]
            with column:
                st.markdown(f"**{title}**")
                for f in group_fields:
                    raw[f.name] = _widget(f, types[f.name], widget_key(prefix, f.name), disabled)

    try:
        values = {name: parse_value(cls, name, value) if _is_tuple(types[name]) else value
                  for name, value in raw.items()}
        values = {name: to_widget_value(types[name], v) if types[name] in (int, float) else v
                  for name, v in values.items()}
        return cls(**values, **fixed)
    except ConfigError as error:
        _report(cls, error)
        return None
