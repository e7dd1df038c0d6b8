"""Network pieces the agent's parts share: MLPs, a running normaliser, diagonal-Gaussian maths."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = ["BatchMoments", "RunningNorm", "gaussian_entropy", "gaussian_log_prob", "mlp"]

_LOG_2PI = math.log(2.0 * math.pi)


def mlp(sizes: list[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers of the given widths with ``activation`` between them (none at the end)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


BatchMoments = Callable[[Tensor], tuple[Tensor, Tensor, int] | None]
"""Mean, (population) variance and count of the rows ``(n, dim)`` of a batch spread over several
processes (a distributed run: :func:`meta_rl.training.distributed.global_moments`)."""


class RunningNorm(nn.Module):
    """Running mean and variance of a vector (buffers), normalising and clipping to +-``clip``.

    :meth:`update` merges a batch with the parallel-variance formula; the statistics are saved
    with the module's ``state_dict``. In a distributed run, ``moments`` gives the batch moments
    of all processes' rows, so every process merges the same batch.
    """

    mean: Tensor
    var: Tensor
    count: Tensor

    def __init__(self, dim: int, clip: float = 10.0, enabled: bool = True) -> None:
        super().__init__()
        self.clip = clip
        self.enabled = enabled
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(1e-4, dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: Tensor, moments: BatchMoments | None = None) -> None:
        """Merge a batch ``(..., dim)`` into the statistics (rows with NaN/inf are ignored);
        ``moments``: the batch's moments over every process (None: this batch alone)."""
        if not self.enabled:
            return
        x = x.reshape(-1, x.shape[-1]).to(torch.float64)
        x = x[torch.isfinite(x).all(-1)]  # a non-finite sample must not poison the statistics
        if moments is None:
            if x.shape[0] == 0:
                return
            b_mean, b_var, b_count = x.mean(0), x.var(0, unbiased=False), x.shape[0]
        else:
            stats = moments(x)
            if stats is None or stats[2] == 0:
                return
            b_mean, b_var, b_count = stats
        delta = b_mean - self.mean
        total = self.count + b_count
        new_mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.mean.copy_(new_mean)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return x
        mean = self.mean.to(x.dtype)
        std = (self.var.to(x.dtype) + 1e-8).sqrt()
        return ((x - mean) / std).clamp(-self.clip, self.clip)


def gaussian_log_prob(mean: Tensor, log_std: Tensor, actions: Tensor) -> Tensor:
    """Log-density of ``actions`` under a diagonal Gaussian, summed over the last dimension."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - 0.5 * _LOG_2PI).sum(-1)


def gaussian_entropy(mean: Tensor, log_std: Tensor) -> Tensor:
    """Entropy of a diagonal Gaussian summed over the last dimension, shaped like ``mean[..., 0]``
    (``log_std`` may be shared across the batch)."""
    return (log_std + 0.5 * (1.0 + _LOG_2PI)).sum(-1).expand(mean.shape[:-1])
