"""Training on the real sample face sets: models, a real step, loss falling, checkpoints, resume, DDP, bad input."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from faceswap import faceset, images
from faceswap.errors import FaceswapError
from faceswap.models.arch import build, config_for
from faceswap.models.store import load_model, read_config
from faceswap.training.data import Augment, FaceData, PairStream, loader
from faceswap.training.loop import TrainSettings, Trainer, train
from helpers import run_cli, start_cli


@pytest.mark.parametrize("name,size,out,params", [
    ("original", 64, 64, (81e6, 83e6)), ("lite", 64, 64, (2e6, 20e6)), ("lite128", 64, 128, (2e6, 20e6)),
    ("hd", 128, 128, (50e6, 200e6)), ("linear", 64, 64, (5e5, 1e6))])
def test_model_shapes_and_parameter_counts(name, size, out, params):
    model = build(config_for(name))
    assert params[0] <= sum(p.numel() for p in model.parameters()) <= params[1]
    x = torch.rand(2, 3, size, size)
    (rgb_a, mask_a, kl_a, _), (rgb_b, *_) = model.both(x, x)
    assert kl_a is None
    assert rgb_a.shape == rgb_b.shape == (2, 3, out, out)
    assert (mask_a is not None) == (name not in ("original", "linear"))
    if mask_a is not None:
        assert mask_a.shape == (2, 1, out, out)
    # the decoders are separate, the encoder shared
    assert not torch.equal(rgb_a, rgb_b)


def test_a_lite128_of_the_old_layout_still_builds():
    """Models of the first lite128 (a fifth decoder stage, no detail head) keep their layout in config.json."""
    from faceswap.models.store import arch_from_config

    old = {**config_for("lite128").as_dict(), "decoder": [128, 64, 32, 16]}
    del old["detail"]
    model = build(arch_from_config({"architecture": old}))
    assert model.decoders["a"].detail is None
    assert model(torch.rand(1, 3, 64, 64), "a")[0].shape == (1, 3, 128, 128)


def test_hd_256_and_vae_latent():
    model = build(config_for("hd", 256))
    assert model(torch.rand(1, 3, 256, 256), "a")[0].shape == (1, 3, 256, 256)
    vae = build(config_for("lite", latent_type="vae")).train()
    assert float(vae.train_side(torch.rand(4, 3, 64, 64), "a")[2].detach()) > 0


def test_augmentation_shapes_and_pairing(facesets):
    data = FaceData(facesets[0], 64, 0.75)
    assert len(data) + len(data.holdout_files) == 236 and len(data.holdout_files) == 24
    batch_a, batch_b = next(iter(PairStream(data, data, 4, Augment())))
    assert batch_a["input"].shape == (4, 3, 64, 64) and batch_a["mask"].shape == (4, 1, 64, 64)
    # the warp changes the input, not the target: they differ, but only a little
    diff = (batch_a["input"] - batch_a["target"]).abs().mean()
    assert 0.005 < float(diff) < 0.2
    assert float(batch_a["weights"].max()) == 3.0  # eyes weighted x3
    # warp_share: the share of inputs that get the warp; the others equal their target exactly
    half, _ = next(iter(PairStream(data, data, 32, Augment(warp_share=0.5))))
    unwarped = [torch.equal(i, t) for i, t in zip(half["input"], half["target"])]
    assert 4 < sum(unwarped) < 28


@pytest.mark.parametrize("input_size", [64, 32])
def test_worker_batches_equal_in_process_ones(facesets, input_size):
    """A worker hands batches over packed (uint8 images, float maps); unpacked they are the same batches,
    also for a model whose output (64 px here) is twice its input."""
    data = FaceData(facesets[0], 64, 0.75, input_size=input_size)
    stream = PairStream(data, data, 4, Augment(warp_share=0.5))
    for here, there in zip(next(loader(stream, 0)), next(loader(stream, 1))):
        assert here["input"].shape[-1] == input_size and here["target"].shape[-1] == 64
        for key in here:
            assert here[key].dtype == there[key].dtype and torch.equal(here[key], there[key]), key


def test_training_changes_every_part_and_loss_falls(facesets, tmp_path):
    """Trainer.run, as `faceswap train` drives it: the encoder and both decoders learn, and the loss it logs falls."""
    trainer = Trainer(*facesets, tmp_path / "m", TrainSettings(iterations=60, batch_size=4, precision="fp32",
                                                               data_workers=0), progress=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    summary = trainer.run()
    assert summary.step == 60
    after = trainer.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith("encoder.") for k in changed)
    assert any(k.startswith("decoders.a.") for k in changed) and any(k.startswith("decoders.b.") for k in changed)
    with open(tmp_path / "m" / "loss.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [1, *range(10, 61, 10)]  # the first step, then means of ten
    losses = [float(r["loss_a"]) + float(r["loss_b"]) for r in rows]
    first, last = np.mean(losses[:2]), np.mean(losses[-2:])  # steps 1-10 against 41-60 (measured: 0.61)
    assert last < 0.75 * first, (first, last)


def test_checkpoint_files_config_and_preview(small_model):
    config = read_config(small_model)
    assert config["step"] == 20 and config["architecture"]["name"] == "lite"
    assert set(config["files"]) == {"model.safetensors", "optimizer.safetensors", "trainer.json", "exemplars.safetensors"}
    assert config["facesets"]["a"]["holdout"] and config["facesets"]["b"]["holdout"]
    for name in ("preview.png", "loss.csv", "loss.png"):
        assert (small_model / name).is_file()
    model, _ = load_model(small_model)
    assert model.cfg.size == 64
    assert not list(small_model.glob("*.pt")) and not list(small_model.glob("*.pkl"))


def test_kill_9_then_resume(facesets, tmp_path):
    model_dir = tmp_path / "killed"
    process = start_cli("-q", "train", *facesets, "-m", model_dir, "--iterations", "100000", "--save-every", "5",
                        "--preview-every", "1000")  # with a spawned worker
    deadline = time.time() + 300
    while time.time() < deadline:
        config = model_dir / "config.json"
        if config.is_file() and json.loads(config.read_text()).get("step", 0) >= 10:
            break
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    saved = read_config(model_dir)["step"]
    assert saved >= 10 and saved % 5 == 0
    load_model(model_dir)  # nothing corrupt
    result = run_cli("-q", "train", facesets[0], facesets[1], "-m", model_dir, "--iterations", saved + 3,
                     "--data-workers", "0")
    assert result.returncode == 0, result.stderr
    assert f"steps {saved} -> {saved + 3}" in result.stdout
    assert read_config(model_dir)["step"] == saved + 3
    assert (model_dir / "backup" / "config.json").is_file()


def test_resume_is_exact(facesets, tmp_path):
    """Training 6 steps at once equals 3 steps, a restart, then 3 more (same data, optimizer and RNG)."""
    settings = dict(precision="fp32", data_workers=0, preview_every=1000, latent="vae", schedule="constant")
    train(*facesets, tmp_path / "straight", TrainSettings(iterations=6, **settings), progress=False)
    train(*facesets, tmp_path / "split", TrainSettings(iterations=3, **settings), progress=False)
    train(*facesets, tmp_path / "split", TrainSettings(iterations=6, **settings), progress=False)
    a, _ = load_model(tmp_path / "straight")
    b, _ = load_model(tmp_path / "split")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.allclose(x, y, atol=1e-6), name


def test_truncated_weights_detected(small_model, facesets, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(small_model, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(FaceswapError, match="damaged or truncated"):
        load_model(broken)
    result = run_cli("train", facesets[0], facesets[1], "-m", broken, "--iterations", "30")
    assert result.returncode != 0
    assert "damaged or truncated" in result.stderr and "backup" in result.stderr
    assert "Traceback" not in result.stderr


def test_mismatched_model_dir_refused(small_model, facesets):
    result = run_cli("train", facesets[0], facesets[1], "-m", small_model, "--model", "original", "--iterations", "30")
    assert result.returncode != 0
    assert "holds a lite model" in result.stderr


def test_nan_stops_and_keeps_last_good_state(facesets, tmp_path):
    model_dir = tmp_path / "nan"
    train(*facesets, model_dir, TrainSettings(iterations=2, data_workers=0, precision="fp32"), progress=False)
    good = (model_dir / "model.safetensors").read_bytes()
    with pytest.raises(FaceswapError, match="NaN"):
        train(*facesets, model_dir, TrainSettings(iterations=400, lr=1e6, warmup=1, data_workers=0, precision="fp32",
                                                 schedule="constant"), progress=False)
    assert read_config(model_dir)["step"] == 2
    assert (model_dir / "model.safetensors").read_bytes() == good


def test_ddp_two_gloo_processes(facesets, tmp_path):
    worker = Path(__file__).parent / "ddp_worker.py"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           str(worker), str(facesets[0]), str(facesets[1]), str(tmp_path / "ddp")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    digests = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert digests[0]["step"] == digests[1]["step"] == 2
    assert digests[0]["weights"] == digests[1]["weights"]
    assert digests[0]["world"] == 2
    assert read_config(tmp_path / "ddp")["step"] == 2


@pytest.mark.parametrize("case", ["missing", "empty", "too_few", "too_small", "unwritable"])
def test_bad_input(case, facesets, tmp_path):
    a, b = facesets
    model_dir = tmp_path / "model"
    args = []
    if case == "missing":
        a = tmp_path / "nowhere"
    elif case == "empty":
        a = tmp_path / "empty"
        a.mkdir()
    elif case == "too_few":
        a = tmp_path / "few"
        shutil.copytree(facesets[1], a)
        header, records = faceset.read_alignments(a)
        lines = [json.dumps(header)] + [json.dumps(r) for r in records[:20]]
        (a / "alignments.jsonl").write_text("\n".join(lines) + "\n")
        faceset.write_summary(a, 20, [], {})  # a small set, not a cut one
    elif case == "too_small":
        args = ["--model", "hd", "--size", "256"]
    elif case == "unwritable":
        blocker = tmp_path / "file"
        blocker.write_text("x")
        model_dir = blocker / "model"
    result = run_cli("train", a, b, "-m", model_dir, "--iterations", "5", *args)
    assert result.returncode != 0
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("faceswap: error:") and "Traceback" not in result.stderr
    expected = {"missing": "not found", "empty": "no faces", "too_few": "at least 32", "too_small": "too small",
                "unwritable": "cannot write"}[case]
    assert expected in line


def test_hands_and_synthetic_occluders_are_left_out_of_the_loss(facesets):
    """Sample A's hands are found on her crops; what covers a face (her hands, pasted occluders) is neither
    learned as face by the mask head nor scored."""
    from faceswap.training.data import Augmenter, Occluders

    data_a, data_b = FaceData(facesets[0], 64, 0.625), FaceData(facesets[1], 64, 0.625)
    assert len(data_a.hands) > 40 and not data_b.hands  # her hand is over her face in a third of the clip
    occluders = Occluders((data_a, data_b))
    assert occluders.patches
    rng = np.random.default_rng(0)
    target, alpha = occluders.put(data_b.images[0][:64, :64].copy(), rng)
    assert alpha.max() == pytest.approx(1.0, abs=0.01) and 0.02 < (alpha > 0.5).mean() < 0.6
    plain = Augmenter(data_b, Augment(occluders=0.0), occluders)
    covered = Augmenter(data_b, Augment(occluders=1.0), occluders)
    _, _, mask_plain, _ = plain(3, np.random.default_rng(5))
    _, _, mask, weights = covered(3, np.random.default_rng(5))
    assert mask.sum() < 0.95 * mask_plain.sum() and (weights == 0).sum() > (mask_plain == 0).sum()
    blind = FaceData(facesets[0], 64, 0.625, occlusion=False)  # no hand finding
    index = max(data_a.hands, key=lambda i: np.ptp(data_a.hands[i][0][:, 1]))
    _, _, mask_a, weights_a = Augmenter(data_a, Augment(occluders=0.0))(index, np.random.default_rng(1))
    _, _, hull_a, weights_blind = Augmenter(blind, Augment(occluders=0.0))(index, np.random.default_rng(1))
    assert mask_a.sum() < 0.9 * hull_a.sum() and weights_a.sum() < 0.9 * weights_blind.sum()


def test_hands_are_found_once_a_face_set_and_found_again_for_a_changed_crop(facesets, tmp_path):
    """The first training finds the hands over every crop and keeps them in the face set; the next reads them
    (the same hands, without the finder); a damaged entry, or a crop whose bytes changed, is looked at again; and
    a bare folder of crops, or a face set where it cannot be written, is left as it was."""
    folder = tmp_path / "a"
    shutil.copytree(facesets[0], folder)
    (folder / faceset.HANDS).unlink(missing_ok=True)
    for crop in (folder / faceset.FACES).glob("*.png"):  # her frames 40 to 140 (her hand comes up at 60)
        if not 40 <= int(crop.stem.split("_")[-2]) < 140:
            crop.unlink()
    found = FaceData(folder, 64, 0.625)
    kept = json.loads((folder / faceset.HANDS).read_text())
    assert len(kept["hands"]) == len(found) + len(found.holdout_images) == 50
    assert sum(map(bool, kept["hands"].values())) == len(found.hands) + len(found.holdout_hands) > 10
    with_hand = found.entries[min(found.hands)][0]
    kept["hands"] = {digest: [] for digest in kept["hands"]}  # the finder is not asked again: its answer is read
    (folder / faceset.HANDS).write_text(json.dumps(kept))
    assert not FaceData(folder, 64, 0.625).hands
    kept["hands"][faceset.crop_digest(with_hand.read_bytes())] = [["not", "points"]]  # a damaged entry: found again
    (folder / faceset.HANDS).write_text(json.dumps(kept))
    assert list(FaceData(folder, 64, 0.625).hands) == [min(found.hands)]
    before = with_hand.read_bytes()  # the same pixels and record in other bytes: a crop that changed
    meta = json.dumps(faceset.read_png_metadata(with_hand), indent=1)
    with_hand.write_bytes(images.png_bytes(images.read_image(with_hand), {faceset.PNG_KEY: meta}))
    assert faceset.crop_digest(with_hand.read_bytes()) != faceset.crop_digest(before)
    again = FaceData(folder, 64, 0.625)
    assert list(again.hands) == [min(found.hands)]
    for expected, got in zip(found.hands[min(found.hands)], again.hands[min(found.hands)]):
        np.testing.assert_allclose(expected, got)
    bare = tmp_path / "bare"
    shutil.copytree(folder / faceset.FACES, bare)
    assert len(FaceData(bare, 64, 0.625).hands) == len(found.hands) and not (bare / faceset.HANDS).exists()
    (folder / faceset.HANDS).unlink()
    (folder / faceset.HANDS).mkdir()  # a face set where hands.json cannot be written: trains all the same
    assert len(FaceData(folder, 64, 0.625).hands) == len(found.hands) and (folder / faceset.HANDS).is_dir()


def test_amp_auto_is_measured_once_per_machine(facesets, tmp_path, monkeypatch):
    """On a CPU, --precision auto times bf16 and fp32 steps of the architecture on first use and keeps the choice."""
    from faceswap import assets, device

    monkeypatch.setenv("FACESWAP_MODELS", str(assets.models_dir()))  # the models stay where they are
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = Trainer(*facesets, tmp_path / "m1", TrainSettings(iterations=1, data_workers=0), progress=False)
    cache = json.loads(device.amp_cache().read_text())
    (entry,) = cache.values()
    assert entry["fp32_s"] > 0 and entry["bf16_s"] > 0 and entry["choice"] in ("bf16", "fp32")
    assert (first.amp_dtype == torch.bfloat16) == (entry["choice"] == "bf16")
    entry["choice"] = "fp32" if entry["choice"] == "bf16" else "bf16"  # a cached choice is taken as it is
    device.amp_cache().write_text(json.dumps(cache))
    second = Trainer(*facesets, tmp_path / "m2", TrainSettings(iterations=1, data_workers=0), progress=False)
    assert (second.amp_dtype == torch.bfloat16) == (entry["choice"] == "bf16")


def test_vae_samples_sheet_preview_strip_and_sparse_codes(facesets, small_model, tmp_path):
    from faceswap import images

    model_dir = tmp_path / "vae"
    train(*facesets, model_dir, TrainSettings(latent="vae", iterations=10, data_workers=0, loss={"sparse": 0.01},
                                               preview_every=10, save_every=10), progress=False)
    rows = [line.split(",") for line in (model_dir / "loss.csv").read_text().splitlines()]
    assert rows[0][3] == "code_l1" and float(rows[-1][3]) > 0  # the code's L1, logged with the losses
    assert read_config(model_dir)["loss"]["sparse"] == 0.01
    result = run_cli("sample", "-m", model_dir, "-n", "8", "-o", tmp_path / "sheet.png")
    assert result.returncode == 0, result.stderr
    sheet = images.read_image(tmp_path / "sheet.png")
    assert sheet.shape == (2 * 128, 4 * 128, 3) and sheet.std() > 3
    assert images.read_image(model_dir / "preview.png").shape[0] == 7 * 128  # the A..B strip through the code
    result = run_cli("sample", "-m", small_model, "-o", tmp_path / "no.png")
    assert result.returncode != 0 and "--latent vae" in result.stderr and not (tmp_path / "no.png").exists()
