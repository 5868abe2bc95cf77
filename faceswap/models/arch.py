"""The architectures: one shared encoder, one decoder per identity, and a registry of named settings.

Every architecture is the same shape of network with different sizes: strided convolutions down to a
small grid, a dense bottleneck (optionally variational), a reshape and upscale, then per identity a
decoder of upscale blocks (with optional residual blocks) ending in RGB and, optionally, a mask.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from faceswap.models.blocks import ConvBlock, ResBlock, UpscaleBlock


class Decoded(NamedTuple):
    """What a decoder gives: faces and, where the model learned one, the mask of the visible face, in [0, 1]."""
    rgb: torch.Tensor
    mask: torch.Tensor | None


class SideOutput(NamedTuple):
    """One side's forward in training: what the loss needs."""
    rgb: torch.Tensor
    mask: torch.Tensor | None
    kl: torch.Tensor | None
    code: torch.Tensor


@dataclass
class ArchConfig:
    name: str
    size: int                      # input side in pixels (and the output's, unless `output` is set)
    encoder: list[int]             # conv widths, each halves the size
    latent: int                    # dense bottleneck width
    grid_channels: int             # channels of the reshaped grid after the bottleneck
    bottleneck_upscale: int        # channels after the encoder's final upscale
    decoder: list[int]             # upscale widths in each decoder
    res_blocks: int = 0            # residual blocks after each decoder upscale
    mask: bool = False             # learned mask output
    latent_type: str = "dense"     # "dense" or "vae" (variational: sampled, with a KL term)
    bottleneck: str = "dense"      # "dense": flatten + linear; "conv": a 1x1-conv spatial code (keeps detail)
    coverage: float = 0.75         # share of the aligned crop the model sees
    defaults: dict = field(default_factory=dict)  # training defaults for this architecture
    output: int | None = None      # output side in pixels when larger than the input (None: `size`)
    linear: bool = False           # a linear encoder and decoders (PCA's autoencoder): no convolutions at all
    detail: bool = False           # a 2x detail head: output = the decoder's face enlarged 2x + its detail

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def out_size(self) -> int:
        return self.output or self.size


# the small models' training: a high rate cooled by a cosine, gentle colour augmentation, half the inputs warped
SMALL_DEFAULTS = {"lr": 5e-4, "batch_size": 8, "schedule": "cosine",
                  "augment": {"brightness": 0.1, "colour": 0.02, "clahe": 0.2, "warp_share": 0.5}}
ARCHITECTURES = {
    # The classic deepfakes/faceswap "Original": 64 px, ~82 M parameters.
    "original": ArchConfig("original", 64, [128, 256, 512, 1024], 1024, 1024, 512, [256, 128, 64],
                           coverage=0.625, defaults={"lr": 5e-5, "batch_size": 16}),
    # Small and quick: learns visibly on 2 CPU cores in minutes (the demo's model). Coverage 0.625 (brows to
    # chin) spends its 64 px on the features, and only half the inputs get the random warp: in a short run
    # the warp alone would teach a blur (docs/MEASUREMENTS.md, "The demo model's settings").
    "lite": ArchConfig("lite", 64, [32, 64, 128, 256], 256, 256, 256, [128, 64, 32], res_blocks=1, mask=True,
                       coverage=0.625, defaults=SMALL_DEFAULTS),
    # lite, 128 px out (as faceswap's "DFaker"): each decoder's 64 px face (in logits) enlarged 2x, plus a
    # detail head's sub-pixel layer over its last features, trained on the identity's own 128 px crops. A
    # 64 px face pasted onto a 240 px one is a 4x enlargement; 128 px is the least that can look sharp there.
    "lite128": ArchConfig("lite128", 64, [32, 64, 128, 256], 256, 256, 256, [128, 64, 32], res_blocks=1,
                          mask=True, coverage=0.625, output=128, detail=True, defaults=SMALL_DEFAULTS),
    # PCA as an autoencoder: a shared linear map to `latent` numbers and a linear map back per identity (no
    # non-linearity, no mask); the baseline that shows what depth buys (evaluate --compare).
    "linear": ArchConfig("linear", 64, [], 16, 0, 0, [], coverage=0.625, linear=True,
                         defaults={"lr": 1e-3, "batch_size": 16}),
    # The quality model for GPUs: 128 px (size 256 adds a level), residual decoder, learned mask.
    "hd": ArchConfig("hd", 128, [128, 256, 512, 1024], 512, 512, 512, [512, 256, 128], res_blocks=2,
                     mask=True, coverage=0.75, defaults={"lr": 5e-5, "batch_size": 16}),
}


def config_for(name: str, size: int | None = None, latent_type: str = "dense") -> ArchConfig:
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model {name!r}; choose from {', '.join(ARCHITECTURES)}")
    cfg = ArchConfig(**ARCHITECTURES[name].as_dict())
    cfg.latent_type = latent_type
    if size and size != cfg.size:
        if name != "hd" or size not in (128, 256):
            raise ValueError(f"model {name} has a fixed size of {cfg.size} px" if name != "hd"
                             else "hd supports size 128 or 256")
        cfg.size = size
        if size == 256:  # one more level on each side of the bottleneck
            cfg.encoder = [64] + cfg.encoder
            cfg.decoder = cfg.decoder + [64]
    return cfg


class Encoder(nn.Module):
    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.convs = nn.Sequential(*(ConvBlock(a, b) for a, b in zip([3, *cfg.encoder], cfg.encoder)))
        channels, self.grid = [3, *cfg.encoder][-1], cfg.size // 2 ** len(cfg.encoder)
        self.variational = cfg.latent_type == "vae"
        self.spatial = cfg.bottleneck == "conv"
        width = cfg.latent * (2 if self.variational else 1)
        if self.spatial:
            self.to_latent = nn.Conv2d(channels, width, 1)
            self.from_latent = nn.Conv2d(cfg.latent, cfg.grid_channels, 3, padding=1)
        else:
            self.to_latent = nn.Linear(channels * self.grid * self.grid, width)
            self.from_latent = nn.Linear(cfg.latent, cfg.grid_channels * self.grid * self.grid)
        self.grid_channels = cfg.grid_channels
        self.upscale = UpscaleBlock(cfg.grid_channels, cfg.bottleneck_upscale)

    def forward(self, x):
        """(decoder input, KL term or None, code): returned, not stored, so each side's loss gets its own."""
        mu, logvar = self.code(x)
        kl, z = None, mu
        if logvar is not None:
            kl = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.decode_code(z.to(x.dtype) if x.dtype != torch.float32 else z), kl, mu

    def code(self, x):
        """The code of x: (mean, log-variance) for a variational bottleneck, (code, None) otherwise."""
        features = self.convs(x)
        z = self.to_latent(features if self.spatial else torch.flatten(features, 1))
        if not self.variational:
            return z, None
        mu, logvar = z.float().chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)

    def decode_code(self, z):
        """Decoder input from a code (for a VAE, codes drawn from N(0, 1) give new faces)."""
        grid = self.from_latent(z)
        if not self.spatial:
            grid = grid.view(-1, self.grid_channels, self.grid, self.grid)
        return self.upscale(grid)


class Decoder(nn.Module):
    def __init__(self, cfg: ArchConfig):
        super().__init__()
        layers, channels = [], cfg.bottleneck_upscale
        for width in cfg.decoder:
            layers.append(UpscaleBlock(channels, width))
            layers.extend(ResBlock(width) for _ in range(cfg.res_blocks))
            channels = width
        self.body = nn.Sequential(*layers)
        self.rgb = nn.Conv2d(channels, 3, 5, padding=2)
        self.mask = nn.Conv2d(channels, 1, 5, padding=2) if cfg.mask else None
        self.detail = nn.Sequential(nn.Conv2d(channels, 3 * 4, 3, padding=1), nn.PixelShuffle(2)) \
            if cfg.detail else None

    def forward(self, x):
        features = self.body(x)
        rgb, mask = self.rgb(features), self.mask(features) if self.mask is not None else None
        if self.detail is not None:  # in logits: the enlarged face plus what the head adds between its pixels
            rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear") + self.detail(features)
            mask = F.interpolate(mask, scale_factor=2, mode="bilinear") if mask is not None else None
        return Decoded(torch.sigmoid(rgb), torch.sigmoid(mask) if mask is not None else None)


class LinearEncoder(nn.Module):
    """x -> W x + b, `latent` numbers: what PCA finds, when trained for squared error."""

    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.variational = False
        self.to_latent = nn.Linear(3 * cfg.size * cfg.size, cfg.latent)

    def code(self, x):
        return self.to_latent(torch.flatten(x, 1)), None

    def decode_code(self, z):
        return z

    def forward(self, x):
        z = self.code(x)[0]
        return z, None, z


class LinearDecoder(nn.Module):
    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.size = cfg.out_size
        self.out = nn.Linear(cfg.latent, 3 * self.size * self.size)

    def forward(self, z):
        return Decoded(self.out(z).view(-1, 3, self.size, self.size), None)


class FaceSwapModel(nn.Module):
    """Shared encoder + decoders "a" and "b". forward(x, side) -> Decoded."""

    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.cfg = cfg
        encoder, decoder = (LinearEncoder, LinearDecoder) if cfg.linear else (Encoder, Decoder)
        self.encoder = encoder(cfg)
        self.decoders = nn.ModuleDict({"a": decoder(cfg), "b": decoder(cfg)})
        expected = cfg.out_size if cfg.linear else \
            cfg.size // 2 ** len(cfg.encoder) * 2 * 2 ** len(cfg.decoder) * (2 if cfg.detail else 1)
        if expected != cfg.out_size:
            raise ValueError(f"{cfg.name}: encoder/decoder depths give {expected} px, not {cfg.out_size}")

    def forward(self, x, side: str):
        return self.decoders[side](self.encoder(x)[0])

    def train_side(self, x, side: str) -> SideOutput:
        grid, kl, code = self.encoder(x)
        return SideOutput(*self.decoders[side](grid), kl, code)

    def from_code(self, z, side: str) -> Decoded:
        """The faces that codes `z` stand for, through one decoder."""
        return self.decoders[side](self.encoder.decode_code(z))

    def both(self, x_a, x_b):
        """One forward for both identities (one call, so DDP sees every parameter used): two train_side results."""
        return self.train_side(x_a, "a"), self.train_side(x_b, "b")


def build(cfg: ArchConfig) -> FaceSwapModel:
    model = FaceSwapModel(cfg)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)) and not cfg.linear:
            nn.init.kaiming_uniform_(module.weight, a=0.1, nonlinearity="leaky_relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    for decoder in model.decoders.values():
        if getattr(decoder, "detail", None) is not None:  # the head starts at nothing: at first the face, enlarged
            nn.init.zeros_(decoder.detail[0].weight)
    return model
