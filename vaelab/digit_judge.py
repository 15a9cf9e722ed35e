"""A small classifier that judges generated digits: an MLP trained on the training split's real images.

The lesson checks ask of generated pictures what a student would: which digit is this, and is it clearly one?

    judge = train_judge(data, seed=0)
    labels, confidence = judge.classify(images)  # (n,) int64, (n,) max class probability

It is trained on grey levels in [0, 1], the same range as a decoder's pixel means, and reports its own accuracy on
the test split so that its verdicts can be weighed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vaelab.data import DataBundle
from vaelab.nn import mlp

HIDDEN = 256
EPOCHS = 8
BATCH = 128
LR = 2e-3


@dataclass
class DigitJudge:
    net: nn.Module
    test_accuracy: float  # on the data's real test images

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities of images (n, D) in [0, 1]. -> (n, C)"""
        self.net.eval()
        return F.softmax(self.net(images.float().cpu()), dim=1)

    def classify(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(labels (n,), confidence = the largest class probability (n,))."""
        confidence, labels = self.probabilities(images).max(dim=1)
        return labels, confidence


def train_judge(data: DataBundle, seed: int = 0) -> DigitJudge:
    """An MLP D-256-C trained with Adam on the training split (seeded, CPU, a few seconds on mnist-5k)."""
    # cached on the identity of the (cached, read-only) data tensors: the lesson checks share one judge
    key = (id(data.train.images), id(data.test.images), seed)
    if key not in _JUDGES:
        if len(_JUDGES) >= 4:
            _JUDGES.pop(next(iter(_JUDGES)))
        _JUDGES[key] = _train(data, seed)
    return _JUDGES[key]


_JUDGES: dict[tuple[int, int, int], DigitJudge] = {}


def _train(data: DataBundle, seed: int) -> DigitJudge:
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = mlp([data.input_dim, HIDDEN, data.n_classes], "relu")
    optimizer = torch.optim.Adam(net.parameters(), lr=LR)
    x, y = data.train.images, data.train.labels
    net.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), BATCH):
            idx = order[start:start + BATCH]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    judge = DigitJudge(net, 0.0)
    labels, _ = judge.classify(data.test.images)
    judge.test_accuracy = float((labels == data.test.labels).float().mean())
    return judge
