"""FaceMesh rebuilt in torch (models/facemesh.py) against LiteRT running the same file, on a real frame."""
from __future__ import annotations

import cv2
import numpy as np
import torch

from faceswap import media
from faceswap.models import facemesh
from faceswap.models.arch import SideOutput
from faceswap.settings import LossWeights
from faceswap.training.loss import side_loss


def litert_values(model, image: np.ndarray) -> dict[int, np.ndarray]:
    """LiteRT's own value of every tensor for one uint8 192 x 192 RGB image (NHWC, as the file holds them)."""
    model.set_tensor(model.get_input_details()[0]["index"], (image[None] / 255).astype(np.float32))
    model.invoke()
    return {t["index"]: model.get_tensor(t["index"]) for t in model.get_tensor_details()
            if len(t["shape"]) == 4 and t["shape"][0] == 1}


def test_every_layer_matches_litert_and_the_loss_has_gradients(sample_a, face_models):
    frame = next(media.read_frames(sample_a, start=100, end=101)).image
    image = cv2.resize(frame[:, 140:500], (192, 192), interpolation=cv2.INTER_AREA)  # the face and around it
    reference = litert_values(facemesh.interpreter(), image)
    net = facemesh.FaceMesh()
    ours = net.layers(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
    compared = [k for k in ours if k in reference and k != net.input]
    assert len(compared) == len(net.steps) > 90  # every op of the file, each rebuilt
    for k in compared:
        theirs = reference[k]
        mine = ours[k].permute(0, 2, 3, 1).numpy()
        assert mine.shape == theirs.shape
        assert np.abs(mine - theirs).max() <= 1e-4 * (np.abs(theirs).max() + 1)

    target = torch.from_numpy(cv2.resize(image, (128, 128), interpolation=cv2.INTER_AREA)).permute(2, 0, 1)[None]
    target = target.float() / 255
    assert [f.shape[-1] for f in net(target)] == [64, 32, 16, 8]  # a 128 px window: the backbone's scales
    assert facemesh.perceptual_loss(net, target, target).item() == 0
    blurred = torch.nn.functional.avg_pool2d(target, 5, 1, 2).requires_grad_()
    loss = facemesh.perceptual_loss(net, blurred, target)
    loss.backward()
    assert loss.item() > 0.05 and blurred.grad.abs().sum() > 0


def test_the_training_loss_adds_the_perceptual_term_only_when_weighted(sample_a, face_models):
    frame = next(media.read_frames(sample_a, start=100, end=101)).image
    target = torch.from_numpy(cv2.resize(frame[:, 140:500], (128, 128), interpolation=cv2.INTER_AREA))
    target = target.permute(2, 0, 1)[None].float() / 255
    output = SideOutput(torch.nn.functional.avg_pool2d(target, 5, 1, 2), None, None, torch.zeros(1, 8))
    batch = {"mask": torch.ones(1, 1, 128, 128), "weights": torch.ones(1, 1, 128, 128), "target": target}
    plain = side_loss(output, batch, LossWeights())
    weighted = side_loss(output, batch, LossWeights(perceptual=0.5))
    net = facemesh.FaceMesh()
    expected = 0.5 * facemesh.perceptual_loss(net, output.rgb, target)
    assert torch.isclose(weighted - plain, expected, rtol=1e-4)
