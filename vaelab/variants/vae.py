"""Variational autoencoder [vae]: Gaussian q(z|x), N(0, I) prior, reparameterised samples, analytic KL.

Loss terms (nats per image, averaged over the batch):
    reconstruction = -E_q[log p(x|z)]      (Monte-Carlo, L = n_samples draws per image)
    kl             = KL(q(z|x) || N(0, I)) (closed form)
    total          = reconstruction + beta * kl   (beta = 1: the negative ELBO)

Decoder: ``bernoulli`` (logits; grey levels are allowed as targets) or ``gaussian`` (mean = sigmoid(output)
so it lies in [0, 1], variance fixed or learned). The learned variance is one log-variance per pixel, shared by
all images (a parameter, not a head): it is stable and easy to show as an image. It is clamped below at
``LEARNED_LOGVAR_MIN`` because MNIST background pixels are exactly 0, where an unbounded density would let
the variance, and the log-likelihood, run away.

The conditional VAE (cvae.py) subclasses this model and only overrides ``condition`` (what the encoder and
decoder see besides x and z), so the ELBO code exists once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from vaelab import losses
from vaelab.config import BaseConfig, param, redefault
from vaelab.nn import mlp
from vaelab.variants.base import Variant

LEARNED_LOGVAR_MIN = -6.0  # sigma >= exp(-3) ~ 0.05 of the pixel range, for the learned decoder variance


@dataclass
class Config(BaseConfig):
    hidden_sizes: tuple[int, ...] = param(
        (512, 256), label="Hidden layers", help="Sizes of the encoder's hidden layers (the decoder mirrors them); "
                                            "empty for linear maps.", low=1, high=4096)
    latent_dim: int = param(2, label="Latent dimension", help="Dimension d of z; 2 lets you plot the latent space.",
                            low=1, high=1024)
    activation: str = param("relu", label="Hidden activation", help="Non-linearity of the hidden layers.",
                            choices=("relu", "tanh", "sigmoid", "elu"))
    decoder: str = param("bernoulli", label="Decoder",
                         help="bernoulli: p(x|z) independent Bernoullis (BCE summed over pixels); "
                              "gaussian: independent Gaussians with mean in [0,1].",
                         choices=("bernoulli", "gaussian"))
    gaussian_variance: str = param("fixed", label="Gaussian variance",
                                   help="Gaussian decoder only. fixed: sigma^2 = exp(decoder_logvar); "
                                        "learned: one log-variance per pixel, starting at decoder_logvar.",
                                   choices=("fixed", "learned"))
    decoder_logvar: float = param(
        -2.3, label="Decoder log-variance",
        help="Gaussian decoder only: log sigma^2 per pixel. -2.3 gives sigma^2 ~ 0.1, about the squared error of "
             "a blurry reconstruction, so reconstruction and KL weigh alike; 0 (sigma^2 = 1) lets the KL win and "
             "the posterior collapse.", low=-10.0, high=5.0)
    beta: float = param(1.0, label="beta (KL weight)",
                        help="Weight of the KL term; 1 is the ELBO, > 1 a beta-VAE, 0 an autoencoder with noise.",
                        low=0.0, high=1000.0)
    n_samples: int = param(1, label="Samples per image (L)",
                           help="Reparameterised draws of z per image for the reconstruction term.", low=1, high=1000)

    epochs: int = redefault(BaseConfig, "epochs", 50)

    PRESETS = {
        "default": {},
        "lecture": {"hidden_sizes": (144,), "latent_dim": 2, "batch_size": 100, "lr": 1e-3, "epochs": 40},
        "notebook": {"hidden_sizes": (200,), "latent_dim": 10, "batch_size": 128, "lr": 0.01},
        "pytorch-example": {"hidden_sizes": (400,), "latent_dim": 20, "batch_size": 128, "lr": 1e-3,
                            "decoder": "bernoulli", "binarize": "none"},
    }
    PRESET_NOTES = {
        "default": "The lecture's figures \"2-D latent space\" and \"manifold\": a 2-D latent, 784-512-256-2, 50 "
                   "epochs. On the embedded 4,000 digits the test codes form digit clusters (5-NN accuracy about "
                   "0.7) and prior samples cover all ten digits.",
        "lecture": "The lecture's VAE code as written: 784-144-2, batch 100, lr 0.001, 40 epochs. On the embedded "
                   "4,000 digits its clusters overlap more than the default's (5-NN accuracy about 0.5).",
        "notebook": "The VAE notebook: 784-200-10, batch 128, lr 0.01.",
        "pytorch-example": "PyTorch's VAE example: 784-400-20, batch 128, lr 0.001.",
    }


class Model(Variant):
    """Gaussian-encoder VAE with a Bernoulli or Gaussian decoder."""

    generative = True

    def __init__(self, config: Config, input_dim: int, n_classes: int = 10):
        super().__init__(config, input_dim, n_classes)
        c = config
        extra = self.condition_dim
        hidden = list(c.hidden_sizes)
        # encoder: (B, D + extra) -> (B, H) -> mean, log-variance heads (B, d)
        self.encoder = mlp([input_dim + extra, *hidden], c.activation, c.activation) if hidden else nn.Identity()
        feature_dim = hidden[-1] if hidden else input_dim + extra
        self.mean_head = nn.Linear(feature_dim, c.latent_dim)
        self.logvar_head = nn.Linear(feature_dim, c.latent_dim)
        # decoder: (..., d + extra) -> (..., D) logits (Bernoulli) or pre-sigmoid means (Gaussian)
        self.decoder = mlp([c.latent_dim + extra, *reversed(hidden), input_dim], c.activation, "identity")
        if c.decoder == "gaussian" and c.gaussian_variance == "learned":
            self.pixel_logvar = nn.Parameter(torch.full((input_dim,), float(c.decoder_logvar)))

    @property
    def code_dim(self) -> int:
        return self.config.latent_dim

    # -- conditioning hook (the CVAE overrides these two) -----------------------------------------------
    @property
    def condition_dim(self) -> int:
        """Extra inputs appended to the encoder's x and the decoder's z (0 here; n_classes for the CVAE)."""
        return 0

    def condition(self, inputs: torch.Tensor, y: torch.Tensor | int | None) -> torch.Tensor:
        """What the encoder/decoder sees given its input (..., n) and the labels; the plain VAE ignores y."""
        return inputs

    # -- the pieces ---------------------------------------------------------------------------------
    def posterior(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """q(z|x) = N(mu, diag(exp(logvar))).   x: (B, D) -> mu, logvar: (B, d)"""
        h = self.encoder(self.condition(x, y))  # (B, H)
        return self.mean_head(h), self.logvar_head(h)

    def decoder_output(self, z: torch.Tensor, y: torch.Tensor | int | None = None) -> torch.Tensor:
        """Raw decoder output: logits (Bernoulli) or pre-sigmoid means (Gaussian).  z: (..., d) -> (..., D)"""
        return self.decoder(self.condition(z, y))

    def decoder_logvar(self) -> torch.Tensor | float:
        """log sigma^2 of the Gaussian decoder: a float (fixed) or a clamped (D,) parameter (learned)."""
        if self.config.gaussian_variance == "learned":
            return self.pixel_logvar.clamp(min=LEARNED_LOGVAR_MIN)
        return float(self.config.decoder_logvar)

    def log_likelihood(self, z: torch.Tensor, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x|z) per draw.   z: (L, B, d), x: (B, D) -> (L, B)"""
        out = self.decoder_output(z, y)  # (L, B, D)
        if self.config.decoder == "bernoulli":
            return losses.bernoulli_log_likelihood(out, x)
        return losses.gaussian_log_likelihood(torch.sigmoid(out), x, self.decoder_logvar())

    def elbo_parts(self, x: torch.Tensor, y: torch.Tensor | None = None, n_samples: int = 1,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(E_q[log p(x|z)] estimated with n_samples draws, analytic KL(q||p)), both per example (B,)."""
        mu, logvar = self.posterior(x, y)  # (B, d)
        z = losses.reparameterize(mu, logvar, n_samples, generator)  # (L, B, d)
        expected_log_px = self.log_likelihood(z, x, y).mean(dim=0)  # (L, B) -> (B,)
        return expected_log_px, losses.kl_diag_gaussian_to_standard_normal(mu, logvar)

    # -- the contract ---------------------------------------------------------------------------------
    def loss(self, x: torch.Tensor, y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        expected_log_px, kl = self.elbo_parts(x, y, self.config.n_samples)
        terms = {"reconstruction": -expected_log_px.mean(), "kl": kl.mean()}
        terms["total"] = terms["reconstruction"] + self.config.beta * terms["kl"]
        return terms

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The posterior mean.   (B, D) -> (B, d)"""
        return self.posterior(x, y)[0]

    def decode(self, z: torch.Tensor, y: torch.Tensor | int | None = None) -> torch.Tensor:
        """Pixel means in [0, 1] (Bernoulli probabilities or Gaussian means).   (..., d) -> (..., D)"""
        return torch.sigmoid(self.decoder_output(z, y))

    def sample(self, n: int, y: torch.Tensor | int | None = None, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """Decode n draws z ~ N(0, temperature^2 I): (n, D) pixel means. The plain VAE ignores y."""
        z = self.prior_sample(n, generator, temperature)  # (n, d)
        return self.decode(z, y)

    def prior_sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0
                     ) -> torch.Tensor:
        """z ~ N(0, temperature^2 I): (n, d), on the model's device."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n: number of samples must be a whole number >= 0 (got {n!r})")
        if not temperature >= 0:
            raise ValueError(f"temperature: must be >= 0 (got {temperature!r})")
        dtype = self.mean_head.weight.dtype
        device = generator.device if generator is not None else self.device
        eps = torch.randn(n, self.config.latent_dim, generator=generator, device=device, dtype=dtype)
        return temperature * eps.to(self.device)

    # -- helpers for the evaluator (true ELBO and importance sampling; beta plays no part) ----------------
    def elbo_per_example(self, x: torch.Tensor, n_samples: int = 1, y: torch.Tensor | None = None,
                         generator: torch.Generator | None = None) -> torch.Tensor:
        """ELBO = E_q[log p(x|z)] - KL(q(z|x) || p(z)) per example, in nats.   (B, D) -> (B,)"""
        expected_log_px, kl = self.elbo_parts(x, y, n_samples, generator)
        return expected_log_px - kl

    def log_importance_weights(self, x: torch.Tensor, k: int, y: torch.Tensor | None = None,
                               generator: torch.Generator | None = None) -> torch.Tensor:
        """log w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), z_k ~ q(z|x).   (B, D) -> (K, B)

        log_mean_exp over K gives the importance-weighted bound on log p(x), tight as K grows."""
        mu, logvar = self.posterior(x, y)  # (B, d)
        z = losses.reparameterize(mu, logvar, k, generator)  # (K, B, d)
        log_q = losses.diag_gaussian_log_density(z, mu.expand_as(z), logvar.expand_as(z))  # (K, B)
        return self.log_likelihood(z, x, y) + losses.standard_normal_log_density(z) - log_q
