"""vaelab.analysis (inference, latent maps, image grids, generation, sparsity, robustness): codes, maps, grids and
lesson curves against independent computations (scipy, numpy, torch.distributions, direct calls of the model)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import ndtri
from torch import distributions as dist

from vaelab.analysis import generation, image_grids, inference, latent_maps, robustness, sparsity
from vaelab.variants import build_model, get_variant

H, W = 3, 4  # tiny images keep every model here instant
D = H * W


def tiny_model(key: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    config = get_variant(key).config_cls(**overrides)
    return build_model(key, config, input_dim=D)


def rand_images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, D, generator=torch.Generator().manual_seed(seed))


def tile(grid: np.ndarray, r: int, c: int, sep: int) -> np.ndarray:
    return grid[r * (H + sep):r * (H + sep) + H, c * (W + sep):c * (W + sep) + W]


# ---------------------------------------------------------------- encoding
@pytest.mark.parametrize("was_training", [True, False])
def test_encode_dataset_matches_encode_in_batches_and_restores_mode(was_training):
    model = tiny_model("ae", hidden_sizes=(8,), code_size=5)
    model.train(was_training)
    x = rand_images(23)
    codes = inference.encode_dataset(model, x, batch_size=7)  # 4 batches, the last one short
    assert codes.shape == (23, 5) and codes.dtype == np.float32
    with torch.no_grad():
        expected = model.eval().encode(x).numpy()
    model.train(was_training)
    np.testing.assert_allclose(codes, expected, rtol=1e-5, atol=1e-6)
    assert model.training is was_training


def test_encode_dataset_passes_labels_to_a_conditional_model():
    model = tiny_model("cvae", hidden_sizes=(8,), latent_dim=3)
    x, y = rand_images(10), torch.arange(10) % 10
    with pytest.raises(ValueError, match="y"):
        inference.encode_dataset(model, x)
    codes = inference.encode_dataset(model, x, y, batch_size=4)
    with torch.no_grad():
        expected = model.eval().encode(x, y).numpy()
    np.testing.assert_allclose(codes, expected, rtol=1e-5, atol=1e-6)
    # a different label changes the code: the labels really reach the encoder
    assert not np.allclose(codes, inference.encode_dataset(model, x, (y + 1) % 10))


def test_encode_dataset_rejects_wrong_image_size():
    with pytest.raises(ValueError, match="pixels"):
        inference.encode_dataset(tiny_model("ae"), torch.rand(4, D + 1))


# ---------------------------------------------------------------- 2-D maps
def test_tsne_separates_two_far_apart_clusters():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 1.0, (150, 10))
    b = rng.normal(0.0, 1.0, (150, 10)) + 40.0
    emb = latent_maps.tsne_2d(np.concatenate([a, b]), seed=0, n_jobs=1)  # one thread: the test machine is shared
    assert emb.shape == (300, 2) and np.isfinite(emb).all()
    ca, cb = emb[:150].mean(0), emb[150:].mean(0)
    nearer_own = np.concatenate([np.linalg.norm(emb[:150] - ca, axis=1) < np.linalg.norm(emb[:150] - cb, axis=1),
                                 np.linalg.norm(emb[150:] - cb, axis=1) < np.linalg.norm(emb[150:] - ca, axis=1)])
    assert nearer_own.all()


def test_tsne_rejects_too_few_codes_and_bad_values():
    with pytest.raises(ValueError, match="perplexity"):
        latent_maps.tsne_2d(np.zeros((20, 3)))
    with pytest.raises(ValueError, match="NaN"):
        latent_maps.tsne_2d(np.full((50, 3), np.nan))


def test_idle_cores_follow_the_load_average(monkeypatch):
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert latent_maps.idle_cores() == cores
    monkeypatch.setattr(os, "getloadavg", lambda: (cores + 3.0, 0.0, 0.0))
    assert latent_maps.idle_cores() == 1


def test_latent_map_keeps_2d_codes_and_maps_others():
    codes = np.random.default_rng(1).normal(size=(40, 2)).astype(np.float32)
    points, method = latent_maps.latent_map(codes, labels=np.zeros(40))
    assert method == "identity"
    np.testing.assert_array_equal(points, codes)
    codes6 = np.random.default_rng(2).normal(size=(40, 6))
    points, method = latent_maps.latent_map(codes6, method="pca")
    assert method == "pca" and points.shape == (40, 2)
    centred = codes6 - codes6.mean(0)  # PCA = projection on the top right-singular vectors (up to sign)
    top = np.linalg.svd(centred, full_matrices=False)[2][:2]
    np.testing.assert_allclose(np.abs(points), np.abs(centred @ top.T), rtol=1e-4, atol=1e-4)
    points, method = latent_maps.latent_map(np.random.default_rng(3).normal(size=(120, 3)), n_jobs=1)
    assert method == "tsne" and points.shape == (120, 2)
    with pytest.raises(ValueError, match="labels"):
        latent_maps.latent_map(codes, labels=np.zeros(39))
    with pytest.raises(ValueError, match="method"):
        latent_maps.latent_map(codes, method="umap")


# ---------------------------------------------------------------- grids
def test_filter_grid_tiles_are_min_max_normalised_weights():
    weight = torch.randn(7, D, generator=torch.Generator().manual_seed(3))
    weight[6] = 0.25  # a constant unit shows as mid-grey
    grid = image_grids.filter_grid(weight, (H, W))  # 7 units -> 3 columns, 3 rows
    assert grid.shape == (3 * H + 2, 3 * W + 2)
    for unit in range(7):
        r, c = divmod(unit, 3)
        w = weight[unit].numpy().reshape(H, W)
        expected = np.full((H, W), 0.5) if unit == 6 else (w - w.min()) / (w.max() - w.min())
        np.testing.assert_allclose(tile(grid, r, c, 1), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(grid[H, :], 1.0)  # separator row
    np.testing.assert_array_equal(tile(grid, 2, 1, 1), 1.0)  # empty cells
    assert image_grids.filter_grid(torch.randn(144, 28 * 28), (28, 28)).shape == (12 * 28 + 11, 12 * 28 + 11)
    with pytest.raises(ValueError, match="grid"):
        image_grids.filter_grid(weight, (H, W), grid=(2, 3))


def test_near_square_grid():
    assert image_grids.near_square_grid(144) == (12, 12)
    assert image_grids.near_square_grid(20) == (4, 5)
    for n in range(1, 60):
        rows, cols = image_grids.near_square_grid(n)
        assert rows * cols >= n and (rows - 1) * cols < n and abs(rows - cols) <= 1


@pytest.mark.parametrize("key,overrides,expected_units", [
    ("ae", {"hidden_sizes": (6,), "code_size": 2}, 6),
    ("sparse", {"hidden_sizes": (), "code_size": 9}, 9),
    ("vae", {"hidden_sizes": (), "latent_dim": 2}, 2),  # no hidden layer: the mean head reads the pixels
    ("cvae", {"hidden_sizes": (5,), "latent_dim": 2}, 5),  # label columns dropped
])
def test_first_layer_weights_reads_the_pixels(key, overrides, expected_units):
    model = tiny_model(key, **overrides)
    w = image_grids.first_layer_weights(model)
    assert w.shape == (expected_units, D)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    np.testing.assert_array_equal(w, first.weight.detach().numpy()[:, :D])


def test_image_grid_tiles_images_unchanged():
    images = rand_images(5).numpy()
    grid = image_grids.image_grid(images, (H, W), ncols=2)
    assert grid.shape == (3 * H + 2, 2 * W + 1)
    for i in range(5):
        np.testing.assert_array_equal(tile(grid, i // 2, i % 2, 1), images[i].reshape(H, W))


# ---------------------------------------------------------------- the latent space
def test_manifold_latents_are_inverse_normal_cdf_and_symmetric():
    n = 5
    z = generation.manifold_latents(n)
    assert z.shape == (n * n, 2)
    q = ndtri(np.linspace(0.05, 0.95, n))  # scipy's inverse normal CDF
    grid = z.reshape(n, n, 2)  # (row, col, coordinate)
    np.testing.assert_allclose(grid[0, :, 0], q, rtol=1e-5, atol=1e-6)  # z1 grows left to right
    np.testing.assert_allclose(grid[:, 0, 1], q[::-1], rtol=1e-5, atol=1e-6)  # z2 largest at the top
    np.testing.assert_allclose(q, -q[::-1], atol=1e-12)
    np.testing.assert_allclose(np.sort(z, axis=0), np.sort(-z, axis=0), atol=1e-6)  # the grid is symmetric
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-6)


def test_manifold_grid_decodes_the_grid():
    model = tiny_model("vae", hidden_sizes=(8,), latent_dim=2)
    n = 4
    grid = generation.manifold_grid(model, n=n, image_shape=(H, W))
    assert grid.shape == (n * H, n * W)
    z = torch.from_numpy(generation.manifold_latents(n))
    with torch.no_grad():
        images = model.eval().decode(z).numpy()
    for r in range(n):
        for c in range(n):
            np.testing.assert_allclose(tile(grid, r, c, 0), images[r * n + c].reshape(H, W), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="code_dim"):
        generation.manifold_grid(tiny_model("vae", hidden_sizes=(8,), latent_dim=3), n=n, image_shape=(H, W))


def test_manifold_grid_of_a_conditional_model_uses_the_label():
    model = tiny_model("cvae", hidden_sizes=(8,), latent_dim=2)
    grid3 = generation.manifold_grid(model, n=3, image_shape=(H, W), y=3)
    z = torch.from_numpy(generation.manifold_latents(3))
    with torch.no_grad():
        first = model.eval().decode(z[:1], 3).numpy().reshape(H, W)
    np.testing.assert_allclose(tile(grid3, 0, 0, 0), first, rtol=1e-5, atol=1e-6)


def test_interpolation_endpoints_decode_the_endpoint_codes_and_midpoint_is_linear():
    model = tiny_model("ae", hidden_sizes=(8,), code_size=3)
    x = rand_images(2, seed=4)
    path = generation.interpolate(model, x[0], x[1], steps=5)
    assert path.shape == (5, D)
    with torch.no_grad():
        za, zb = model.encode(x[:1]), model.encode(x[1:])
        expected = [model.decode(za), model.decode(0.5 * (za + zb)), model.decode(zb)]
    for row, e in zip((0, 2, 4), expected, strict=True):
        np.testing.assert_allclose(path[row], e[0].numpy(), rtol=1e-5, atol=1e-6)


def test_latent_traversal_sets_one_unit():
    model = tiny_model("vae", hidden_sizes=(8,), latent_dim=3)
    x = rand_images(1, seed=5)
    values = [-2.0, 0.0, 2.0]
    out = generation.latent_traversal(model, x, dim=1, values=values)
    assert out.shape == (3, D)
    with torch.no_grad():
        z = model.eval().encode(x).repeat(3, 1)
        z[:, 1] = torch.tensor(values)
        expected = model.decode(z).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="dim"):
        generation.latent_traversal(model, x, dim=3, values=values)


# ---------------------------------------------------------------- lesson curves
def test_kl_bernoulli_curve_is_zero_at_rho_and_matches_torch_distributions():
    rho = 0.25
    rho_hat, kl = sparsity.kl_bernoulli_curve(rho, n=200)
    assert rho_hat.shape == kl.shape == (200,)
    assert rho_hat.min() > 0.0 and rho_hat.max() < 1.0 and np.all(np.diff(rho_hat) > 0)
    assert kl.min() == pytest.approx(0.0, abs=1e-12) and rho_hat[np.argmin(kl)] == pytest.approx(rho)
    p = torch.full((200,), rho, dtype=torch.float64)
    expected = dist.kl_divergence(dist.Bernoulli(probs=p), dist.Bernoulli(probs=torch.from_numpy(rho_hat)))
    np.testing.assert_allclose(kl, expected.numpy(), rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="rho"):
        sparsity.kl_bernoulli_curve(1.0)


def test_corruption_sweep_compares_reconstructions_of_corrupted_inputs_with_clean_images():
    model = tiny_model("ae", hidden_sizes=(8,), code_size=3)
    x = rand_images(16, seed=6)
    calls = []

    def zero_fraction(x_in, kind, level, generator):  # zero the first `level` fraction of pixels
        calls.append((kind, level, isinstance(generator, torch.Generator)))
        out = x_in.clone()
        out[:, :int(level * D)] = 0.0
        return out

    errors = robustness.corruption_sweep(model, x, "masking", [0.0, 0.5], zero_fraction)
    assert calls == [("masking", 0.0, True), ("masking", 0.5, True)]
    x_half = x.clone()
    x_half[:, :D // 2] = 0.0
    with torch.no_grad():
        expected = [float(((model.reconstruct(xi) - x) ** 2).sum(1).mean()) for xi in (x, x_half)]
    np.testing.assert_allclose(errors, expected, rtol=1e-5)


def test_corruption_sweep_draws_the_same_noise_for_every_model():
    from vaelab.variants.denoising import corrupt

    model = tiny_model("denoising", hidden_sizes=(8,), code_size=3)
    x = rand_images(16, seed=7)
    first = robustness.corruption_sweep(model, x, "gaussian", [0.1, 0.3], corrupt, seed=3)
    assert first == robustness.corruption_sweep(model, x, "gaussian", [0.1, 0.3], corrupt, seed=3)
    assert first != robustness.corruption_sweep(model, x, "gaussian", [0.1, 0.3], corrupt, seed=4)


def test_sensitivity_of_a_linear_encoder_grows_linearly_with_eps():
    model = tiny_model("ae", hidden_sizes=(), code_size=4)  # f(x) = W x + b
    x = rand_images(10, seed=8)
    eps = [0.01, 0.1, 1.0]
    change = robustness.sensitivity_curve(model, x, eps, n_directions=5)
    per_eps = robustness.sensitivity_curve(model, x, eps, n_directions=5, per_eps=True)
    np.testing.assert_allclose(change / np.asarray(eps), per_eps, rtol=1e-5)
    np.testing.assert_allclose(per_eps, per_eps[0], rtol=1e-3)  # ||W (eps u)|| / eps = ||W u||
    # ||W u|| for unit u is at most the largest singular value of W
    assert 0.0 < per_eps[0] <= torch.linalg.svdvals(model.encoder[0].weight.detach()).max() + 1e-6
    assert robustness.sensitivity_curve(model, x, [0.0])[0] == 0.0


def test_mixture_ellipse_radius_matches_covariance():
    means = np.array([[1.0, -2.0], [0.0, 0.0]])
    angle = math.pi / 6
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    covs = np.stack([np.diag([4.0, 1.0]), rot @ np.diag([9.0, 0.25]) @ rot.T])
    diag, rotated = latent_maps.mixture_ellipses(means, covs, n_std=2.0, n_points=101)
    assert diag.shape == rotated.shape == (101, 2)
    np.testing.assert_allclose(diag[0], diag[-1])  # closed
    d = diag - means[0]
    np.testing.assert_allclose(np.abs(d).max(axis=0), [2.0 * 2.0, 2.0 * 1.0], rtol=1e-3)  # n_std * sigma per axis
    for e, m, c in ((diag, means[0], covs[0]), (rotated, means[1], covs[1])):
        offset = e - m
        mahalanobis = np.sqrt(np.einsum("ni,ij,nj->n", offset, np.linalg.inv(c), offset))
        np.testing.assert_allclose(mahalanobis, 2.0, rtol=1e-9)
    with pytest.raises(ValueError, match="covariances"):
        latent_maps.mixture_ellipses(means, np.ones((2, 2)))


def test_code_statistics():
    codes = np.array([[0.0, 1.0, 0.0], [0.0, 3.0, -2.0], [0.0, 2.0, 0.0], [0.0, 2.0, 0.0]])
    stats = sparsity.code_statistics(codes)
    np.testing.assert_allclose(stats["mean"], [0.0, 2.0, -0.5])
    np.testing.assert_allclose(stats["std"], codes.std(axis=0), rtol=1e-6)
    np.testing.assert_allclose(stats["active_fraction"], [0.0, 1.0, 0.25])
    assert stats["dead_units"] == 1
    assert stats["active_per_example"] == pytest.approx(1.25)
    assert sorted(stats["values"].tolist()) == sorted(codes.ravel().tolist())
    assert sparsity.code_statistics(np.ones((100, 10)), max_values=50)["values"].shape == (50,)
