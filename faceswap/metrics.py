"""Image similarity on torch tensors (N x C x H x W in [0, 1]): SSIM maps, masked SSIM and PSNR."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _gaussian(size: int, sigma: float, device, dtype) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def ssim_map(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM (N x C x H x W), reflect-padded. Always float32: variances are differences of near-equal
    numbers, and in bf16 they go negative and the ratio blows up."""
    with torch.autocast(x.device.type, enabled=False):
        return _ssim_map(x.float(), y.float(), window, sigma)


def _ssim_map(x: torch.Tensor, y: torch.Tensor, window: int, sigma: float) -> torch.Tensor:
    channels = x.shape[1]
    stacked = torch.cat([x, y, x * x, y * y, x * y], 1)  # the five blurs in one separable pass
    kernel = _gaussian(window, sigma, x.device, x.dtype)
    pad, n = window // 2, stacked.shape[1]
    blurred = F.pad(stacked, (pad,) * 4, mode="reflect")
    blurred = F.conv2d(blurred, kernel.view(1, 1, 1, -1).expand(n, 1, 1, window), groups=n)
    blurred = F.conv2d(blurred, kernel.view(1, 1, -1, 1).expand(n, 1, window, 1), groups=n)
    mu_x, mu_y, xx, yy, xy = blurred.split(channels, 1)
    sxx, syy, sxy = xx - mu_x ** 2, yy - mu_y ** 2, xy - mu_x * mu_y
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))


def masked_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return values.mean()
    weights = weights.expand_as(values)
    return (values * weights).sum() / weights.sum().clamp_min(1e-6)


def ssim(x, y, mask=None) -> float:
    return float(masked_mean(ssim_map(x, y), mask))


def psnr(x, y, mask=None) -> float:
    mse = masked_mean((x.float() - y.float()) ** 2, mask)
    return float(10 * torch.log10(1 / mse.clamp_min(1e-10)))
