"""The training loss: weighted DSSIM + L1 on the face (eyes and mouth weighted up), plus mask and KL terms."""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from faceswap.metrics import masked_mean, ssim_map
from faceswap.models import facemesh
from faceswap.models.arch import SideOutput
from faceswap.settings import LossWeights


def side_loss(out: SideOutput, batch, weights: LossWeights) -> torch.Tensor:
    """One side's loss from its model outputs and its batch."""
    rgb, mask_out, kl, code = out
    face = batch["mask"]
    pixel_weights = batch["weights"] * (face * (1 - weights.background) + weights.background)
    target = batch["target"]
    loss = weights.dssim * masked_mean((1 - ssim_map(rgb, target)) / 2, pixel_weights)
    loss = loss + weights.l1 * masked_mean((rgb.float() - target).abs(), pixel_weights)
    if weights.mse:
        loss = loss + weights.mse * masked_mean((rgb.float() - target) ** 2, pixel_weights)
    if weights.edge:
        loss = loss + weights.edge * edge_loss(rgb.float(), target, pixel_weights)
    if weights.perceptual:
        loss = loss + weights.perceptual * facemesh.perceptual_loss(_mesh(rgb.device), rgb, target)
    if mask_out is not None and weights.mask:
        loss = loss + weights.mask * F.mse_loss(mask_out.float(), face)
    if kl is not None and weights.kl:
        loss = loss + weights.kl * kl
    if weights.sparse:  # L1 on the code: a sparse code (the lecture's sparse autoencoder)
        loss = loss + weights.sparse * code.float().abs().mean()
    return loss


def edge_loss(rgb, target, pixel_weights) -> torch.Tensor:
    """Weighted L1 between the horizontal and vertical differences of output and target."""
    dx = (rgb.diff(dim=3) - target.diff(dim=3)).abs()
    dy = (rgb.diff(dim=2) - target.diff(dim=2)).abs()
    return (masked_mean(dx, pixel_weights[..., :, 1:]) + masked_mean(dy, pixel_weights[..., 1:, :])) / 2


@functools.cache
def _mesh(device: torch.device) -> facemesh.FaceMesh:
    return facemesh.FaceMesh().to(device)
