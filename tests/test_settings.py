"""One settings model per stage: every command-line option is a pipeline key, and a wrong value names its key."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, get_origin

import pytest
import torch
import yaml

from faceswap import settings
from faceswap.cli import cli
from faceswap.errors import FaceswapError
from faceswap.pipeline import Pipeline
from faceswap.settings import ConvertSettings, ExtractSettings, TrainSettings, _plain_type

NOT_SETTINGS = {"output", "model_dir", "alignments", "jobs", "ray_address", "inputs", "faceset_a", "faceset_b", "help"}
STAGES = [("extract", ExtractSettings, "identities.a.extract"), ("train", TrainSettings, "train"),
          ("convert", ConvertSettings, "convert[0].settings")]


def wrong_value(field):
    kind = _plain_type(field.annotation)
    if kind is bool:
        return "maybe"
    if get_origin(kind) is Literal:
        return "nonsense"
    if kind in (int, float):
        return "lots"
    return {"not": "a plain value"} if kind in (str, Path) else "not a mapping"


def spec_with(tmp_path: Path, sample_a: Path, sample_b: Path, section: str, key: str, value) -> Path:
    spec = {"work_dir": str(tmp_path / "work"),
            "identities": {"a": {"sources": [str(sample_a)], "extract": {}}, "b": {"sources": [str(sample_b)]}},
            "train": {"iterations": 5}, "convert": [{"input": str(sample_b), "settings": {}}]}
    target = {"extract": spec["identities"]["a"]["extract"], "train": spec["train"],
              "convert": spec["convert"][0]["settings"]}[section]
    target[key] = value
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.parametrize("command,model,where", STAGES, ids=[s[0] for s in STAGES])
def test_every_option_is_a_pipeline_key_and_a_wrong_value_names_it(command, model, where, sample_a, sample_b,
                                                                    tmp_path):
    options = {p.name for p in cli.commands[command].params} - NOT_SETTINGS
    assert options and options <= set(model.model_fields)  # the CLI is built from the model
    cli_fields = {n for n, f in model.model_fields.items() if (f.json_schema_extra or {}).get("cli") is not False}
    assert options == cli_fields
    for key, field in model.model_fields.items():
        if command == "convert" and key == "direction":
            continue  # given beside a clip's settings
        default = None if field.default_factory else field.default
        if default is not None:  # the default itself is accepted
            Pipeline(spec_with(tmp_path, sample_a, sample_b, command, key, settings.parse(model, {}).as_json()[key]))
        with pytest.raises(FaceswapError, match=re.escape(f"pipeline: {where}.{key}")):
            Pipeline(spec_with(tmp_path, sample_a, sample_b, command, key, wrong_value(field)))


def test_cli_names_the_option(sample_b, tmp_path):
    with pytest.raises(FaceswapError, match="^--smooth-cutoff: Input should be greater than 0"):
        settings.parse(ExtractSettings, {"smooth_cutoff": 0}, cli=True)
    with pytest.raises(FaceswapError, match="^--track: use largest, center or a track id"):
        settings.parse(ConvertSettings, {"track": "foo"}, cli=True)
    assert settings.parse(ConvertSettings, {"track": 3}).track == "3"


def test_loss_weights_and_augmentations_are_key_value_options(tmp_path):
    from helpers import invoke_cli

    parsed = settings.parse(TrainSettings, {"loss": {"kl": "0.01"}, "augment": {"warp_share": "0.25"}}, cli=True)
    assert parsed.loss.kl == 0.01 and parsed.loss.dssim == 1.0 and parsed.augment == {"warp_share": 0.25}
    assert settings.cli_args(parsed) == ["--loss", "kl=0.01", "--augment", "warp_share=0.25"]  # a UI job's argv
    for args, message in ((["--loss", "kll=1"], "--loss: unknown loss setting(s): kll"),
                          (["--augment", "warp=lots"], "--augment: Input should be a valid number"),
                          (["--loss", "kl"], "'kl': use KEY=VALUE")):
        result = invoke_cli("train", tmp_path, tmp_path, "-m", tmp_path / "m", "--iterations", 1, *args)
        assert result.exit_code != 0 and message in result.output, result.output
        assert not (tmp_path / "m").exists()


def test_kl_of_side_a_reaches_side_a_loss(facesets, tmp_path):
    """With --latent vae, A's KL term is part of A's loss: back-propagating A's loss alone moves the encoder
    through A's KL (it used to read the KL of the last encoder call, B's)."""
    from faceswap.training.loop import Trainer

    only_kl = {"dssim": 0, "l1": 0, "mask": 0, "kl": 1.0}
    trainer = Trainer(*facesets, tmp_path / "vae", TrainSettings(latent="vae", iterations=1, precision="fp32",
                                                                 data_workers=0, loss=only_kl), progress=False)
    trainer.model.eval()  # the mean code: no sampling noise
    x_a = torch.rand(4, 3, 64, 64)
    x_b = torch.rand(4, 3, 64, 64) * 0.2
    batch = {"mask": torch.ones(4, 1, 64, 64), "weights": torch.ones(4, 1, 64, 64), "target": x_a}
    loss_a, loss_b, _ = trainer.losses(dict(batch, input=x_a), dict(batch, input=x_b))
    kl_a = trainer.model.encoder(x_a)[1]
    kl_b = trainer.model.encoder(x_b)[1]
    assert torch.allclose(loss_a, kl_a) and torch.allclose(loss_b, kl_b) and not torch.allclose(kl_a, kl_b)
    trainer.model.zero_grad()
    loss_a.backward()
    grad = trainer.model.encoder.to_latent.weight.grad
    assert grad is not None and grad.abs().sum() > 0
