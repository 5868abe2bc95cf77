"""MediaPipe's FaceMesh network (`face_landmark.tflite`, the model extract already fetches) rebuilt in torch from
the file's own graph and weights, for a perceptual loss: its feature maps respond to where lids, irises, lips
and brows are, which an L1 on pixels weighs no more than a cheek's shade. Frozen; input RGB in [0, 1].

The graph is read with LiteRT's interpreter (ops in order, constant tensors); op options the interpreter does
not expose (strides, padding) follow from the tensors' shapes. `tests/test_facemesh.py` checks every layer against
LiteRT on a real face.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from faceswap import assets
from faceswap.assets import MESH_FILE

KINDS = ("CONV_2D", "DEPTHWISE_CONV_2D", "PRELU", "ADD", "MAX_POOL_2D", "PAD")


def interpreter():
    """LiteRT's interpreter of the mesh file with every tensor kept and no delegate (which would hide ops)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    model = Interpreter(model_path=str(assets.model_file(MESH_FILE)), num_threads=1,
                        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                        experimental_preserve_all_tensors=True)
    model.allocate_tensors()
    return model


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after) of one axis: the odd pixel goes after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class FaceMesh(nn.Module):
    """The mesh network's layers as torch ops; `forward` gives the last feature map at each resolution."""

    def __init__(self):
        super().__init__()
        model = interpreter()
        tensors = {t["index"]: t for t in model.get_tensor_details()}
        self.input = model.get_input_details()[0]["index"]
        self.steps: list[tuple] = []  # (kind, op number, input tensor indices, output index, options)
        for n, op in enumerate(model._get_ops_details()):
            kind, ins, out = op["op_name"], [int(i) for i in op["inputs"] if i >= 0], int(op["outputs"][0])
            if kind not in KINDS:
                raise ValueError(f"{MESH_FILE}: op {kind} is not rebuilt")
            shape_in, shape_out = tensors[ins[0]]["shape"], tensors[out]["shape"]
            options = {}
            if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                weight = torch.from_numpy(model.get_tensor(ins[1]).copy())
                if kind == "CONV_2D":  # OHWI -> OIHW
                    weight = weight.permute(0, 3, 1, 2)
                else:  # 1HWC -> C1HW
                    weight = weight.permute(3, 0, 1, 2)
                self.register_buffer(f"w{n}", weight.contiguous())
                self.register_buffer(f"b{n}", torch.from_numpy(model.get_tensor(ins[2]).copy()))
                stride = int(shape_in[1]) // int(shape_out[1])
                options = {"stride": stride, "pad": _same_padding(int(shape_in[1]), weight.shape[2], stride),
                           "groups": weight.shape[0] if kind == "DEPTHWISE_CONV_2D" else 1}
            elif kind == "PRELU":
                self.register_buffer(f"a{n}", torch.from_numpy(model.get_tensor(ins[1]).copy()).reshape(1, -1, 1, 1))
            elif kind == "PAD":
                pads = model.get_tensor(ins[1])  # NHWC x (before, after)
                options = {"pad": (int(pads[2, 0]), int(pads[2, 1]), int(pads[1, 0]), int(pads[1, 1]),
                                   int(pads[3, 0]), int(pads[3, 1]))}
            elif kind == "MAX_POOL_2D":
                options = {"size": int(shape_in[1]) // int(shape_out[1])}
            self.steps.append((kind, n, ins[:2] if kind == "ADD" else ins[:1], out, options))
        self.requires_grad_(False)
        self.eval()

    def layers(self, x: torch.Tensor, smallest: int = 1) -> dict[int, torch.Tensor]:
        """Every op's output by its tensor index, for x (N x 3 x 192 x 192, RGB in [0, 1]), up to the first that
        is smaller than `smallest` px."""
        values = {self.input: x}
        for kind, n, ins, out, options in self.steps:
            a = values[ins[0]]
            if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                top, bottom = options["pad"]
                y = F.conv2d(F.pad(a, (top, bottom, top, bottom)), getattr(self, f"w{n}").to(a.dtype),
                             getattr(self, f"b{n}").to(a.dtype), options["stride"], groups=options["groups"])
            elif kind == "PRELU":
                y = torch.where(a > 0, a, a * getattr(self, f"a{n}").to(a.dtype))
            elif kind == "ADD":
                y = a + values[ins[1]]
            elif kind == "MAX_POOL_2D":
                y = F.max_pool2d(a, options["size"])
            else:
                y = F.pad(a, options["pad"])
            if y.shape[-1] < smallest:
                break
            values[out] = y
        return values

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The last feature map at each of the backbone's first four resolutions (a half to a sixteenth of the
        input's). Any input size: the network is convolutional, and a 128 px model window shows a face at about
        the scale the mesh was trained on in its 192 px crops."""
        last: dict[int, torch.Tensor] = {}
        for value in list(self.layers(x, x.shape[-1] // 16).values())[1:]:
            last[value.shape[-1]] = value
        return [last[size] for size in sorted(last, reverse=True)[:4]]


def perceptual_loss(net: FaceMesh, rgb: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the mesh's resolutions of the L1 between output's and target's features, each scaled by the
    target's mean magnitude there (so no one depth dominates)."""
    losses = []
    for mine, theirs in zip(net(rgb), net(target)):
        theirs = theirs.detach()
        losses.append((mine.float() - theirs.float()).abs().mean() / (theirs.float().abs().mean() + 1e-3))
    return sum(losses) / len(losses)

