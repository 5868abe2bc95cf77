"""faceswap pretrain and train --from: a base of pooled faces, pairs started from it, and every bad base refused."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from faceswap.errors import FaceswapError
from faceswap.models import store
from faceswap.pipeline import Pipeline
from faceswap.settings import TrainSettings
from faceswap.training.loop import Trainer, pretrain, train
from helpers import run_cli


@pytest.fixture(scope="module")
def base(facesets, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bases") / "base"
    pretrain([facesets[0]], folder, TrainSettings(iterations=12, preview_every=6), progress=False)
    return folder


def test_base_holds_one_generic_decoder_and_resumes(base, facesets):
    config = store.read_config(base)
    assert config["kind"] == "base" and config["step"] == 12 and config["facesets"]["pool"]["train"] > 0
    weights = store.load_tensors(base, store.WEIGHTS, config)
    decoder_a = {k[len("decoders.a."):]: v for k, v in weights.items() if k.startswith("decoders.a.")}
    assert decoder_a and all(torch.equal(v, weights["decoders.b." + k]) for k, v in decoder_a.items())
    summary = pretrain([facesets[0]], base, TrainSettings(iterations=14), progress=False)
    assert (summary.start_step, summary.step) == (12, 14)


def test_from_base_starts_a_new_pair_with_its_weights(base, facesets, tmp_path):
    trainer = Trainer(*facesets, tmp_path / "pair", TrainSettings(iterations=1, pretrained=base), progress=False)
    start = trainer.model.state_dict()
    stored = store.load_tensors(base, store.WEIGHTS)
    assert all(torch.equal(start[k], stored[k]) for k in stored)  # encoder and both decoders from the base
    result = run_cli("train", *facesets, "-m", tmp_path / "pair", "--from", base, "--iterations", "3")
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "pair" / "config.json").read_text())["pretrained"]
    assert record["sha256"] == store.read_config(base)["files"][store.WEIGHTS] and record["name"] == "base"
    resumed = run_cli("train", *facesets, "-m", tmp_path / "pair", "--from", base, "--iterations", "4")
    assert resumed.returncode == 0, resumed.stderr


def test_bad_bases_are_refused_with_one_line(base, facesets, tmp_path):
    def refused(*args) -> str:
        result = run_cli(*args)
        assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
        return result.stderr

    assert "the base is a lite model" in refused("train", *facesets, "-m", tmp_path / "m1", "--from", base,
                                                 "--model", "original", "--iterations", "2")
    assert not (tmp_path / "m1").exists()
    train(*facesets, tmp_path / "pair", TrainSettings(iterations=2), progress=False)
    assert "not a base model" in refused("train", *facesets, "-m", tmp_path / "m2", "--from", tmp_path / "pair",
                                         "--iterations", "2")
    assert "holds a base" in refused("train", *facesets, "-m", base, "--iterations", "20")
    assert "already trained, not from" in refused("train", *facesets, "-m", tmp_path / "pair", "--from", base,
                                                  "--iterations", "3")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no faces" in refused("pretrain", empty, "-m", tmp_path / "b2", "--iterations", "2")
    damaged = tmp_path / "damaged"
    pretrain([facesets[1]], damaged, TrainSettings(iterations=2), progress=False)
    data = bytearray((damaged / store.WEIGHTS).read_bytes())
    data[-100] ^= 0xFF
    (damaged / store.WEIGHTS).write_bytes(bytes(data))
    message = refused("train", *facesets, "-m", tmp_path / "m3", "--from", damaged, "--iterations", "2")
    assert f"{damaged / store.WEIGHTS}: damaged" in message


def test_pipeline_pretrain_stage_feeds_train(facesets, tmp_path):
    spec = {"work_dir": str(tmp_path / "work"),
            "identities": {"a": {"sources": [str(facesets[0])]}, "b": {"sources": [str(facesets[1])]}},
            "pretrain": {"sources": [str(facesets[0])], "train": {"iterations": 4}},
            "train": {"iterations": 3}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(spec))
    Pipeline(path).run(progress=False, echo=lambda *_: None)
    record = store.read_config(tmp_path / "work" / "model")["pretrained"]
    assert record["step"] == 4 and record["name"] == "base"
    spec["train"]["pretrained"] = "elsewhere"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(FaceswapError, match="not both"):
        Pipeline(path)
