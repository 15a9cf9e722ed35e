"""AppTest checks of the Compare page: the table of saved models, side-by-side views, metrics computed and cached.

Checkpoints are tiny models trained a few steps on mnist-5k into the temporary VAELAB_CHECKPOINT_DIR that
tests/conftest.py sets for every test.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers import all_captions, chart_specs, chart_title, mnist_5k_subset, no_exception, open_page
from vaelab import compare, evaluate
from vaelab.checkpoints import checkpoint_dir, read_metadata, save_trainer, update_metadata
from vaelab.data import DataBundle
from vaelab.training import Trainer
from vaelab.variants import get_variant

TIMEOUT = 90


@pytest.fixture(scope="module")
def small_data() -> DataBundle:
    return mnist_5k_subset(500, slice(None, None, 10))  # the page evaluates on the checkpoints' own mnist-5k


def save_tiny(data: DataBundle, variant: str, name: str, steps: int = 10, **overrides) -> Path:
    sizes = {"ae": {"code_size": 4}, "vae": {"latent_dim": 2}}[variant]
    config = get_variant(variant).config_cls(hidden_sizes=(16,), batch_size=50, epochs=1, **sizes, **overrides)
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
    # one labelled row each: the originals, a reconstruction row per model, the VAE's samples
    assert len(at.get("image")) == 4
    names = ("**Originals**", "**vae / tiny-vae**", "**ae / tiny-ae**")
    labels = [m.value for m in at.markdown if m.value in names]
    assert labels[0] == "**Originals**" and set(labels[1:3]) == set(names[1:]) and labels[3] == names[1]
    captions = [c.value for c in at.caption]
    assert captions.count("reconstructions of the originals") == 2
    assert sum(c.startswith("samples: decoded draws from its prior") for c in captions) == 1
    assert not any("Top to bottom" in c for c in all_captions(at))
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


def test_the_two_models_saved_last_are_chosen_and_the_table_shows_its_main_columns(small_data):
    saved = {name: save_tiny(small_data, "ae", name, lr=lr) for name, lr in (("a-oldest", 0.001), ("b-newest", 0.002),
                                                                             ("c-middle", 0.003))}
    for name, created in (("a-oldest", "2026-01-01T10:00:00+00:00"), ("b-newest", "2026-03-01T10:00:00+00:00"),
                          ("c-middle", "2026-02-01T10:00:00+00:00")):
        update_metadata(saved[name], created=created)
    at = compare_page()
    assert at.multiselect(key="compare.selection").value == [str(saved["b-newest"]), str(saved["c-middle"])]
    shown = list(at.dataframe[0].proto.column_order)
    # the same dataset and epochs in every row: said once above the table, not in two columns
    assert shown == ["model", "settings", "test total", "created"]
    assert any(c.value == "Every model: dataset **mnist-5k** · epochs **1**" for c in at.caption)
    at.multiselect(key="compare.columns").set_value(["test reconstruction", "samples/s"]).run()
    no_exception(at)
    assert list(at.dataframe[0].proto.column_order)[-2:] == ["samples/s", "test reconstruction"]  # table order
    assert set(at.dataframe[0].value.columns) >= {"variant", "name", "path", "status"}  # the CSV keeps them all


def test_the_main_columns_with_every_metric_fit_the_page_at_1280_px():
    every_metric = pd.DataFrame(columns=[*compare.MAIN_COLUMNS, "BCE", "kNN probe"])
    shown = compare.shown_columns(every_metric)
    assert set(shown) == set(compare.MAIN_COLUMNS)
    assert sum(compare.column_width(c) for c in shown) <= compare.TABLE_WIDTH
