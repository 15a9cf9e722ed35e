"""Autoencoder + Gaussian mixture [ae-gmm]: a plain autoencoder (2-D code by default, no KL term) made generative
by a Gaussian mixture fitted on the training codes after each epoch.

The mixture is kept as buffers (weights, means, full covariances, a fitted flag), so it travels in the state_dict
and loads with ``torch.load(..., weights_only=True)``; no scikit-learn object is stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.mixture import GaussianMixture

from vaelab.config import ConfigError, param
from vaelab.variants import ae

COVARIANCE_TYPES = ("full", "diag", "spherical", "tied")
ENCODE_BATCH = 1000


@dataclass
class Config(ae.Config):
    hidden_sizes: tuple[int, ...] = param(
        (512, 256), label="Hidden layers", help="Sizes of the encoder's hidden layers (decoder mirrors them); "
                                                "empty for a single layer.", low=1, high=4096)
    code_size: int = param(2, label="Code size", help="Units in the bottleneck code (2 lets you see the mixture).",
                           low=1, high=4096)
    n_components: int = param(10, label="Mixture components",
                              help="Gaussians in the mixture fitted on the training codes.", low=1, high=200)
    covariance_type: str = param("full", label="Covariance type",
                                 help="Shape of each component's covariance (scikit-learn's covariance_type).",
                                 choices=COVARIANCE_TYPES)

    PRESETS = {
        "default": {},
        "diag-code-8": {"code_size": 8, "covariance_type": "diag"},
        "one-gaussian": {"n_components": 1},
    }


def full_covariances(gm: GaussianMixture) -> np.ndarray:
    """A fitted mixture's covariances as full matrices, whatever its covariance_type. -> (K, d, d)"""
    k, d = gm.means_.shape
    cov = np.asarray(gm.covariances_, dtype=np.float64)
    if gm.covariance_type == "full":
        return cov
    if gm.covariance_type == "tied":
        return np.broadcast_to(cov, (k, d, d)).copy()
    if gm.covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    if gm.covariance_type == "spherical":
        return cov[:, None, None] * np.eye(d)[None]
    raise ConfigError("covariance_type", f"must be one of {', '.join(COVARIANCE_TYPES)} (got {gm.covariance_type!r})")


class Model(ae.Model):
    """The MLP autoencoder of ``ae`` plus a mixture over its codes (buffers ``mixture_*``)."""

    generative = True

    def __init__(self, config: Config, input_dim: int, n_classes: int = 10):
        super().__init__(config, input_dim, n_classes)
        k, d = config.n_components, config.code_size
        self.register_buffer("mixture_weights", torch.full((k,), 1.0 / k))
        self.register_buffer("mixture_means", torch.zeros(k, d))
        self.register_buffer("mixture_covariances", torch.eye(d).repeat(k, 1, 1))
        self.register_buffer("mixture_fitted", torch.zeros((), dtype=torch.bool))

    # -- fitting --------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_dataset(self, x: torch.Tensor, batch_size: int = ENCODE_BATCH) -> torch.Tensor:
        """Codes of a whole dataset in eval mode, batched. (N, D) -> (N, code)"""
        was_training = self.training
        self.eval()
        try:
            codes = [self.encode(x[i:i + batch_size].to(self.device)) for i in range(0, x.shape[0], batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(codes)

    def fit_mixture(self, codes: torch.Tensor) -> GaussianMixture:
        """Fit GaussianMixture(n_components, covariance_type, random_state=0) on codes (N, d); store it as buffers.

        Returns the fitted scikit-learn object for callers that want it (it is not kept)."""
        c = self.config
        codes_np = codes.detach().cpu().double().numpy()
        if codes_np.ndim != 2 or codes_np.shape[1] != c.code_size:
            raise ValueError(f"codes: expected shape (N, {c.code_size}), got {tuple(codes_np.shape)}")
        if codes_np.shape[0] < c.n_components:
            raise ConfigError("n_components", f"{c.n_components} components need at least as many codes "
                                              f"(got {codes_np.shape[0]})")
        if not np.isfinite(codes_np).all():
            raise ValueError("codes: contain NaN or inf; the autoencoder diverged")
        gm = GaussianMixture(n_components=c.n_components, covariance_type=c.covariance_type, random_state=0)
        gm.fit(codes_np)
        dtype = self.mixture_means.dtype
        self.mixture_weights.copy_(torch.as_tensor(gm.weights_, dtype=dtype))
        self.mixture_means.copy_(torch.as_tensor(gm.means_, dtype=dtype))
        self.mixture_covariances.copy_(torch.as_tensor(full_covariances(gm), dtype=dtype))
        self.mixture_fitted.fill_(True)
        return gm

    def on_epoch_end(self, train_x: torch.Tensor, train_y: torch.Tensor) -> None:
        self.fit_mixture(self.encode_dataset(train_x))

    # -- the mixture as a density and a sampler -------------------------------------------------------
    def _require_fitted(self) -> None:
        if not bool(self.mixture_fitted):
            raise RuntimeError("ae-gmm: the Gaussian mixture is not fitted yet; train for an epoch "
                               "(on_epoch_end) or call fit_mixture(codes) first")

    def _mixture64(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(weights (K,), means (K, d), Cholesky factors (K, d, d)) in float64."""
        cov = self.mixture_covariances.double()
        return self.mixture_weights.double(), self.mixture_means.double(), torch.linalg.cholesky(cov)

    def mixture_log_density(self, z: torch.Tensor) -> torch.Tensor:
        """log sum_k w_k N(z; m_k, C_k). z: (B, d) -> (B,)"""
        self._require_fitted()
        weights, means, chol = self._mixture64()
        components = torch.distributions.MultivariateNormal(means, scale_tril=chol)  # batch (K,)
        log_pk = components.log_prob(z.double().unsqueeze(1))  # (B, 1, d) -> (B, K)
        return torch.logsumexp(log_pk + weights.log(), dim=1).to(z.dtype)

    def sample_codes(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw k ~ Categorical(weights), z ~ N(m_k, C_k). -> (z (n, d), k (n,))"""
        self._require_fitted()
        weights, means, chol = self._mixture64()
        draw_device = generator.device if generator is not None else self.device
        k = torch.multinomial(weights.to(draw_device), n, replacement=True, generator=generator)  # (n,)
        eps = torch.randn((n, self.config.code_size), dtype=torch.float64, device=draw_device, generator=generator)
        k = k.to(self.device)
        z = means[k] + (chol[k] @ eps.to(self.device).unsqueeze(-1)).squeeze(-1)  # (n, d)
        return z.to(self.mixture_means.dtype), k

    def sample(self, n: int, y: torch.Tensor | None = None, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """Codes from the fitted mixture, decoded. -> (n, D) in [0, 1]"""
        z, _ = self.sample_codes(n, generator)
        return self.decode(z)

    def sample_standard_normal(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode z ~ N(0, I): what a plain autoencoder "generates" without a model of its code space. -> (n, D)"""
        draw_device = generator.device if generator is not None else self.device
        z = torch.randn((n, self.config.code_size), generator=generator, device=draw_device)
        return self.decode(z.to(device=self.device, dtype=self.mixture_means.dtype))
