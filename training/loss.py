"""StyleGAN's losses: non-saturating logistic GAN loss with R1 regularisation on reals.

Class-conditional networks take labels `c` [B, label_size] (one-hot) everywhere: G maps z with
its label (the mixing latent z2 keeps the same label, as the official G_style maps both latents
with `labels_in`), and D scores reals with their labels and fakes with the labels they were made
from (official `D_logistic_simplegp` passes `labels` to every D call, R1 included)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .networks import Discriminator, Generator


def generator_styles(G: Generator, z: torch.Tensor, z2: torch.Tensor, mixing_prob: float,
                     rng: torch.Generator | None = None, c: torch.Tensor | None = None) -> torch.Tensor:
    """W+ for a training batch: map (updating w_avg) and apply style-mixing regularisation."""
    ws = G.broadcast(G.map(z, update_w_avg=True, c=c))
    if mixing_prob > 0:
        ws = G.mixing_regularisation(ws, G.broadcast(G.map(z2, c=c)), mixing_prob, rng)
    return ws


def g_loss(D: Discriminator, fake: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
    """Non-saturating: -log sigmoid(D(G(z)))."""
    return F.softplus(-D(fake, c)).mean()


def d_loss(D: Discriminator, real: torch.Tensor, fake: torch.Tensor, c_real: torch.Tensor | None = None,
           c_fake: torch.Tensor | None = None) -> torch.Tensor:
    """Logistic: -log(1 - sigmoid(D(G(z)))) - log sigmoid(D(x))."""
    return F.softplus(D(fake, c_fake)).mean() + F.softplus(-D(real, c_real)).mean()


def r1_penalty(D: Discriminator, real: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
    """Squared gradient norm of D on reals (Mescheder et al. 2018), per sample, averaged;
    the caller multiplies by gamma / 2."""
    real = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(real, c).sum(), real, create_graph=True)
    return grad.square().sum(dim=(1, 2, 3)).mean()
