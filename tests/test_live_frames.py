"""Live views computed as frames (the worker's side of the live stream): the same pixels and codes as the page's own
computation, and a schedule that keeps the views within their share of the time and never repeats a step."""

import numpy as np
import pytest
import torch

from vaelab.data import load_data
from vaelab.live_frames import VIEWS, LiveView, ViewSchedule, codes, fixed_batch, reconstructions, run_model
from vaelab.training import Trainer
from vaelab.ui.images import image_grid
from vaelab.variants import get_variant


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


def _trained(variant: str, data, **config):
    trainer = Trainer(variant, get_variant(variant).config_cls(epochs=1, **config), data, seed=0)
    trainer.run()
    return trainer.model


def test_the_reconstruction_frame_has_the_pixels_of_the_pages_picture(digits):
    model = _trained("ae", digits, hidden_sizes=(16,), code_size=4)
    model.train()  # a view must leave the mode as it found it
    batch = fixed_batch(digits, 10)
    frame = reconstructions(model, batch)["images"]  # (2, 10, 8, 8) uint8
    assert frame.shape == (2, 10, 8, 8) and frame.dtype == np.uint8 and model.training
    recon = run_model(model, model.reconstruct, batch.x)
    page = image_grid([batch.x, recon], (8, 8), scale=1, pad=1)  # what the page draws, pixel for pixel
    for r in range(2):
        for c in range(10):
            top, left = 1 + r * 9, 1 + c * 9
            assert np.array_equal(frame[r, c], page[top:top + 8, left:left + 8])
    assert sorted(batch.y.tolist()) == list(range(10))  # one image of every digit first


def test_the_codes_frame_is_the_encoders_output_in_half_precision_with_labels_for_a_conditional_model(digits):
    model = _trained("cvae", digits, hidden_sizes=(16,), latent_dim=2)
    batch = fixed_batch(digits, 12)
    frame = codes(model, batch)
    model.eval()
    with torch.no_grad():
        expected = model.encode(batch.map_x, batch.map_y)  # (m, 2): the map's evenly spaced test images
    assert frame["codes"].dtype == np.float16 and frame["codes"].shape == (len(digits.test), 2)
    np.testing.assert_allclose(frame["codes"].astype(np.float32), expected.numpy(), rtol=1e-3, atol=1e-3)
    assert frame["labels"].tolist() == batch.map_y.tolist()
    assert batch.map_index.tolist() == sorted(set(batch.map_index.tolist()))


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_views_take_at_most_their_share_keep_their_periods_and_never_repeat_a_step():
    clock = FakeClock()
    computed: list[tuple[str, int]] = []
    step = 0

    def costly(name: str, cost: float):
        def compute(model, batch):
            computed.append((name, step))
            clock.now += cost
            return {"x": np.zeros(1, dtype=np.uint8)}
        return LiveView(name, {"fast": 0.5, "slow": 3.0}[name], compute)

    schedule = ViewSchedule([costly("fast", 0.05), costly("slow", 0.4)], max_share=0.15, clock=clock)
    runs: dict[str, list[float]] = {"fast": [], "slow": []}
    for chunk in range(600):  # 0.2 s training chunks; the step stands still every fifth chunk (a paused moment)
        clock.now += 0.2
        step += 0 if chunk % 5 == 4 else 1
        for frame in schedule.run_due(None, None, step):
            runs[frame.view].append(clock.now)
    assert schedule.view_seconds <= 0.15 * clock.now + 0.4  # the share, give or take the last view's cost
    assert schedule.view_seconds >= 0.10 * clock.now  # and the views do get their share
    assert len(computed) == len(set(computed))  # no view twice for one step
    for name, period in (("fast", 0.5), ("slow", 3.0)):
        gaps = np.diff(runs[name])
        assert len(gaps) > 5 and gaps.min() >= period - 1e-9
    assert len(runs["fast"]) > len(runs["slow"])


def test_a_share_outside_0_to_1_is_refused():
    with pytest.raises(ValueError, match="max_share: must be in"):
        ViewSchedule(list(VIEWS.values()), max_share=1.5)


def test_the_filter_frame_is_the_pages_filter_grid_tile_by_tile(digits):
    from vaelab.analysis.image_grids import filter_grid, first_layer_weights
    from vaelab.live_frames import filters

    model = _trained("ae", digits, hidden_sizes=(16,), code_size=4)
    frame = filters(model, fixed_batch(digits, 4))["filters"]  # (16, 8, 8) uint8
    grid = filter_grid(first_layer_weights(model), (8, 8), grid=(4, 4), sep=1)  # the page's floats in [0, 1]
    page = (np.clip(grid, 0, 1) * 255).round().astype(np.uint8)
    assert frame.shape == (16, 8, 8)
    for unit in range(16):
        r, c = divmod(unit, 4)
        tile = page[r * 9:r * 9 + 8, c * 9:c * 9 + 8].astype(int)
        assert np.abs(frame[unit].astype(int) - tile).max() <= 1  # float32 rounding at a .5 boundary at most
    assert frame.min() == 0 and frame.max() == 255  # min-max per unit reaches both ends


def test_samples_come_from_the_same_draws_every_time_and_leave_the_global_random_stream_alone(digits):
    from vaelab.live_frames import SAMPLE_SEED, samples

    model = _trained("vae", digits, hidden_sizes=(16,), latent_dim=2)
    batch = fixed_batch(digits, 6)
    before = torch.get_rng_state()
    first, second = samples(model, batch)["samples"], samples(model, batch)["samples"]
    assert torch.equal(torch.get_rng_state(), before)
    assert np.array_equal(first, second) and first.shape == (6, 8, 8)
    model.eval()
    with torch.no_grad():
        expected = model.sample(6, generator=torch.Generator().manual_seed(SAMPLE_SEED))
    assert np.array_equal(first, (expected.clamp(0, 1) * 255).round().to(torch.uint8).numpy().reshape(6, 8, 8))


@pytest.mark.parametrize(("variant", "config", "views"), [
    ("ae", {"hidden_sizes": (16,), "code_size": 4}, ["reconstructions"]),
    ("ae", {"hidden_sizes": (), "code_size": 2}, ["reconstructions", "codes"]),
    ("sparse", {}, ["reconstructions", "filters", "activations"]),
    ("denoising", {"hidden_sizes": (16,), "code_size": 4}, ["denoised"]),
    ("vae", {"hidden_sizes": (16,), "latent_dim": 2}, ["reconstructions", "codes", "manifold", "samples"]),
    ("vae", {"hidden_sizes": (16,), "latent_dim": 3}, ["reconstructions", "samples"]),
    ("ae-gmm", {"hidden_sizes": (16,), "code_size": 2}, ["reconstructions", "codes", "samples"]),
])
def test_each_page_gets_the_views_it_draws_live(digits, variant, config, views):
    from vaelab.live_frames import views_for
    from vaelab.variants import build_model

    model = build_model(variant, get_variant(variant).config_cls(**config), 64)
    assert [v.name for v in views_for(variant, model)] == views
    batch = fixed_batch(digits, 5)
    if variant == "ae-gmm":
        model.on_epoch_end(digits.train.images, digits.train.labels)  # its mixture fitted, as after an epoch
    for view in views_for(variant, model):  # every view computes on a fresh model, and its arrays go on the wire
        arrays = view.compute(model, batch)
        assert all(a.dtype in (np.uint8, np.float16, np.float32) for a in arrays.values())


def test_the_activation_and_manifold_frames_are_the_pages_numbers_and_pixels(digits):
    from vaelab.analysis import generation, inference
    from vaelab.live_frames import MANIFOLD_N, activations, manifold

    sparse = _trained("sparse", digits, hidden_sizes=(), code_size=16, rho=0.1)
    batch = fixed_batch(digits, 5, n_map=200)
    frame = activations(sparse, batch)
    expected = inference.encode_dataset(sparse, batch.map_x).mean(axis=0)  # (units,): what the page's histogram bins
    np.testing.assert_allclose(frame["means"], expected, rtol=1e-5, atol=1e-7)
    assert frame["rho"].tolist() == [pytest.approx(0.1)]
    assert "rho" not in activations(_trained("ksparse", digits, hidden_sizes=(), code_size=16, k=4), batch)

    vae = _trained("vae", digits, hidden_sizes=(16,), latent_dim=2)
    tiles = manifold(vae, batch)["tiles"]  # (n*n, 8, 8)
    page = generation.manifold_grid(vae, MANIFOLD_N, digits.image_shape)  # (n*8, n*8) in [0, 1], no gaps
    assert tiles.shape == (MANIFOLD_N ** 2, 8, 8)
    for k in (0, 7, MANIFOLD_N ** 2 - 1):
        r, c = divmod(k, MANIFOLD_N)
        drawn = page[r * 8:(r + 1) * 8, c * 8:(c + 1) * 8]
        assert np.abs(tiles[k].astype(int) - np.round(drawn * 255).astype(int)).max() <= 1
