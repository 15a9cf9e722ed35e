"""Every picture that depends on the weights is drawn inside the page's live views and follows training: for each
variant page, the caption (image) or title (chart) of each such picture names the step, and that step moves on from
one drawing to the next while the run trains ("Explore the model now" draws them from the weights of that moment;
the run trains in its worker in between). A picture drawn outside the live views would keep the step of the run
that drew it until the page ran in full again.

Also: every image grid has a PNG download button named after the picture, and no chart key carries a redraw
counter (a fresh key re-creates the chart, blank until redrawn).
"""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from tests.helpers import no_exception, open_page, session_of, set_form, stop_reset, stream_args, wait_for
from vaelab.figure_export import read_png_text
from vaelab.ui import charts, images, training_panel

STEP = re.compile(r"step ([0-9][0-9,]*)")
TINY = {"epochs": 3, "batch_size": 100}
PANEL_PICTURES = ("Top to bottom: test images, reconstructions",)  # drawn live by the training panel (live_view)

# variant key, page module, form fields, and the start of each live picture's caption (image) or title (chart)
PAGES = [
    ("ae", "ae", {"hidden_sizes": "16", "code_size": 2},
     {"images": ["Top to bottom: test images, reconstructions"],
      "charts": ["Code values", "Code of each test image"]}),
    ("denoising", "denoising", {"hidden_sizes": "16"},
     {"images": ["Top to bottom: test images, corrupted"], "charts": ["Error against noise level"]}),
    ("sparse", "sparse", {"code_size": 16},
     {"images": ["Each code unit's encoder weights"], "charts": ["Mean activation", "KL(ρ ‖ ρ̂)"]}),
    ("ksparse", "ksparse", {"code_size": 16, "k": 4},
     {"images": ["Each code unit's encoder weights", "Their filters", "The image, then decoded"],
      "charts": ["The 4 units that fire"]}),
    ("vae", "vae", {"hidden_sizes": "16", "latent_dim": 2},
     {"images": ["Top to bottom: test images, reconstructions", "Manifold", "Decoded z = τ · ε", "Left: test image A",
                 "Left: test image #0", "Row k sweeps z_k", "Picked: test image"],
      "charts": ["Posterior means of", "KL per dimension"]}),
    ("cvae", "cvae", {"hidden_sizes": "16", "latent_dim": 2},
     {"images": ["Digit x style", "32 samples of the digit 0", "The style manifold of the digit 0",
                 "Picked: test image", "The same μ decoded with each label"],
      "charts": ["Posterior means given the true labels"]}),
    ("binary-vae", "binary_vae", {"hidden_sizes": "16", "latent_dim": 8},
     {"images": ["Top to bottom: 3 rows of Bernoulli means"], "charts": ["PCA of the bit probabilities"]}),
    ("ae-gmm", "ae_gmm", {"hidden_sizes": "16", "code_size": 2},
     {"images": ["Decoded codes drawn from the Gaussian mixture", "Decoded codes drawn from N(0, I)"],
      "charts": ["Codes of 2,000 training images"]}),
]


class Drawings:
    """Spies on the pictures a page draws: each image grid (caption, PNG bytes) and chart (title), and whether it was
    drawn inside the page's live views (the ``extra_views`` the training panel runs in its timed fragment)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.depth = 0
        self.images: list[tuple[str, bytes, bool]] = []
        self.charts: list[tuple[str, bool]] = []
        real_live_view, real_show_png = training_panel.live_view, images.show_png
        real_clear = charts.clear_of_toolbar

        def live_view(*args, extra_views=None, **kwargs):
            def spied(session):
                self.depth += 1
                try:
                    return extra_views(session)
                finally:
                    self.depth -= 1
            return real_live_view(*args, extra_views=None if extra_views is None else spied, **kwargs)

        def show_png(pixels, *, name, caption=None, **kwargs):
            png = real_show_png(pixels, name=name, caption=caption, **kwargs)
            self.images.append((caption or "", png, self.depth > 0))
            return png

        def clear_of_toolbar(figure, *args, **kwargs):
            self.charts.append((figure.layout.title.text or "", self.depth > 0))
            return real_clear(figure, *args, **kwargs)

        monkeypatch.setattr(training_panel, "live_view", live_view)
        monkeypatch.setattr(images, "show_png", show_png)
        monkeypatch.setattr(charts, "clear_of_toolbar", clear_of_toolbar)

    def clear(self) -> None:
        self.images.clear()
        self.charts.clear()


@pytest.fixture
def drawings(monkeypatch) -> Drawings:
    return Drawings(monkeypatch)


def steps_shown(drawings: Drawings, starts: dict[str, list[str]], panel: tuple[str, ...] = PANEL_PICTURES
                ) -> dict[str, int]:
    """For each expected picture drawn in the last run, the step its caption or title names; each must have been
    drawn inside the live views (but the panel's own pictures, drawn live by the panel itself)."""
    texts = {"images": [(c, inside) for c, _, inside in drawings.images], "charts": drawings.charts}
    shown = {}
    for kind, wanted in starts.items():
        for start in wanted:
            found = [(t, inside) for t, inside in texts[kind] if start in t and STEP.search(t)]
            assert found, f"no {kind[:-1]} with {start!r} and a step: {[t for t, _ in texts[kind]]}"
            text, inside = found[-1]
            assert inside or start in panel, f"{text!r} is drawn outside the live views: it does not follow training"
            shown[start] = int(STEP.search(text).group(1).replace(",", ""))
    return shown


LONG = {"epochs": 500, "batch_size": 100}  # a run that trains through the test (Stop / Reset ends it)


def _start_exploring(at, variant: str, form: dict) -> object:
    """Start a long run with ``form``, wait for its first steps, turn on "Explore the model now"."""
    set_form(at, variant, {**LONG, **form})
    at.button(key=f"panel.{variant}.start").click().run()
    wait_for(at, variant, lambda s: s.step > 0, "the first steps")
    at.toggle(key=f"panel.{variant}.explore_live").set_value(True)
    return session_of(at, variant)


@pytest.mark.parametrize(("variant", "module", "form", "starts"), PAGES, ids=[p[0] for p in PAGES])
def test_every_weight_dependent_picture_follows_training_in_the_live_views(drawings, variant, module, form, starts,
                                                                          monkeypatch):
    """While a run trains, the page's pictures beyond the stream are drawn on demand ("Explore the model now"), each
    from the weights of that moment, and drawn again at the next page run from the newer weights."""
    starts = {kind: [s for s in wanted if s not in PANEL_PICTURES] for kind, wanted in starts.items()}  # streamed
    at = open_page(f"pages/{module}.py")
    session = _start_exploring(at, variant, form)
    if variant == "ae-gmm":  # mixture samples exist once a mixture is fitted: at the end of the first epoch
        wait_for(at, variant, lambda s: bool(s.model.mixture_fitted), "the first mixture")
    try:
        drawings.clear()
        at.run()
        no_exception(at)
        assert session.running, session.message
        first = steps_shown(drawings, starts)
        assert len(set(first.values())) == 1, first  # one state of the weights for every picture
        step = session.step
        wait_for(at, variant, lambda s: s.step > step, "more steps")
        drawings.clear()
        at.run()
        no_exception(at)
        second = steps_shown(drawings, starts)
        assert len(set(second.values())) == 1, second
        assert all(second[name] > first[name] for name in starts["images"] + starts["charts"]), (first, second)
        if variant in ("ae", "vae"):
            assert "reconstructions" in {r["view"] for args in stream_args(at) for r in args["regions"]}
    finally:
        stop_reset(at, variant)


def test_every_image_grid_downloads_as_a_png_with_its_caption_and_charts_keep_their_keys(drawings):
    at = open_page("pages/vae.py")
    _start_exploring(at, "vae", {"hidden_sizes": "16", "latent_dim": 2})
    drawings.clear()
    at.run()
    no_exception(at)
    pngs = [b for b in at.get("download_button") if "png." in b.proto.id]
    stems = {b.proto.id.split("png.", 1)[1] for b in pngs}
    for stem in ("vae-prior-samples", "vae-manifold", "vae-interpolation", "vae-latent-traversal",
                 "vae-decoding-of-the-sliders", "picked-test-image"):
        assert stem in stems, stems
    assert len(pngs) == len(at.image) == len(drawings.images)  # one button per picture
    assert all(b.proto.ignore_rerun and b.proto.label == "PNG" for b in pngs)  # a download never reruns the page
    for caption, png, _ in drawings.images:  # the file the button gives: a PNG carrying the picture's caption
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert read_png_text(png)["Description"] == caption
    samples = next(png for caption, png, _ in drawings.images if caption.startswith("Decoded z = τ · ε"))
    with Image.open(io.BytesIO(samples)) as picture:
        assert picture.mode == "L" and picture.size[0] >= 8 * 28  # 8 samples a row, at least 1 px per pixel
        assert read_png_text(samples)["Title"] == "VAE prior samples"

    live_charts = [c.proto.id for c in at.get("component_instance") if "vaelab_live_chart" in c.proto.component_name]
    assert len(live_charts) >= 2  # while training, the page's charts are live charts (vaelab/ui/live_chart.py)
    at.run()  # drawn again from newer weights: new figures, the same elements (a still chart's id follows its figure)
    assert [c.proto.id for c in at.get("component_instance")
            if "vaelab_live_chart" in c.proto.component_name] == live_charts
    stop_reset(at, "vae")
