"""AppTest checks of the Compare page: the table of saved models, side-by-side views, metrics computed and cached.

Checkpoints are tiny models trained a few steps on mnist-5k into the temporary VAELAB_CHECKPOINT_DIR that
tests/conftest.py sets for every test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers import chart_specs, chart_title, mnist_5k_subset, no_exception, open_page
from vaelab import evaluate
from vaelab.checkpoints import checkpoint_dir, read_metadata, save_trainer
from vaelab.data import DataBundle
from vaelab.training import Trainer
from vaelab.variants import get_variant

TIMEOUT = 90


@pytest.fixture(scope="module")
def small_data() -> DataBundle:
    return mnist_5k_subset(500, slice(None, None, 10))  # the page evaluates on the checkpoints' own mnist-5k


def save_tiny(data: DataBundle, variant: str, name: str, steps: int = 10) -> Path:
    sizes = {"ae": {"code_size": 4}, "vae": {"latent_dim": 2}}[variant]
    config = get_variant(variant).config_cls(hidden_sizes=(16,), batch_size=50, epochs=1, **sizes)
    trainer = Trainer(variant, config, data, seed=0, log_every=2)
    trainer.advance(max_steps=steps)  # 10 steps: the whole epoch, so a test row too
    return save_trainer(trainer, name)


def plotly_figures(at: AppTest) -> list[dict]:
    """Each drawn Plotly chart as {"title": str, "data": [trace dicts]}."""
    return [{"title": chart_title(spec), "data": spec.get("data", [])} for spec in chart_specs(at)]


def compare_page() -> AppTest:
    return open_page("pages/compare.py", timeout=TIMEOUT)


def test_compare_page_without_checkpoints_says_how_to_make_them():
    at = compare_page()
    assert at.title[0].value == "Compare models"
    assert any("pretrain" in i.value for i in at.info)
    assert not at.dataframe


def test_compare_page_shows_two_checkpoints_side_by_side_and_caches_metrics(small_data):
    vae_path = save_tiny(small_data, "vae", "tiny-vae")
    ae_path = save_tiny(small_data, "ae", "tiny-ae")
    broken = checkpoint_dir() / "vae" / "broken.pt"
    broken.write_bytes(b"\x00 not a checkpoint")

    at = compare_page()
    table = at.dataframe[0].value
    assert len(table) == 3
    assert set(table["name"]) == {"tiny-vae", "tiny-ae", "broken"}
    assert table.set_index("name").loc["broken", "status"].startswith("unreadable")
    assert any("broken.pt" in w.value for w in at.warning)
    assert at.get("download_button")
    selection = at.multiselect(key="compare.selection")
    assert len(selection.value) == 2 and str(broken) not in selection.options
    # reconstructions (test images + one row per model), samples of the VAE
    images = at.get("image")
    assert len(images) == 2
    captions = " ".join(str(img.proto) for img in images)
    assert "vae / tiny-vae" in captions and "ae / tiny-ae" in captions
    figures = plotly_figures(at)
    curves = next(f for f in figures if "Loss curves" in f["title"] or "total per image" in f["title"])
    assert {"vae / tiny-vae \u00b7 train", "ae / tiny-ae \u00b7 train"} <= {t["name"] for t in curves["data"]}
    assert any(f["title"].startswith("Test loss") for f in figures)  # a bar chart of the stored test loss
    assert not any(f["title"].startswith("log p(x)") for f in figures)  # not computed yet

    at.number_input(key="compare.k").set_value(4)
    at.number_input(key="compare.n").set_value(60)
    at.button(key="compare.compute").click().run()
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    assert any("Computed and stored" in s.value for s in at.success)
    cached = evaluate.cached_results(read_metadata(vae_path))
    assert cached["log_likelihood"]["k"] == 4 and cached["log_likelihood"]["n"] == 60
    assert "probe" in evaluate.cached_results(read_metadata(ae_path))
    table = at.dataframe[0].value.set_index("name")
    assert table.loc["tiny-vae", "log p(x)"] == pytest.approx(cached["log_likelihood"]["mean"])
    titles = [f["title"] for f in plotly_figures(at)]
    assert any(t.startswith("log p(x), nats") for t in titles) and any("probe" in t for t in titles)


def test_selecting_one_model_asks_for_a_second(small_data):
    save_tiny(small_data, "vae", "only-one")
    save_tiny(small_data, "ae", "another")
    at = compare_page()
    selection = at.multiselect(key="compare.selection")
    selection.set_value(selection.value[:1]).run()
    no_exception(at)
    assert any("at least two" in i.value for i in at.info)
    assert not at.get("image")
