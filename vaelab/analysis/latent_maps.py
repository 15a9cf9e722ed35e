"""2-D pictures of codes: t-SNE and PCA maps, the plane a code space is drawn in, and Gaussians seen in that plane."""

from __future__ import annotations

import numpy as np

from vaelab.analysis.inference import ArrayLike, as_codes, to_numpy


def idle_cores() -> int:
    """Cores not busy right now: usable cores minus the 1-minute load average, at least 1 (all where the
    load average is unknown)."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        return cores
    return max(1, min(cores, int(cores - load + 0.5)))


def tsne_2d(codes: ArrayLike, seed: int = 0, perplexity: float = 30.0, max_iter: int = 350, angle: float = 1.0,
            learning_rate: float | str = 200.0, pca_dims: int = 50, n_jobs: int | None = None) -> np.ndarray:
    """A fast t-SNE map of the codes. (N, code_dim) -> (N, 2) float32.

    Tuned for ~2,000 codes: PCA pre-reduction to ``pca_dims``, PCA initialisation, 350 iterations (250 of them
    early exaggeration) at learning rate 200 and a coarser Barnes-Hut angle (1.0), instead of scikit-learn's
    1,000 iterations at rate 50 (its "auto" below 2,400 points) and angle 0.5: on codes of 2,000 MNIST digits
    the trustworthiness stays above 0.98 and a 10-NN classifier on the map does as well, in a quarter of the time.

    ``n_jobs`` is the number of threads (neighbour search and the OpenMP gradient); None takes the idle cores.
    Threads that wait on each other at every iteration are slow on a busy machine: two threads on two cores
    with other work running took 2-5x longer than one.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    c = as_codes(codes)
    n = c.shape[0]
    if not perplexity < n:
        raise ValueError(f"perplexity: must be below the number of codes ({n}), got {perplexity:g}")
    if max_iter < 250:
        raise ValueError(f"max_iter: must be >= 250 (scikit-learn's early-exaggeration phase), got {max_iter}")
    if n_jobs is not None and n_jobs < 1:
        raise ValueError(f"n_jobs: must be None (the idle cores) or >= 1 (got {n_jobs})")
    threads = idle_cores() if n_jobs is None else n_jobs
    if c.shape[1] > pca_dims and n > pca_dims:
        c = PCA(pca_dims, random_state=seed).fit_transform(c).astype(np.float32)  # (N, pca_dims)
    tsne = TSNE(2, perplexity=perplexity, init="pca", learning_rate=learning_rate, max_iter=max_iter, angle=angle,
                random_state=seed, n_jobs=threads)
    with threadpool_limits(threads):
        return tsne.fit_transform(c).astype(np.float32)


def pca_2d(codes: ArrayLike, seed: int = 0) -> np.ndarray:
    """The codes projected on their first two principal components. (N, code_dim) -> (N, 2)."""
    from sklearn.decomposition import PCA

    c = as_codes(codes)
    if c.shape[1] < 2 or c.shape[0] < 2:
        raise ValueError(f"codes: PCA to 2-D needs at least 2 codes of at least 2 units, got shape {c.shape}")
    return PCA(2, random_state=seed).fit_transform(c).astype(np.float32)



LATENT_MAP_METHODS = ("auto", "identity", "tsne", "pca")


def latent_map(codes: ArrayLike, labels: ArrayLike | None = None, method: str = "auto", seed: int = 0,
               n_jobs: int | None = None) -> tuple[np.ndarray, str]:
    """Points to plot for the codes and the method used: (N, 2), "identity" | "tsne" | "pca".

    "auto" shows 2-D codes as they are and maps any other size with t-SNE. ``labels`` (N,) are only checked
    against the number of codes (the caller colours the points with them); ``n_jobs`` goes to ``tsne_2d``.
    """
    if method not in LATENT_MAP_METHODS:
        raise ValueError(f"method: must be one of {', '.join(LATENT_MAP_METHODS)} (got {method!r})")
    c = as_codes(codes)
    if labels is not None and len(labels) != c.shape[0]:
        raise ValueError(f"labels: expected {c.shape[0]} labels (one per code), got {len(labels)}")
    if method == "auto":
        method = "identity" if c.shape[1] == 2 else "tsne"
    if method == "identity":
        if c.shape[1] != 2:
            raise ValueError(f"method: 'identity' needs 2-D codes, got code_dim = {c.shape[1]}")
        return c, method
    if method == "pca":
        return pca_2d(c, seed), method
    return tsne_2d(c, seed=seed, n_jobs=n_jobs), method


def code_plane(codes: ArrayLike) -> tuple[np.ndarray, np.ndarray, str]:
    """A plane to draw codes (N, d) in: (center (d,), axes (2, d), method).

    2-D codes are drawn as they are ("identity": center 0, axes I); wider codes on their first two principal
    axes ("pca": center = the codes' mean, axes = the top two right singular vectors of the centred codes).
    """
    c = as_codes(codes).astype(np.float64)
    d = c.shape[1]
    if d < 2:
        raise ValueError(f"codes: a 2-D view needs codes of at least 2 units, got {d}")
    if d == 2:
        return np.zeros(2), np.eye(2), "identity"
    if c.shape[0] < 2:
        raise ValueError(f"codes: PCA to 2-D needs at least 2 codes, got {c.shape[0]}")
    center = c.mean(axis=0)  # (d,)
    _, _, vt = np.linalg.svd(c - center, full_matrices=False)
    return center, vt[:2], "pca"


def project_to_plane(points: ArrayLike, center: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """A (p - center) for points (N, d) and axes A (2, d). -> (N, 2) float32"""
    p = to_numpy(points, np.float64)
    if p.ndim != 2 or p.shape[1] != axes.shape[1]:
        raise ValueError(f"points: expected shape (N, {axes.shape[1]}), got {p.shape}")
    return ((p - center) @ axes.T).astype(np.float32)


def project_gaussians(means: ArrayLike, covariances: ArrayLike, center: np.ndarray, axes: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Each Gaussian N(m_k, C_k) seen in the plane: its marginal N(A (m_k - center), A C_k A^T).

    means (K, d), covariances (K, d, d), axes A (2, d) -> (means (K, 2), covariances (K, 2, 2)) float64."""
    mu, cov = to_numpy(means, np.float64), to_numpy(covariances, np.float64)
    d = axes.shape[1]
    if mu.ndim != 2 or mu.shape[1] != d or cov.shape != (mu.shape[0], d, d):
        raise ValueError(f"means, covariances: expected (K, {d}) and (K, {d}, {d}), got {mu.shape} and {cov.shape}")
    return (mu - center) @ axes.T, axes @ cov @ axes.T


def mixture_ellipses(means: ArrayLike, covariances: ArrayLike, n_std: float = 2.0, n_points: int = 60
                     ) -> list[np.ndarray]:
    """Closed outlines {mu + n_std * L [cos t, sin t]} (L L^T = Sigma) of 2-D Gaussians.

    means (K, 2), covariances (K, 2, 2) -> K arrays (n_points, 2); the first and last points coincide.
    """
    mu, cov = to_numpy(means, np.float64), to_numpy(covariances, np.float64)
    if mu.ndim != 2 or mu.shape[1] != 2 or cov.shape != (mu.shape[0], 2, 2):
        raise ValueError(f"means, covariances: expected (K, 2) and (K, 2, 2), got {mu.shape} and {cov.shape}")
    t = np.linspace(0.0, 2.0 * np.pi, n_points)
    circle = np.stack([np.cos(t), np.sin(t)])  # (2, n_points)
    outlines = []
    for m, s in zip(mu, cov, strict=True):
        evals, evecs = np.linalg.eigh(0.5 * (s + s.T))
        scale = evecs * np.sqrt(np.clip(evals, 0.0, None))  # (2, 2): columns = principal axes
        outlines.append(m + n_std * (scale @ circle).T)
    return outlines
