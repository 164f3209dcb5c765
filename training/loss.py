"""StyleGAN's losses: non-saturating logistic GAN loss with R1 regularisation on reals."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .networks import Discriminator, Generator


def generator_styles(G: Generator, z: torch.Tensor, z2: torch.Tensor, mixing_prob: float,
                     rng: torch.Generator | None = None) -> torch.Tensor:
    """W+ for a training batch: map (updating w_avg) and apply style-mixing regularisation."""
    ws = G.broadcast(G.map(z, update_w_avg=True))
    if mixing_prob > 0:
        ws = G.mix(ws, G.broadcast(G.map(z2)), mixing_prob, rng)
    return ws


def g_loss(D: Discriminator, fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating: -log sigmoid(D(G(z)))."""
    return F.softplus(-D(fake)).mean()


def d_loss(D: Discriminator, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Logistic: -log(1 - sigmoid(D(G(z)))) - log sigmoid(D(x))."""
    return F.softplus(D(fake)).mean() + F.softplus(-D(real)).mean()


def r1_penalty(D: Discriminator, real: torch.Tensor) -> torch.Tensor:
    """Squared gradient norm of D on reals (Mescheder et al. 2018), per sample, averaged;
    the caller multiplies by gamma / 2."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
    return grad.square().sum(dim=(1, 2, 3)).mean()
