"""Building blocks shared by the architectures."""
from __future__ import annotations

from torch import nn


class ConvBlock(nn.Sequential):
    """Conv 5x5, stride 2, 'same' padding, LeakyReLU(0.1): halves the size."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout, 5, stride=2, padding=2), nn.LeakyReLU(0.1, inplace=True))


class UpscaleBlock(nn.Sequential):
    """Conv 3x3 to 4x filters, LeakyReLU(0.1), PixelShuffle x2: doubles the size."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout * 4, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
                         nn.PixelShuffle(2))


class ResBlock(nn.Module):
    """Two 3x3 convs with a skip: adds detail without changing the size."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
                                  nn.Conv2d(channels, channels, 3, padding=1))
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x):
        return self.act(x + self.body(x))
