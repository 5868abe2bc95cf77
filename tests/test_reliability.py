"""Nothing wrong passes as success: alignments that belong, locks, whole checkpoints, a completion record that
vouches for the alignments, budgets and exit codes, every option checked before any work."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from faceswap import atomic, faceset
from faceswap.errors import FaceswapError
from faceswap.models import store
from faceswap.pipeline import Pipeline
from faceswap.settings import ConvertSettings
from faceswap.swap.convert import convert
from helpers import run_cli, start_cli


def error_line(result) -> str:
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()[-1]


def wait_for_step(model_dir: Path, step: int, seconds: float = 300) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        config = model_dir / "config.json"
        try:
            if config.is_file() and json.loads(config.read_text()).get("step", 0) >= step:
                return
        except ValueError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no checkpoint at step {step} in {seconds} s")


# -- 1. alignments that belong to the input ------------------------------------------------------------
def test_alignments_of_another_clip_are_refused(sample_b, facesets, small_model, tmp_path):
    out = tmp_path / "b.mp4"
    with pytest.raises(FaceswapError, match="was made from WolfgangLanger_Pexels.mp4, not single_face.mp4"):
        convert(sample_b, small_model, out, alignments=facesets[0], progress=False)
    assert not out.exists()
    result = run_cli("convert", sample_b, "-m", small_model, "-o", out, "--alignments", facesets[0])
    assert "--force-alignments" in error_line(result) and not out.exists()
    forced = convert(sample_b, small_model, out, ConvertSettings(force_alignments=True), facesets[0], progress=False)
    assert forced.frames == 72


def test_alignments_of_a_renamed_copy_or_changed_file(sample_b, facesets, small_model, tmp_path):
    renamed = tmp_path / "renamed.mp4"
    shutil.copy(sample_b, renamed)
    summary = convert(renamed, small_model, tmp_path / "ok.mp4", alignments=facesets[1], progress=False)
    assert summary.faces == 72  # the same file under another name: its records are used
    changed = tmp_path / "changed" / sample_b.name
    changed.parent.mkdir()
    data = bytearray(sample_b.read_bytes())
    data[-100] ^= 0xFF  # same name, same size, other content
    changed.write_bytes(bytes(data))
    with pytest.raises(FaceswapError, match="records another single_face.mp4 .*sampled_sha256"):
        convert(changed, small_model, tmp_path / "bad.mp4", alignments=facesets[1], progress=False)


# -- 2. two jobs writing one path -------------------------------------------------------------------------
def test_second_convert_to_one_output_is_refused(sample_b, small_model, tmp_path):
    out = tmp_path / "out.mp4"
    with atomic.exclusive(out, "output"):  # held by this process, as a running convert would
        result = run_cli("convert", sample_b, "-m", small_model, "-o", out)
    assert f"in use by PID {os.getpid()}" in error_line(result) and not out.exists()
    assert atomic.partial_path(out) != atomic.partial_path(out)  # each writer its own temporary name


def test_two_converts_at_once_both_end_well(sample_b, small_model, tmp_path):
    out = tmp_path / "same.mp4"
    first, second = (start_cli("-q", "convert", sample_b, "-m", small_model, "-o", out, stderr=subprocess.PIPE, text=True)
                     for _ in range(2))
    results = [(p.wait(timeout=300), p.stderr.read()) for p in (first, second)]
    codes = sorted(code for code, _ in results)
    assert codes[0] == 0 and codes[1] != 0 or codes == [0, 0]  # the loser says so; never a broken file
    for code, err in results:
        if code:
            assert "in use by PID" in err.strip().splitlines()[-1]
    from faceswap import media
    assert media.probe(out).frames == 72
    manifest = json.loads(Path(str(out) + ".json").read_text())
    assert manifest["input"]["name"] == sample_b.name


def test_second_training_into_one_model_folder_is_refused(facesets, tmp_path):
    model_dir = tmp_path / "model"
    with atomic.exclusive(model_dir, "model folder"):
        result = run_cli("train", *facesets, "-m", model_dir, "--iterations", "2")
    assert f"model folder in use by PID {os.getpid()}" in error_line(result)
    assert not model_dir.exists()


# -- 3. a reader never sees a checkpoint half-written --------------------------------------------------
SAVER = textwrap.dedent("""
    import sys, torch
    from faceswap.models import store
    model, config = store.load_model(sys.argv[1])
    state = model.state_dict()
    for i in range(int(sys.argv[2])):
        state = {k: v + 1e-3 for k, v in state.items()}
        store.save(sys.argv[1], dict(config, step=i), {store.WEIGHTS: state})
""")


def test_reader_sees_whole_checkpoints_during_saves(small_model, tmp_path):
    model_dir = tmp_path / "m"
    shutil.copytree(small_model, model_dir)
    saver = subprocess.Popen([sys.executable, "-c", SAVER, str(model_dir), "40"])
    reads = 0
    try:
        while saver.poll() is None:
            store.load_model(model_dir)  # raises "damaged" on a mixed state
            reads += 1
    finally:
        saver.wait(timeout=300)
    assert saver.returncode == 0 and reads >= 5


# -- 4. a truncated alignments file -------------------------------------------------------------------
def test_truncated_alignments_are_an_error(facesets, sample_b, small_model, tmp_path):
    cut = tmp_path / "cut"
    shutil.copytree(facesets[1], cut)
    lines = (cut / faceset.ALIGNMENTS).read_text().splitlines(keepends=True)
    (cut / faceset.ALIGNMENTS).write_text("".join(lines[:36]))  # the header and 35 of 72 records
    assert "holds 35 frame records, faceset.json says 72" in error_line(
        run_cli("train", facesets[0], cut, "-m", tmp_path / "model", "--iterations", "2"))
    assert not (tmp_path / "model").exists()
    assert "holds 35 frame records" in error_line(
        run_cli("convert", sample_b, "-m", small_model, "-o", tmp_path / "o.mp4", "--alignments", cut))
    _, records = faceset.read_alignments(cut, complete=False)  # extract's resume still reads it
    assert len(records) == 35


# -- 5, 7. every option checked before any work --------------------------------------------------------
BAD_OPTIONS = [
    (["extract", "{b}", "-o", "{tmp}/set", "--every", "0"], "--every"),
    (["extract", "{b}", "-o", "{tmp}/set", "--size", "0"], "--size"),
    (["extract", "{b}", "-o", "{tmp}/set", "--start", "50", "--end", "10"], "end (10) must be greater than start"),
    (["extract", "{b}", "-o", "{tmp}/set", "--track", "foo"], "--track"),
    (["train", "{fa}", "{fb}", "-m", "{tmp}/m", "--iterations", "0"], "--iterations"),
    (["train", "{fa}", "{fb}", "-m", "{tmp}/m", "--minutes", "-1"], "--minutes"),
    (["train", "{fa}", "{fb}", "-m", "{tmp}/m"], "--iterations"),
    (["train", "{fa}", "{fb}", "-m", "{tmp}/m", "--iterations", "5", "--batch-size", "0"], "--batch-size"),
    (["convert", "{b}", "-m", "{model}", "-o", "{tmp}/o.mp4", "--crf", "-5"], "--crf"),
    (["convert", "{b}", "-m", "{model}", "-o", "{tmp}/afile/out.mp4"], "no such folder"),
    (["evaluate", "--video", "{b}", "{b}", "--report", "{tmp}/afile/r.json"], "no such folder"),
    (["evaluate", "--video", "{b}", "{noface}", "--every", "1"], "give a clip and its own converted output"),
    (["evaluate", "--video", "{b}", "{b}", "--every", "-3"], "--every"),
]


@pytest.mark.parametrize("args,expected", BAD_OPTIONS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD_OPTIONS])
def test_bad_options_are_one_line_before_any_work(args, expected, facesets, small_model, sample_b, sample_no_face,
                                                   tmp_path):
    (tmp_path / "afile").write_text("x")
    values = {"b": sample_b, "noface": sample_no_face, "fa": facesets[0], "fb": facesets[1], "model": small_model,
              "tmp": tmp_path}
    before = sorted(p.name for p in tmp_path.iterdir())
    line = error_line(run_cli(*[a.format(**values) for a in args]))
    assert line.startswith("faceswap: error:") and expected in line
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing created


def test_pipeline_with_zero_iterations_is_refused(facesets, tmp_path):
    spec = {"work_dir": str(tmp_path / "work"), "identities": {"a": {"sources": [str(facesets[0])]},
                                                                "b": {"sources": [str(facesets[1])]}},
            "train": {"iterations": 0}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(FaceswapError, match="train.iterations: Input should be greater than 0"):
        Pipeline(path)
    assert not (tmp_path / "work").exists()


# -- 6. an interrupted train never exits 0 -------------------------------------------------------------
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_train_exits_non_zero(sig, code, facesets, tmp_path):
    model_dir = tmp_path / "m"
    process = start_cli("-q", "train", *facesets, "-m", model_dir, "--iterations", "100000", "--save-every", "3",
                        "--data-workers", "0", stderr=subprocess.PIPE, text=True)
    wait_for_step(model_dir, 3)
    process.send_signal(sig)
    assert process.wait(timeout=120) == code
    assert "checkpoint saved" in process.stderr.read()
    assert store.read_config(model_dir)["step"] >= 3


def test_interrupted_pipeline_train_is_marked_and_resumes(facesets, tmp_path):
    spec = {"work_dir": str(tmp_path / "work"), "identities": {"a": {"sources": [str(facesets[0])]},
                                                                "b": {"sources": [str(facesets[1])]}},
            "train": {"iterations": 100000, "save_every": 3, "data_workers": 0}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(spec))
    process = start_cli("-q", "run", path)
    wait_for_step(tmp_path / "work" / "model", 3)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 143
    state = json.loads((tmp_path / "work" / "pipeline-state.json").read_text())["train"]
    assert state["status"] == "terminated" and "finished" not in state


# -- 9. loss.csv keeps its history through kill -9 ----------------------------------------------------
def test_loss_history_survives_kill_9(facesets, tmp_path):
    model_dir = tmp_path / "m"
    process = start_cli("-q", "train", *facesets, "-m", model_dir, "--iterations", "100000", "--save-every", "5",
                        "--data-workers", "0")
    wait_for_step(model_dir, 10)  # two saves: the rows after the second are lost with the process
    process.kill()
    process.wait()
    saved = store.read_config(model_dir)["step"]
    result = run_cli("-q", "train", *facesets, "-m", model_dir, "--iterations", saved + 10, "--data-workers", "0")
    assert result.returncode == 0, result.stderr
    steps = [int(float(line.split(",")[0])) for line in (model_dir / "loss.csv").read_text().splitlines()[1:]]
    assert steps[0] == 1 and steps[-1] == saved + 10 and steps == sorted(set(steps))
    assert 10 in steps and saved in steps


# -- 10. smaller ------------------------------------------------------------------------------------------
def test_rerun_of_a_finished_extract_and_quiet_output(sample_b, face_models, tmp_path):
    out = tmp_path / "set"
    first = run_cli("-q", "extract", sample_b, "-o", out, "--end", "8")
    assert first.returncode == 0 and first.stderr == "", first.stderr  # -q: not even TFLite's delegate line
    again = run_cli("extract", sample_b, "-o", out, "--end", "8")
    assert again.returncode == 0 and "no face found" not in again.stderr
    assert "8 frames already done (8 faces in the set)" in again.stdout


def test_failed_train_leaves_no_model_folder(facesets, tmp_path):
    error_line(run_cli("train", facesets[0], tmp_path / "missing", "-m", tmp_path / "new" / "m", "--iterations", "2"))
    assert not (tmp_path / "new" / "m").exists()


# -- issue 26: a damaged state reruns from scratch; every path checked before the first stage ---------------
def test_damaged_pipeline_state_reruns_to_the_same_result(sample_a, sample_b, face_models, tmp_path):
    short = tmp_path / "a48.mp4"
    from faceswap import media

    with media.open_writer(short, like=media.probe(sample_a), audio_from=sample_a) as writer:
        for frame in media.read_frames(sample_a, end=48):
            writer.write_frame(frame)
    spec = {"work_dir": "work", "identities": {"a": {"sources": [str(short)]}, "b": {"sources": [str(sample_b)]}},
            "train": {"model": "lite", "iterations": 2, "data_workers": 0}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(spec))
    first = Pipeline(path).run(progress=False, echo=lambda *_: None)
    faces = (tmp_path / "work" / "facesets" / "a" / faceset.ALIGNMENTS).read_text()
    (tmp_path / "work" / "pipeline-state.json").write_text('{"extract_a": {"key": ')  # cut short
    lines = []
    again = Pipeline(path).run(progress=False, echo=lines.append)
    assert again["model"] == first["model"] and "unchanged, skipped" not in "\n".join(lines)
    assert (tmp_path / "work" / "facesets" / "a" / faceset.ALIGNMENTS).read_text() == faces
    assert store.read_config(tmp_path / "work" / "model")["step"] == 2
    json.loads((tmp_path / "work" / "pipeline-state.json").read_text())  # whole again


@pytest.mark.parametrize("where,key", [("convert", "reference"), ("convert", "sign_key"),
                                       ("extract", "exclude"), ("train", "pretrained")])
def test_pipeline_checks_every_path_before_the_first_stage(where, key, sample_a, sample_b, tmp_path):
    spec = {"work_dir": "work", "identities": {"a": {"sources": [str(sample_a)]}, "b": {"sources": [str(sample_b)]}},
            "train": {"iterations": 1}, "convert": [{"input": str(sample_b), "settings": {}}]}
    missing = str(tmp_path / "gone.jpg")
    {"convert": spec["convert"][0]["settings"], "extract": spec["identities"]["b"].setdefault("extract", {}),
     "train": spec["train"]}[where][key] = missing
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(FaceswapError, match=f"{key}: '{missing}' not found"):
        Pipeline(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.yaml"]
