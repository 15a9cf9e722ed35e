"""Autoencoder + Gaussian mixture [ae-gmm]: a plain autoencoder (2-D code by default, no KL term) made generative
by a Gaussian mixture fitted on the training codes after each epoch.

The mixture is kept as buffers (weights, means, full covariances, covariance type, a fitted flag), so it travels in
the state_dict and loads with ``torch.load(..., weights_only=True)``; no scikit-learn object is stored.
The config's ``n_components`` / ``covariance_type`` are the first settings; ``fit_mixture`` may refit with others
(the buffers change shape, and loading a state_dict takes whatever mixture size it holds), and each epoch's refit
keeps the settings of the last fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.mixture import GaussianMixture

from vaelab.config import ConfigError, param, redefault
from vaelab.variants import ae

COVARIANCE_TYPES = ("full", "diag", "spherical", "tied")
ENCODE_BATCH = 1000
MAX_COMPONENTS = 200


@dataclass
class Config(ae.Config):
    hidden_sizes: tuple[int, ...] = param(
        (512, 256), label="Hidden layers", help="Sizes of the encoder's hidden layers (decoder mirrors them); "
                                                "empty for a single layer.", low=1, high=4096)
    code_size: int = param(2, label="Code size", help="Units in the bottleneck code (2 lets you see the mixture).",
                           low=1, high=4096)
    n_components: int = param(10, label="Mixture components",
                              help="Gaussians in the mixture fitted on the training codes.", low=1, high=MAX_COMPONENTS)
    covariance_type: str = param("full", label="Covariance type",
                                 help="Shape of each component's covariance (scikit-learn's covariance_type).",
                                 choices=COVARIANCE_TYPES)

    epochs: int = redefault(ae.Config, "epochs", 20)

    PRESETS = {
        "default": {},
        "diag-code-8": {"code_size": 8, "covariance_type": "diag"},
        "one-gaussian": {"n_components": 1},
    }
    PRESET_NOTES = {
        "default": "The lab report's figure \"2d points in latent space / GMM model\": a 784-512-256-2 autoencoder "
                   "(no KL term), 20 epochs, a 10-component full-covariance mixture fitted on its training codes.",
        "diag-code-8": "An 8-D code with diagonal covariances (the map shows a projection).",
        "one-gaussian": "One Gaussian fitted on the codes: its samples fall in the holes between the digit clusters.",
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


def check_mixture_settings(n_components: int, covariance_type: str) -> None:
    """ConfigError naming the field when a mixture setting is not allowed (the Config's own ranges)."""
    whole = not isinstance(n_components, bool) and isinstance(n_components, int | np.integer)
    if not whole or not 1 <= n_components <= MAX_COMPONENTS:
        raise ConfigError("n_components", f"must be a whole number in [1, {MAX_COMPONENTS}] (got {n_components!r})")
    if covariance_type not in COVARIANCE_TYPES:
        raise ConfigError("covariance_type", f"must be one of {', '.join(COVARIANCE_TYPES)} (got {covariance_type!r})")


class Model(ae.Model):
    """The MLP autoencoder of ``ae`` plus a mixture over its codes (buffers ``mixture_*``).

    ``mixture_version`` (a plain int, not saved) counts fits, so a view can tell that the mixture changed."""

    generative = True
    MIXTURE_BUFFERS = ("mixture_weights", "mixture_means", "mixture_covariances")  # (K,), (K, d), (K, d, d)
    resizable_state = MIXTURE_BUFFERS

    def __init__(self, config: Config, input_dim: int, n_classes: int = 10):
        super().__init__(config, input_dim, n_classes)
        self._set_mixture_size(config.n_components)
        self.register_buffer("mixture_covariance_type",
                             torch.tensor(COVARIANCE_TYPES.index(config.covariance_type), dtype=torch.long))
        self.register_buffer("mixture_fitted", torch.zeros((), dtype=torch.bool))
        self.mixture_version = 0

    def _set_mixture_size(self, k: int) -> None:
        """(Re)create the mixture buffers for k components, unfitted values (uniform weights, N(0, I) parts)."""
        d = self.config.code_size
        old = getattr(self, "mixture_means", None)
        kw = {} if old is None else {"dtype": old.dtype, "device": old.device}
        self.register_buffer("mixture_weights", torch.full((k,), 1.0 / k, **kw))
        self.register_buffer("mixture_means", torch.zeros(k, d, **kw))
        self.register_buffer("mixture_covariances", torch.eye(d, **kw).repeat(k, 1, 1))

    def stored_state_problem(self, state: dict) -> str | None:
        """The stored mixture: weights (K,), means (K, d), covariances (K, d, d) of floats, K within the config's
        range of n_components and d the code size."""
        tensors = [state.get(name) for name in self.MIXTURE_BUFFERS]
        if not all(isinstance(t, torch.Tensor) and t.is_floating_point() for t in tensors):
            return "its mixture's weights, means and covariances must be tensors of numbers"
        weights, means, covariances = tensors
        k, d = (weights.shape[0] if weights.dim() == 1 else -1), self.config.code_size
        if not 1 <= k <= MAX_COMPONENTS:
            return (f"its mixture has weights of shape {list(weights.shape)}; it may have 1 to {MAX_COMPONENTS} "
                    "components")
        if tuple(means.shape) != (k, d) or tuple(covariances.shape) != (k, d, d):
            return (f"its mixture's means {list(means.shape)} and covariances {list(covariances.shape)} do not fit "
                    f"{k} components in a {d}-D code (expected [{k}, {d}] and [{k}, {d}, {d}])")
        return None

    @property
    def mixture_components(self) -> int:
        """K of the mixture held now (the last fit's, or the config's before any fit)."""
        return self.mixture_weights.shape[0]

    @property
    def mixture_covariance(self) -> str:
        """covariance_type of the mixture held now."""
        return COVARIANCE_TYPES[int(self.mixture_covariance_type)]

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        """Take the stored mixture's size (it may have been refit with another K than the config's)."""
        weights = state_dict.get(prefix + "mixture_weights")
        if isinstance(weights, torch.Tensor) and weights.dim() == 1 and weights.shape[0] != self.mixture_components:
            self._set_mixture_size(weights.shape[0])
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

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

    def fit_mixture(self, codes: torch.Tensor, n_components: int | None = None, covariance_type: str | None = None
                    ) -> GaussianMixture:
        """Fit GaussianMixture(n_components, covariance_type, random_state=0) on codes (N, d); store it as buffers.

        n_components / covariance_type default to the mixture held now (at first the config's); another K gives
        the buffers a new shape. The autoencoder is untouched. Returns the fitted scikit-learn object (not kept)."""
        k = self.mixture_components if n_components is None else n_components
        cov_type = self.mixture_covariance if covariance_type is None else covariance_type
        check_mixture_settings(k, cov_type)
        d = self.config.code_size
        codes_np = codes.detach().cpu().double().numpy()
        if codes_np.ndim != 2 or codes_np.shape[1] != d:
            raise ValueError(f"codes: expected shape (N, {d}), got {tuple(codes_np.shape)}")
        if codes_np.shape[0] < k:
            raise ConfigError("n_components", f"{k} components need at least as many codes "
                                              f"(got {codes_np.shape[0]})")
        if not np.isfinite(codes_np).all():
            raise ValueError("codes: contain NaN or inf; the autoencoder diverged")
        gm = GaussianMixture(n_components=int(k), covariance_type=cov_type, random_state=0)
        gm.fit(codes_np)
        if int(k) != self.mixture_components:
            self._set_mixture_size(int(k))
        dtype = self.mixture_means.dtype
        self.mixture_weights.copy_(torch.as_tensor(gm.weights_, dtype=dtype))
        self.mixture_means.copy_(torch.as_tensor(gm.means_, dtype=dtype))
        self.mixture_covariances.copy_(torch.as_tensor(full_covariances(gm), dtype=dtype))
        self.mixture_covariance_type.fill_(COVARIANCE_TYPES.index(cov_type))
        self.mixture_fitted.fill_(True)
        self.mixture_version += 1
        return gm

    def refit_mixture(self, train_x: torch.Tensor, n_components: int | None = None,
                      covariance_type: str | None = None) -> GaussianMixture:
        """Encode the training images (N, D) and fit the mixture on their codes (see ``fit_mixture``); the
        autoencoder is not retrained."""
        return self.fit_mixture(self.encode_dataset(train_x), n_components, covariance_type)

    def on_epoch_end(self, train_x: torch.Tensor, train_y: torch.Tensor) -> None:
        """Refit the mixture on the new codes, with the settings of the last fit."""
        self.refit_mixture(train_x)

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

    def standard_normal_codes(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """z ~ N(0, I) in the code space, on the model's device. -> (n, d)"""
        draw_device = generator.device if generator is not None else self.device
        z = torch.randn((n, self.config.code_size), generator=generator, device=draw_device)
        return z.to(device=self.device, dtype=self.mixture_means.dtype)

    def sample_standard_normal(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decode z ~ N(0, I): what a plain autoencoder "generates" without a model of its code space. -> (n, D)"""
        return self.decode(self.standard_normal_codes(n, generator))
