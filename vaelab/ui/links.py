"""Links that reproduce a page: ``/vae?preset=lecture&beta=4.0&seed=3&dataset=mnist-5k``.

The URL's path is the page; its query holds the preset, every field whose value differs from the preset's, the seed
and the dataset, ``present=1`` for the presenter view and ``checkpoint=<name>`` for a saved model to load. A variant
page's address bar always shows its link (:func:`sync_address_bar`, each run) and "Copy link" shows it whole.

Opening a link (a session's first run) fills the form, the sidebar's seed and dataset and the view before they are
drawn (:func:`apply_link`). Each value is checked as the form checks it: a bad one (unknown field or preset, wrong
type, out of range) is reported with the form's message naming the field and its allowed range, and the rest of the
link applies. The server's boot id (``server``, :mod:`vaelab.ui.restart`) and the tab's private run token (``run``,
:mod:`vaelab.ui.run_store`) are in the address bar but never in a link.

The pure half (:func:`link_params`, :func:`read_link`, :func:`form_values`) works on plain mappings; the rest reads
and writes ``st.session_state`` and ``st.query_params``.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import streamlit as st

from vaelab.config import BaseConfig, ConfigError, field_types, parse_value
from vaelab.ui import presenter
from vaelab.ui.config_form import default_prefix, error_markdown, starting_values, to_widget_value, widget_key
from vaelab.ui.restart import PARAM as SERVER_PARAM
from vaelab.ui.run_store import RUN_PARAM

PRESET, SEED, DATASET, PRESENT, CHECKPOINT = "preset", "seed", "dataset", "present", "checkpoint"
SETTING_LABELS = {PRESET: "Preset", SEED: "Seed", DATASET: "Dataset", PRESENT: "Presenter view",
                  CHECKPOINT: "Checkpoint"}
IGNORED = frozenset({SERVER_PARAM, RUN_PARAM})  # in the address bar, never in a link (the run's token is private)
SIDEBAR_CHOICE = "vaelab.choice.{}"  # the sidebar keeps its seed and dataset here (vaelab/ui/sidebar.py _remembered)
SIDEBAR_WIDGET = "vaelab.{}"  # ... and its widgets hold this run's choice under these keys

APPLIED_KEY = "vaelab.link.applied"
ERRORS_KEY = "vaelab.link.errors"
PENDING_CHECKPOINT_KEY = "vaelab.link.checkpoint"
DISMISS_KEY = "vaelab.link.dismiss"


@dataclass(frozen=True)
class PageWidget:
    """A config field a page draws with its own widget under its own key (not the form's), and that widget's range.

    The form leaves such a field to the page (``fixed``); a link reads and fills the page's widget."""

    key: str
    low: float | None = None
    high: float | None = None


PAGE_WIDGETS: dict[str, dict[str, PageWidget]] = {
    "ae-gmm": {"n_components": PageWidget("ae_gmm.n_components", 1, 30),  # pages/ae_gmm.py mixture_controls
               "covariance_type": PageWidget("ae_gmm.covariance_type")},
}


def _config_cls(variant: str) -> type[BaseConfig]:
    from vaelab.variants import get_variant

    return get_variant(variant).config_cls


def _is_tuple(kind: Any) -> bool:
    return typing.get_origin(kind) is tuple


def value_text(value: Any) -> str:
    """A config value as a link writes it: floats exactly (repr), lists as 400,200, booleans as true / false."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def _same(a: Any, b: Any) -> bool:
    """Equal as config values (a list and a tuple of the same numbers are the same hidden sizes)."""
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return list(a) == list(b)
    return a == b


# -- the form's values -------------------------------------------------------------------------------------------
def _widget_to_value(kind: Any, raw: Any) -> Any:
    """A widget's value as a config value (the text of a tuple field parsed; text that does not parse stays text)."""
    if _is_tuple(kind) and isinstance(raw, str):
        try:
            return tuple(int(p) for p in raw.replace(" ", "").split(",") if p)
        except ValueError:
            return raw
    return raw


def form_values(variant: str, state: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(preset, {field: value}) as the page's widgets hold them in ``state`` (``st.session_state``); a field no
    widget holds yet has the preset's value (the form fills it so on its first drawing)."""
    cls = _config_cls(variant)
    prefix = default_prefix(variant)
    presets = list(cls.PRESETS)
    preset = state.get(widget_key(prefix, "_preset"), presets[0] if presets else None)
    start = starting_values(cls, preset if preset in cls.PRESETS else None, {})
    types = field_types(cls)
    values: dict[str, Any] = {}
    page_widgets = PAGE_WIDGETS.get(variant, {})
    for f in dataclasses.fields(cls):
        keys = [page_widgets[f.name].key] if f.name in page_widgets else []
        keys.append(widget_key(prefix, f.name))
        key = next((k for k in keys if k in state), None)
        values[f.name] = start[f.name] if key is None else _widget_to_value(types[f.name], state[key])
    return preset, values


def link_params(variant: str | None, preset: str | None = None, values: Mapping[str, Any] | None = None, *,
                seed: int | None = None, dataset: str | None = None, present: bool = False,
                checkpoint: str | None = None) -> dict[str, str]:
    """The query of a page's link: the preset, the fields that differ from it, seed, dataset, view, checkpoint."""
    params: dict[str, str] = {}
    if variant is not None and values is not None:
        cls = _config_cls(variant)
        if preset is not None:
            params[PRESET] = preset
        start = starting_values(cls, preset if preset in cls.PRESETS else None, {})
        for f in dataclasses.fields(cls):
            if f.name in values and not _same(values[f.name], start[f.name]):
                params[f.name] = value_text(values[f.name])
    if seed is not None:
        params[SEED] = str(int(seed))
    if dataset is not None:
        params[DATASET] = dataset
    if present:
        params[PRESENT] = "1"
    if checkpoint:
        params[CHECKPOINT] = checkpoint
    return params


# -- reading a link ------------------------------------------------------------------------------------------------
@dataclass
class Link:
    """What a link asks for, each value checked; ``errors`` holds the form's message for each value left out."""

    preset: str | None = None
    values: dict[str, Any] = field(default_factory=dict)  # every config field: the preset's, then the link's
    fields_given: bool = False  # the link names a preset or a field (else the form keeps its own start)
    seed: int | None = None
    dataset: str | None = None
    present: bool | None = None
    checkpoint: str | None = None
    errors: list[str] = field(default_factory=list)


def _message(cls: type[BaseConfig] | None, error: ConfigError) -> str:
    return error_markdown(cls or BaseConfig, error, SETTING_LABELS)


def _read_seed(text: str, max_seed: int) -> int:
    allowed = f"[0, {max_seed}]"
    try:
        seed = int(text.strip())
    except ValueError:
        raise ConfigError(SEED, f"cannot read {text!r}; expected a whole number in {allowed}") from None
    if not 0 <= seed <= max_seed:
        raise ConfigError(SEED, f"must be in {allowed} (got {seed})")
    return seed


def _read_choice(name: str, text: str, choices: Sequence[str]) -> str:
    if text not in choices:
        raise ConfigError(name, f"must be one of {', '.join(repr(c) for c in choices)} (got {text!r})")
    return text


def _read_flag(name: str, text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(name, f"cannot read {text!r}; expected 1 (on) or 0 (off)")


def _read_checkpoint(text: str) -> str:
    from vaelab.checkpoints import CheckpointError, sanitize_name  # imports torch: only when a link names one

    try:
        return sanitize_name(text)
    except CheckpointError as error:
        raise ConfigError(CHECKPOINT, str(error)) from None


def _page_widget_check(variant: str, name: str, value: Any) -> None:
    widget = PAGE_WIDGETS.get(variant, {}).get(name)
    if widget is None or widget.low is None or widget.high is None:
        return
    if not widget.low <= value <= widget.high:
        raise ConfigError(name, f"this page's control allows [{widget.low:g}, {widget.high:g}] (got {value})")


def _read_fields(variant: str, params: Mapping[str, str], link: Link) -> None:
    """The preset, then each field in the config's order (so cross-field rules see the link's earlier fields)."""
    cls = _config_cls(variant)
    presets = list(cls.PRESETS)
    link.preset = presets[0] if presets else None
    if PRESET in params:
        link.fields_given = True
        try:
            link.preset = _read_choice(PRESET, params[PRESET], presets)
        except ConfigError as error:
            link.errors.append(_message(cls, error))
    accepted = cls.from_dict(starting_values(cls, link.preset, {})).to_dict()
    known = {f.name for f in dataclasses.fields(cls)}
    settings = set(SETTING_LABELS) | IGNORED
    for name in params:
        if name not in known and name not in settings:
            allowed = ", ".join(sorted(known | set(SETTING_LABELS)))
            link.errors.append(_message(cls, ConfigError(name, f"unknown field; allowed: {allowed}")))
    for f in dataclasses.fields(cls):
        if f.name not in params:
            continue
        link.fields_given = True
        try:
            value = parse_value(cls, f.name, params[f.name])
            cls.from_dict({**accepted, f.name: value})  # the form's checks: type, range, choices, cross-field rules
            _page_widget_check(variant, f.name, value)
        except ConfigError as error:
            link.errors.append(_message(cls, error))
        else:
            accepted[f.name] = value
    link.values = cls.from_dict(accepted).to_dict()


def read_link(variant: str | None, params: Mapping[str, str], datasets: Sequence[str] = (),
              max_seed: int = 2**31 - 1) -> Link:
    """Check a link's query for the page of ``variant`` (None: a page without a form, e.g. Home)."""
    link = Link()
    params = {k: v for k, v in params.items() if k not in IGNORED}
    cls = _config_cls(variant) if variant is not None else None
    if variant is not None:
        _read_fields(variant, params, link)
    else:
        for name in params:
            if name not in (SEED, DATASET, PRESENT):
                link.errors.append(_message(None, ConfigError(
                    name, f"this page has no settings form; a link to it may hold {SEED}, {DATASET}, {PRESENT}")))
    readers = {SEED: lambda t: _read_seed(t, max_seed), DATASET: lambda t: _read_choice(DATASET, t, datasets),
               PRESENT: lambda t: _read_flag(PRESENT, t), CHECKPOINT: _read_checkpoint}
    for name, read in readers.items():
        if name not in params or (name == CHECKPOINT and variant is None):
            continue
        try:
            setattr(link, name, read(params[name]))
        except ConfigError as error:
            link.errors.append(_message(cls, error))
    return link


# -- in the app ------------------------------------------------------------------------------------------------------
def _sidebar_limits() -> tuple[list[str], int]:
    from vaelab.ui.sidebar import DATASETS, MAX_SEED, default_dataset  # imports torch: variant pages only

    default = default_dataset()
    return (list(DATASETS) if default in DATASETS else [default, *DATASETS]), MAX_SEED


def _query() -> dict[str, str]:
    return {name: st.query_params[name] for name in st.query_params}  # the last value of a repeated name


def _fill_form(variant: str, link: Link) -> None:
    from vaelab.ui.config_form import set_form_values

    prefix = default_prefix(variant)
    if link.preset is not None:
        st.session_state[widget_key(prefix, "_preset")] = link.preset
    set_form_values(variant, link.values, prefix)
    types = field_types(_config_cls(variant))
    for name, widget in PAGE_WIDGETS.get(variant, {}).items():
        st.session_state[widget.key] = to_widget_value(types[name], link.values[name])


def apply_link(variant: str | None) -> None:
    """Call before the sidebar and the page: on a session's first run, fill the form, the seed and dataset and the
    view from the URL, keep a named checkpoint for :func:`load_linked_checkpoint` and the messages for
    :func:`show_link_errors`."""
    if APPLIED_KEY in st.session_state:
        return
    st.session_state[APPLIED_KEY] = True
    params = {k: v for k, v in _query().items() if k not in IGNORED}
    if not params:
        return
    needs_sidebar = variant is not None or SEED in params or DATASET in params
    datasets, max_seed = _sidebar_limits() if needs_sidebar else ([], 0)
    link = read_link(variant, params, datasets, max_seed)
    if variant is not None and link.fields_given:
        _fill_form(variant, link)
    for name, value in ((SEED, link.seed), (DATASET, link.dataset)):
        if value is not None:
            st.session_state[SIDEBAR_CHOICE.format(name)] = value  # what the sidebar's widget starts from
            if SIDEBAR_WIDGET.format(name) in st.session_state:  # drawn already (not the session's first page)
                st.session_state[SIDEBAR_WIDGET.format(name)] = value
    if link.present is not None:
        st.session_state[presenter.PRESENT_KEY] = link.present
    st.session_state[PENDING_CHECKPOINT_KEY] = link.checkpoint
    st.session_state[ERRORS_KEY] = list(link.errors)


def load_linked_checkpoint(variant: str) -> None:
    """Call after the sidebar, before the page: load the checkpoint the link named (once)."""
    name = st.session_state.pop(PENDING_CHECKPOINT_KEY, None)
    if not name:
        return
    from vaelab.checkpoints import checkpoint_path, list_checkpoints
    from vaelab.ui.checkpoint_panel import load_into_session

    path = checkpoint_path(variant, name)
    if path.is_file():
        error = load_into_session(variant, path, default_prefix(variant))
    else:
        saved = ", ".join(info.name for info in list_checkpoints(variant=variant)) or "none"
        error = f"no saved {variant} checkpoint named {name!r}; saved: {saved}"
    if error:
        message = _message(None, ConfigError(CHECKPOINT, error))
        st.session_state[ERRORS_KEY] = [*st.session_state.get(ERRORS_KEY, []), message]


def show_link_errors() -> None:
    """The values of the opened link that were not applied, each with the form's message, until dismissed."""
    errors = st.session_state.get(ERRORS_KEY)
    if not errors:
        return
    with st.container(key="vaelab-link-errors"):
        st.markdown("**Not applied from the link** (the rest of the link was):")
        for message in errors:
            st.error(message, icon=":material/link_off:")
        if st.button("Dismiss", key=DISMISS_KEY):
            st.session_state[ERRORS_KEY] = []
            st.rerun()


def current_link(variant: str | None, *, present: bool | None = None) -> dict[str, str]:
    """The link of the page as it is now (the view: ``present``, default the current one)."""
    present = presenter.presenter_on() if present is None else present
    if variant is None:
        return link_params(None, present=present)
    from vaelab.ui.session import get_session

    preset, values = form_values(variant, st.session_state)
    session = get_session(variant)
    checkpoint = session.checkpoint.path.stem if session.checkpoint is not None else None
    from vaelab.ui.sidebar import default_dataset

    seed, dataset = (st.session_state.get(SIDEBAR_WIDGET.format(name), st.session_state.get(
        SIDEBAR_CHOICE.format(name), default)) for name, default in ((SEED, 0), (DATASET, default_dataset())))
    return link_params(variant, preset, values, seed=seed, dataset=dataset, present=present, checkpoint=checkpoint)


def sync_address_bar(params: Mapping[str, str]) -> None:
    """Show ``params`` in the address bar (keeping the server's boot id and the run's token); writes only when
    something changed."""
    wanted = dict(params)
    for name in IGNORED:
        value = st.query_params.get(name)
        if value is not None:
            wanted[name] = value
    if _query() != wanted:
        st.query_params.from_dict(wanted)


def page_url(url_path: str, params: Mapping[str, str]) -> str:
    """The full link: the browser's scheme, host and port (``st.context.url``), the server's base path, the page's
    URL path and ``params``. Not st.context.url's own path: Streamlit 1.67 trims a page path from it by a plain suffix
    match, so on /vae it trimmed the Autoencoder page's "ae" and answered "/v/vae"."""
    parts = urlsplit(st.context.url or "")
    origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    path = "/".join(p for p in (str(st.get_option("server.baseUrlPath") or "").strip("/"), url_path) if p)
    query = urlencode(dict(params))
    return f"{origin}/{path}" + (f"?{query}" if query else "")


def link_button(variant: str, url_path: str) -> None:
    """ "Copy link": this page's link, in the normal and in the presenter view, each with a copy button."""
    with st.popover("Copy link", icon=":material/link:"):
        st.markdown("**A link that opens this page as it is now**: preset, every changed setting, seed, dataset"
                    " (and the loaded checkpoint, if any).")
        st.code(page_url(url_path, current_link(variant, present=False)), language=None, wrap_lines=True)
        st.markdown("**The same in the presenter view:**")
        st.code(page_url(url_path, current_link(variant, present=True)), language=None, wrap_lines=True)
