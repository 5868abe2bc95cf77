"""The lecture's claim: a linear autoencoder trained for squared error finds PCA's subspace. Our `linear`
architecture's encoder and decoder, on the same centred face crops, come within a few percent of PCA's error."""
from __future__ import annotations

import dataclasses

import torch

from faceswap.models import arch
from faceswap.training.data import FaceData


def test_linear_autoencoder_reaches_pca_error(facesets):
    # 8 px crops: PCA's claim does not depend on the size, and at 8 px the full-batch fit converges in seconds
    cfg = dataclasses.replace(arch.config_for("linear"), size=8, latent=6)
    data = FaceData(list(facesets), cfg.out_size, cfg.coverage, holdout=0, occlusion=False)
    faces = data.plain(data.images)
    x = torch.from_numpy(faces).permute(0, 3, 1, 2).double().div(255)
    x = x - x.mean(0)  # PCA centres; so does the autoencoder's input here
    singular = torch.linalg.svdvals(x.flatten(1))
    pca_error = float((singular[cfg.latent:] ** 2).sum() / x.numel())

    torch.manual_seed(0)
    model = arch.build(cfg).double()
    parameters = [*model.encoder.parameters(), *model.decoders["a"].parameters()]
    optimizer = torch.optim.LBFGS(parameters, max_iter=500, history_size=50, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-12, tolerance_change=1e-15)

    def closure():
        optimizer.zero_grad()
        loss = ((model(x, "a")[0] - x) ** 2).mean()
        loss.backward()
        return loss

    for _ in range(3):  # within 0.1 % of PCA's error after 2 on the sample crops; the bar is 3 %
        optimizer.step(closure)
    ae_error = float(closure().detach())
    variance = float((x ** 2).mean())
    print(f"linear autoencoder / PCA error at k={cfg.latent}: {ae_error / pca_error:.4f} ({len(x)} crops)")
    assert pca_error < 0.5 * variance  # k components explain most of it: the comparison means something
    assert ae_error <= 1.03 * pca_error, (ae_error, pca_error)
