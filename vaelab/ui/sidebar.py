"""The sidebar every page shares: dataset, device, seed. Pages read the result with :func:`current_settings`.

Datasets load once per process through ``st.cache_resource`` (keyed by the source names). When a torchvision
source cannot be loaded (no network, no local copy), the embedded ``mnist-5k`` stands in and the sidebar says so.
``$VAELAB_DATASET`` sets the default dataset (tests and CI use ``mnist-5k``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import streamlit as st
import torch

from vaelab.data import TORCHVISION_SOURCES, DataBundle, DataError, load_data

DATASETS = ("mnist", "fashion-mnist", "kmnist", "mnist-5k", "digits")
DATASET_LABELS = {
    "mnist": "MNIST (60k, downloads)",
    "fashion-mnist": "Fashion-MNIST (60k, downloads)",
    "kmnist": "KMNIST (60k, downloads)",
    "mnist-5k": "MNIST 5k (embedded, offline)",
    "digits": "scikit-learn digits (8x8)",
}
FALLBACK_DATASET = "mnist-5k"
MAX_SEED = 2**31 - 1
_SETTINGS_KEY = "vaelab.settings"


@dataclass(frozen=True)
class Settings:
    """What the sidebar chose this run. ``data`` may come from the fallback dataset (then ``notice`` says why)."""

    data: DataBundle
    dataset: str  # the source the user picked (may differ from data.train.source after a fallback)
    device: str
    seed: int
    notice: str | None = None


@dataclass(frozen=True)
class LoadedData:
    data: DataBundle
    notice: str | None  # set when a fallback replaced the requested source


def default_dataset() -> str:
    return os.environ.get("VAELAB_DATASET", "").strip() or "mnist"


def available_devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def load_with_fallback(train: str, test: str | None = None) -> LoadedData:
    """load_data, with ``mnist-5k`` standing in for a torchvision source that cannot be loaded."""
    try:
        return LoadedData(load_data(train, test), None)
    except DataError as error:
        failed = [s for s in (train, test) if s in TORCHVISION_SOURCES]
        if not failed:
            raise
        notice = (f"**{', '.join(failed)}** could not be loaded, so the embedded `{FALLBACK_DATASET}` "
                  f"(5,000 real MNIST digits) is used instead.\n\n{error}")
        other_test = test if test is not None and test not in TORCHVISION_SOURCES else None
        return LoadedData(load_data(FALLBACK_DATASET, other_test), notice)


@st.cache_resource(show_spinner="Loading the dataset…")
def cached_data(train: str, test: str | None = None) -> LoadedData:
    """One load per process and pair of source names (DataError is not cached: a fixed source can be retried)."""
    return load_with_fallback(train, test)


def _remembered(name: str, default):
    """A sidebar choice kept under a plain (non-widget) session key.

    Streamlit drops a widget's state when a run is interrupted before the widget is drawn (a click on a page link
    during the first run), which reset the dataset to the first option; a plain key survives that."""
    return st.session_state.setdefault(f"vaelab.choice.{name}", default)


def _remember(name: str, value):
    st.session_state[f"vaelab.choice.{name}"] = value
    return value


def _dataset_select() -> str:
    default = default_dataset()
    options = list(DATASETS) if default in DATASETS else [default, *DATASETS]
    chosen = _remembered("dataset", default)
    value = st.selectbox("Dataset", options, index=options.index(chosen) if chosen in options else 0,
                         key="vaelab.dataset", format_func=lambda s: DATASET_LABELS.get(s, s),
                         help="Training images. Downloads go to $VAELAB_DATA_DIR (default ./data); "
                              "without network the embedded MNIST 5k is used.")
    return _remember("dataset", value)


def _load_chosen(train: str, test: str | None) -> LoadedData:
    try:
        return cached_data(train, test)
    except DataError as error:
        if test is None:
            st.error(f"Cannot load the dataset: {error}")
            st.stop()
        st.error(f"Cannot load the test source: {error}. Using the training source's own test split.")
        return _load_chosen(train, None)


@st.cache_resource(show_spinner=False)
def clean_checkpoint_folder_once() -> int:
    """At the server's start: delete temp files left by saves or uploads that a killed process never finished."""
    from vaelab.checkpoints import clean_stale_temp_files

    return clean_stale_temp_files()


def render_sidebar() -> Settings:
    """Draw the shared sidebar widgets and remember the choice for :func:`current_settings`."""
    clean_checkpoint_folder_once()
    with st.sidebar:
        st.header("Lab settings")
        dataset = _dataset_select()
        test_text = st.text_input("Test source (optional)", key="vaelab.test_source", placeholder="e.g. idx:DIR",
                                  help="A different test set, e.g. `idx:../shared/datasets/mnist-test` "
                                       "(a folder of MNIST IDX files). Empty: the dataset's own test split.")
        devices = available_devices()
        chosen_device = _remembered("device", devices[0])
        device = _remember("device", st.selectbox(
            "Device", devices, index=devices.index(chosen_device) if chosen_device in devices else 0,
            key="vaelab.device", help="Where models train. cuda / mps appear when present."))
        seed = _remember("seed", st.number_input(
            "Seed", min_value=0, max_value=MAX_SEED, value=int(_remembered("seed", 0)), step=1, key="vaelab.seed",
            help="Seeds weight initialisation, batch order and the model's noise."))
        loaded = _load_chosen(dataset, test_text.strip() or None)
        if loaded.notice:
            st.warning(loaded.notice, icon=":material/cloud_off:")
        data = loaded.data
        h, w = data.image_shape
        st.caption(f"Train: {data.train.source} ({len(data.train):,} images) · "
                   f"test: {data.test.source} ({len(data.test):,}) · {h}x{w}, {data.n_classes} classes")
    settings = Settings(data=data, dataset=dataset, device=device, seed=int(seed), notice=loaded.notice)
    st.session_state[_SETTINGS_KEY] = settings
    return settings


def current_settings() -> Settings:
    """The settings the sidebar chose in this run (drawing the sidebar first if ``app.py`` has not)."""
    settings = st.session_state.get(_SETTINGS_KEY)
    return settings if isinstance(settings, Settings) else render_sidebar()
