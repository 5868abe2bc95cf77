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


def side_loss(rgb, mask_out, batch, weights: LossWeights, kl=None) -> torch.Tensor:
    face = batch["mask"]
    pixel_weights = batch["weights"] * (face * (1 - weights.background) + weights.background)
    target = batch["target"]
    loss = weights.dssim * masked_mean((1 - ssim_map(rgb, target)) / 2, pixel_weights)
    loss = loss + weights.l1 * masked_mean((rgb.float() - target).abs(), pixel_weights)
    if mask_out is not None and weights.mask:
        loss = loss + weights.mask * F.mse_loss(mask_out.float(), face)
    if kl is not None and weights.kl:
        loss = loss + weights.kl * kl
    return loss
