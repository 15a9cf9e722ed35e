"""The sidebar every page shares: dataset, device, seed. Pages read the result with :func:`current_settings`.

Datasets load once per process through ``st.cache_resource`` (keyed by the source names). When a torchvision
source cannot be loaded (no network, no local copy), the embedded ``mnist-5k`` stands in: the selector then shows
``mnist-5k`` (the source in use) and one line under it says why, the loader's error folded away beneath.
``$VAELAB_DATASET`` sets the default dataset (tests and CI use ``mnist-5k``).
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st
import torch

from vaelab.data import TORCHVISION_SOURCES, DataBundle, DataError, Fallback, default_dataset, load_with_fallback

DATASETS = ("mnist", "fashion-mnist", "kmnist", "mnist-5k", "digits")
DATASET_LABELS = {
    "mnist": "MNIST (60k, downloads)",
    "fashion-mnist": "Fashion-MNIST (60k, downloads)",
    "kmnist": "KMNIST (60k, downloads)",
    "mnist-5k": "MNIST 5k (embedded, offline)",
    "digits": "scikit-learn digits (8x8)",
}
MAX_SEED = 2**31 - 1
_SETTINGS_KEY = "vaelab.settings"
_DATASET_KEY = "vaelab.dataset"  # the selector's widget key
_FALLBACK_KEY = "vaelab.choice.fallback"  # the Fallback that put the selector on mnist-5k, while it stays there


@dataclass(frozen=True)
class Settings:
    """What the sidebar chose this run. ``dataset`` is the source in use (``mnist-5k`` after a fallback, which
    ``fallback`` then describes)."""

    data: DataBundle
    dataset: str
    device: str
    seed: int
    fallback: Fallback | None = None

    @property
    def notice(self) -> str | None:
        return None if self.fallback is None else self.fallback.summary


@dataclass(frozen=True)
class LoadedData:
    data: DataBundle
    fallback: Fallback | None  # set when mnist-5k replaced the requested source

    @property
    def notice(self) -> str | None:
        """The fallback's line and the loader's error, for a message that has room for both."""
        return None if self.fallback is None else f"{self.fallback.summary}. {self.fallback.detail}"


def available_devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


@st.cache_resource(show_spinner="Loading the dataset…")
def cached_data(train: str, test: str | None = None) -> LoadedData:
    """One load per process and pair of source names (DataError is not cached: a fixed source can be retried)."""
    return LoadedData(*load_with_fallback(train, test))


def _remembered(name: str, default):
    """A sidebar choice kept under a plain (non-widget) session key.

    Streamlit drops a widget's state when a run is interrupted before the widget is drawn (a click on a page link
    during the first run), which reset the dataset to the first option; a plain key survives that."""
    return st.session_state.setdefault(f"vaelab.choice.{name}", default)


def _remember(name: str, value):
    st.session_state[f"vaelab.choice.{name}"] = value
    return value


def _dataset_select() -> tuple[str, Fallback | None]:
    """The dataset selector, showing the source in use: a torchvision source that cannot be loaded is replaced
    by mnist-5k before the widget is drawn (the returned Fallback says why)."""
    default = default_dataset()
    options = list(DATASETS) if default in DATASETS else [default, *DATASETS]
    requested = st.session_state.get(_DATASET_KEY, _remembered("dataset", default))
    fallback = st.session_state.get(_FALLBACK_KEY)
    if not (isinstance(fallback, Fallback) and requested == fallback.used):
        fallback = _fallback_for(requested)
    index = options.index(requested) if requested in options else 0
    if fallback is not None:
        st.session_state[_DATASET_KEY] = fallback.used  # allowed: the widget is not drawn yet in this run
        index = 0  # a value set through Session State wins; a non-zero default beside it would warn
    st.session_state[_FALLBACK_KEY] = fallback
    value = st.selectbox("Dataset", options, index=index, key=_DATASET_KEY,
                         format_func=lambda s: DATASET_LABELS.get(s, s),
                         help="Training images. Downloads go to $VAELAB_DATA_DIR (default ./data); "
                              "without network the embedded MNIST 5k is used.")
    return _remember("dataset", value), fallback


def _fallback_for(source: str) -> Fallback | None:
    """Why a torchvision source cannot be used here (None when it loads, or is not a torchvision source)."""
    if source not in TORCHVISION_SOURCES:
        return None
    try:
        return cached_data(source).fallback
    except DataError:  # not a fallback case: the load below reports it
        return None


def _show_fallback(fallback: Fallback) -> None:
    """One line; the loader's error folded away beneath it."""
    with st.expander(fallback.summary, icon=":material/cloud_off:", type="compact"):
        st.caption(f"{', '.join(fallback.requested)} could not be loaded here, so `{fallback.used}` stands in "
                   "(4,000 training and 1,000 test digits, shipped with vaelab). To use the full set, connect "
                   "and choose it again, or put its IDX files under $VAELAB_DATA_DIR (default ./data).")
        st.code(fallback.detail, language=None, wrap_lines=True)


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
        dataset, fallback = _dataset_select()
        notice_slot = st.container()
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
        fallback = fallback or loaded.fallback  # a torchvision test source may have fallen back too
        if fallback is not None:
            with notice_slot:
                _show_fallback(fallback)
        data = loaded.data
        h, w = data.image_shape
        st.caption(f"Train: {data.train.source} ({len(data.train):,} images) · "
                   f"test: {data.test.source} ({len(data.test):,}) · {h}x{w}, {data.n_classes} classes")
    settings = Settings(data=data, dataset=dataset, device=device, seed=int(seed), fallback=fallback)
    st.session_state[_SETTINGS_KEY] = settings
    return settings


def current_settings() -> Settings:
    """The settings the sidebar chose in this run (drawing the sidebar first if ``app.py`` has not)."""
    settings = st.session_state.get(_SETTINGS_KEY)
    return settings if isinstance(settings, Settings) else render_sidebar()
