"""Figures as files (vaelab/figure_export.py), the charts' toolbar band (vaelab/ui/charts.py) and the live chart's
figure (vaelab/ui/live_chart.py): checked by reading the bytes back with Pillow and the figures with Plotly."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import plotly.graph_objects as go
import pytest
from PIL import Image

from vaelab.figure_export import data_uri, file_stem, picture_png, read_png_text
from vaelab.ui import images
from vaelab.ui.charts import TITLE_LINE, TOOLBAR_BAND, chart_config, clear_of_toolbar
from vaelab.ui.live_chart import figure_spec, house_style


def test_a_picture_png_keeps_its_pixels_and_carries_its_title_and_caption():
    pixels = (np.arange(6 * 9).reshape(6, 9) * 4).astype(np.uint8)
    caption = "Decoded z = τ · ε, ε ~ N(0, I), τ = 1 (draw #0, step 1,200)"  # not Latin-1: stored as UTF-8 (iTXt)
    png = picture_png(pixels, title="VAE prior samples", caption=caption)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(io.BytesIO(png)) as image:
        assert image.mode == "L" and image.size == (9, 6)
        assert np.array_equal(np.asarray(image), pixels)
    text = read_png_text(png)
    assert text["Title"] == "VAE prior samples" and text["Description"] == caption and text["Software"] == "vaelab"
    assert b"tEXtTitle\x00VAE prior samples" in png  # Latin-1 text in a plain tEXt chunk, read by every viewer


def test_a_picture_png_refuses_what_is_not_a_greyscale_byte_picture():
    with pytest.raises(ValueError, match="pixels: expected a 2-D uint8 picture"):
        picture_png(np.zeros((4, 4), dtype=np.float32), title="x")
    with pytest.raises(ValueError, match="pixels"):
        picture_png(np.zeros((4, 4, 3), dtype=np.uint8), title="x")


def test_the_data_uri_is_the_png_itself():
    png = picture_png(np.full((2, 3), 255, dtype=np.uint8), title="white")
    uri = data_uri(png)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1]) == png


def test_file_stems_are_portable_and_never_empty():
    assert file_stem("Loss curves (step 1,200)") == "loss-curves-step-1200"
    assert file_stem("KL(ρ ‖ ρ̂), training ρ = 0.05") == "kl-training-0-05"
    assert file_stem("ρ̂") == "figure"
    assert len(file_stem("x" * 500)) <= 120


def test_an_image_grid_is_drawn_at_the_scale_asked_and_its_default_name_ignores_the_numbers():
    rows = [np.zeros((3, 4)), np.ones((3, 4))]  # 3 images of 2x2 per row
    grid = images.image_grid(rows, (2, 2), scale=2, pad=1)
    assert grid.shape == ((2 * 3 + 1) * 2, (3 * 3 + 1) * 2) and grid.dtype == np.uint8
    assert images.default_name("Decoded z = τ · ε (draw #3, step 1,200)") == images.default_name(
        "Decoded z = τ · ε (draw #4, step 9,999)")


def test_a_titled_chart_keeps_a_band_for_the_toolbar_above_its_title():
    fig = go.Figure(go.Scatter(x=[0, 1], y=[1, 0]))
    fig.update_layout(title="Loss", margin={"t": 40}, height=300)
    clear_of_toolbar(fig)
    assert fig.layout.margin.t == 40 + TOOLBAR_BAND and fig.layout.height == 300 + TOOLBAR_BAND
    assert (fig.layout.title.yref, fig.layout.title.y, fig.layout.title.yanchor) == ("container", 1.0, "top")
    assert fig.layout.title.pad.t == TOOLBAR_BAND  # the title starts below the band
    clear_of_toolbar(fig)  # once only
    assert fig.layout.margin.t == 40 + TOOLBAR_BAND and fig.layout.height == 300 + TOOLBAR_BAND


def test_a_title_of_two_lines_gets_room_for_its_second_line():
    fig = go.Figure(go.Scatter(x=[0], y=[0]))
    fig.update_layout(title="Error against noise level<br><sup>200 test images, step 5</sup>", margin={"t": 40})
    clear_of_toolbar(fig)
    # Plotly anchors a title of several lines a line too high per further line: the pad and margin make up for it
    assert fig.layout.title.pad.t == TOOLBAR_BAND + TITLE_LINE
    assert fig.layout.margin.t == 40 + TOOLBAR_BAND + 2 * TITLE_LINE


def test_a_legend_above_the_plot_keeps_the_top_and_the_toolbar_goes_to_a_band_at_the_right():
    legend_on_top = go.Figure(go.Scatter(x=[0], y=[0], name="a"))
    legend_on_top.update_layout(title="Loss", legend={"orientation": "h", "yanchor": "bottom", "y": 1.02},
                                margin={"t": 80, "r": 10})
    clear_of_toolbar(legend_on_top)
    assert legend_on_top.layout.modebar.orientation == "v"  # a column of buttons at the right edge
    assert legend_on_top.layout.margin.r == 10 + TOOLBAR_BAND and legend_on_top.layout.margin.t == 80


def test_a_chart_with_neither_title_nor_top_legend_is_left_alone():
    bare = go.Figure(go.Scatter(x=[0], y=[0]))
    bare.update_layout(margin={"t": 10})
    clear_of_toolbar(bare)
    assert bare.layout.margin.t == 10 and bare.layout.meta is None


def test_the_camera_saves_a_png_named_after_the_chart():
    config = chart_config("Mean gap against the step")
    assert config["toImageButtonOptions"] == {"format": "png", "filename": "mean-gap-against-the-step", "scale": 2}


def test_a_live_charts_figure_is_plain_plotly_json_on_a_white_template():
    fig = go.Figure(go.Scatter(x=[0, 1], y=[2, 3], name="train"))
    fig.update_layout(title="Loss, step 5")
    spec = figure_spec(fig)
    json.dumps(spec)  # what the component receives: plain JSON
    assert spec["data"][0]["name"] == "train" and spec["layout"]["title"]["text"] == "Loss, step 5"
    assert "#000001" not in json.dumps(spec["layout"]["template"])  # no Streamlit theme placeholders to resolve
    assert spec["layout"]["font"]["family"].startswith('"Source Sans"')  # Streamlit's font (1.4x on)
    assert spec["layout"]["title"]["font"]["weight"] == "bold"
    assert fig.layout.font.family is None  # a copy was changed, not the caller's figure


def test_a_still_chart_gets_the_same_look_as_a_live_one():
    fig = go.Figure(go.Bar(x=["a", "b"], y=[2, 3]))
    fig.update_layout(title="KL per dimension, step 5", font={"size": 13})
    spec = figure_spec(fig)
    still = json.loads(house_style(fig).to_json())["layout"]  # what st.plotly_chart(theme=None) draws
    assert still["template"] == spec["layout"]["template"]
    assert still["font"] == spec["layout"]["font"] == {"size": 13, "family": still["font"]["family"]}
    assert still["title"] == spec["layout"]["title"]
