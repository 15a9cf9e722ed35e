"""The sidebar without network: the selector shows the embedded set in use, one line says why, the error folds away.

VAELAB_DATASET is unset here, so the app starts from its own default (mnist) as it does for a user; torchvision's
download is made to fail the way it does offline, into an empty data folder.
"""

from __future__ import annotations

import urllib.error

import pytest

from tests.helpers import new_app, no_exception
from vaelab import data
from vaelab.ui import sidebar

OFFLINE_ERROR = "<urlopen error [Errno -2] Name or service not known>"


@pytest.fixture
def offline_default(monkeypatch, tmp_path):
    """The app's default dataset (mnist), an empty data folder, and a download that fails as offline."""
    import torchvision.datasets

    def fail(self):
        raise urllib.error.URLError(OFFLINE_ERROR.strip("<>").removeprefix("urlopen error "))

    monkeypatch.setattr(torchvision.datasets.MNIST, "download", fail)
    monkeypatch.delenv("VAELAB_DATASET", raising=False)
    monkeypatch.setenv("VAELAB_DATA_DIR", str(tmp_path / "data"))
    data._load_torchvision_split.cache_clear()
    sidebar.cached_data.clear()
    yield
    data._load_torchvision_split.cache_clear()
    sidebar.cached_data.clear()


def _shown_dataset(at) -> str:
    """The selector's visible text (AppTest holds the formatted labels as options)."""
    select = at.selectbox(key="vaelab.dataset")
    return select.options[select.index]


def _notices(at) -> list[str]:
    return [e.label for e in at.sidebar.expander]


def test_offline_the_selector_names_the_embedded_set_and_one_line_says_why(offline_default):
    at = new_app().run()
    no_exception(at)
    assert at.selectbox(key="vaelab.dataset").value == "mnist-5k"
    assert _shown_dataset(at) == sidebar.DATASET_LABELS["mnist-5k"]
    assert _notices(at) == ["No network: using the embedded 5,000 MNIST digits"]
    assert not at.sidebar.warning and not at.warning  # no tall box, no Session State warning about the selector
    (notice,) = at.sidebar.expander
    details = " ".join(c.value for c in notice.code)
    assert "could not download data source 'mnist'" in details and "Name or service not known" in details
    assert any("Train: mnist-5k (4,000 images)" in c.value for c in at.sidebar.caption)
    assert at.session_state["vaelab.settings"].dataset == "mnist-5k"


def test_the_notice_stays_while_the_fallback_is_in_use_and_goes_with_another_choice(offline_default):
    at = new_app().run()
    at.number_input(key="vaelab.seed").set_value(3).run()  # any other interaction: still the fallback
    no_exception(at)
    assert at.selectbox(key="vaelab.dataset").value == "mnist-5k" and len(_notices(at)) == 1

    at.selectbox(key="vaelab.dataset").set_value("digits").run()
    no_exception(at)
    assert not _notices(at)
    assert any("Train: digits" in c.value for c in at.sidebar.caption)

    at.selectbox(key="vaelab.dataset").set_value("mnist").run()  # asking for MNIST again: the same fallback
    no_exception(at)
    assert at.selectbox(key="vaelab.dataset").value == "mnist-5k"
    assert _notices(at) == ["No network: using the embedded 5,000 MNIST digits"]
    assert not at.warning


def test_an_embedded_choice_shows_no_notice(monkeypatch):
    monkeypatch.setenv("VAELAB_DATASET", "mnist-5k")
    at = new_app().run()
    no_exception(at)
    assert _shown_dataset(at) == sidebar.DATASET_LABELS["mnist-5k"] and not _notices(at)
