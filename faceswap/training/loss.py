"""The training loss: weighted DSSIM + L1 on the face (eyes and mouth weighted up), plus mask and KL terms."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from faceswap.metrics import masked_mean, ssim_map


@dataclass
class LossWeights:
    dssim: float = 1.0
    l1: float = 1.0
    mask: float = 0.5
    kl: float = 1e-3
    background: float = 0.1    # weight of pixels outside the face hull
    edge: float = 0.0          # L1 on image gradients: rewards sharp edges (eyes, teeth) over a safe blur


def side_loss(rgb, mask_out, batch, weights: LossWeights, kl=None) -> torch.Tensor:
    face = batch["mask"]
    pixel_weights = batch["weights"] * (face * (1 - weights.background) + weights.background)
    target = batch["target"]
    loss = weights.dssim * masked_mean((1 - ssim_map(rgb, target)) / 2, pixel_weights)
    loss = loss + weights.l1 * masked_mean((rgb.float() - target).abs(), pixel_weights)
    if weights.edge:
        loss = loss + weights.edge * edge_loss(rgb.float(), target, pixel_weights)
    if mask_out is not None and weights.mask:
        loss = loss + weights.mask * F.mse_loss(mask_out.float(), face)
    if kl is not None and weights.kl:
        loss = loss + weights.kl * kl
    return loss


def edge_loss(rgb, target, pixel_weights) -> torch.Tensor:
    """Weighted L1 between the horizontal and vertical differences of output and target."""
    dx = (rgb.diff(dim=3) - target.diff(dim=3)).abs()
    dy = (rgb.diff(dim=2) - target.diff(dim=2)).abs()
    return (masked_mean(dx, pixel_weights[..., :, 1:]) + masked_mean(dy, pixel_weights[..., 1:, :])) / 2
