"""Pipelines: a tiny job end to end on the samples, skipping unchanged stages, a bad clip, invalid files."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from faceswap import media
from faceswap.errors import FaceswapError
from faceswap.pipeline import Pipeline
from helpers import run_cli


def write(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def tiny_spec(sample_a, sample_b, clips) -> dict:
    return {
        "work_dir": "work",
        "identities": {"a": {"sources": [str(sample_a)], "extract": {"every": 4}},
                       "b": {"sources": [str(sample_b)]}},
        "train": {"model": "lite", "iterations": 4, "data_workers": 0, "preview_every": 2},
        "convert": clips,
    }


@pytest.fixture(scope="module")
def tiny(sample_a, sample_b, face_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    clips = root / "clips"
    clips.mkdir()
    short = clips / "b_short.mp4"
    with media.open_writer(short, like=media.probe(sample_b), audio_from=sample_b) as writer:
        for frame in media.read_frames(sample_b, end=24):
            writer.write_frame(frame)
    shutil.copy(sample_b, clips / "b_full.mp4")
    spec = tiny_spec(sample_a, sample_b, [
        {"input": str(clips / "*.mp4"), "direction": "a2b", "output": "{stem}_swapped.mp4"},
        {"input": str(sample_b), "direction": "b2a", "output": "b_as_a.mp4", "settings": {"color": "avg"}},
    ])
    path = write(root / "job.yaml", spec)
    lines = []
    report = Pipeline(path).run(progress=False, echo=lines.append)
    return root, path, spec, report, lines


def test_tiny_pipeline_end_to_end(tiny):
    root, _, _, report, lines = tiny
    statuses = {Path(r["output"]).name: r["status"] for r in report["clips"]}
    assert statuses == {"b_full_swapped.mp4": "ok", "b_short_swapped.mp4": "ok", "b_as_a.mp4": "ok"}
    out = root / "work" / "output"
    assert media.probe(out / "b_short_swapped.mp4").frames == 24
    assert (root / "work" / "model" / "preview.png").is_file()
    assert json.loads((root / "work" / "report.json").read_text())["clips"]
    assert any("training preview" in line for line in lines)


def test_rerun_skips_every_stage(tiny):
    _, path, _, _, _ = tiny
    lines = []
    report = Pipeline(path).run(progress=False, echo=lines.append)
    text = "\n".join(lines)
    assert "[extract a] unchanged, skipped" in text and "[extract b] unchanged, skipped" in text
    assert "[train] unchanged, skipped" in text
    assert all(r["status"] == "skipped (unchanged)" for r in report["clips"])


def own_work_dir(tiny, tmp_path) -> Path:
    """A copy of the tiny pipeline's work folder, so a test that changes its state leaves the others' alone."""
    work = tmp_path / "work"
    shutil.copytree(tiny[0] / "work", work)
    return work


def test_changed_convert_setting_reruns_only_that_clip(tiny, tmp_path):
    _, _, spec, _, _ = tiny
    spec = json.loads(json.dumps(spec))
    spec["convert"][1]["settings"]["color"] = "hist"
    spec["work_dir"] = str(own_work_dir(tiny, tmp_path))
    path = write(tmp_path / "job_changed.yaml", spec)
    lines = []
    report = Pipeline(path).run(progress=False, echo=lines.append)
    statuses = {Path(r["output"]).name: r["status"] for r in report["clips"]}
    assert statuses["b_as_a.mp4"] == "ok"
    assert statuses["b_full_swapped.mp4"] == statuses["b_short_swapped.mp4"] == "skipped (unchanged)"
    assert "[train] unchanged, skipped" in "\n".join(lines)


def test_bad_clip_is_reported_and_others_succeed(tiny, sample_a, sample_b, tmp_path):
    root = tiny[0]
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 1000)
    spec = tiny_spec(sample_a, sample_b, [{"input": str(bad)}, {"input": str(root / "clips" / "b_short.mp4")}])
    work = own_work_dir(tiny, tmp_path)  # the trained stages, reused
    spec["work_dir"] = str(work)
    path = write(tmp_path / "job.yaml", spec)
    result = run_cli("-q", "run", path, timeout=600)
    assert result.returncode != 0
    assert "1 of 2 clips failed" in result.stderr
    assert "broken" in result.stdout and "ok" in result.stdout
    assert (work / "output" / "b_short_a2b.mp4").is_file()


@pytest.mark.parametrize("mutate,message", [
    (lambda s: s.update(colour=1), "(top).colour: unknown key"),
    (lambda s: s["identities"].pop("b"), "identities.b: missing"),
    (lambda s: s["identities"]["a"].update(sources=["/nowhere.mp4"]), "identities.a.sources"),
    (lambda s: s["train"].update(iterations="many"), "train.iterations: Input should be a valid integer"),
    (lambda s: s["convert"][0]["settings"].update(crf="high"), "convert[0].settings.crf: Input should be a valid integer"),
    (lambda s: s["convert"].append({"input": s["convert"][0]["input"], "output": "same.mp4"}) or
     s["convert"][0].update(output="same.mp4"), "output name 'same.mp4'"),
])
def test_invalid_pipeline_files(mutate, message, sample_a, sample_b, tmp_path):
    spec = tiny_spec(sample_a, sample_b, [{"input": str(sample_b), "settings": {"crf": 20}}])
    mutate(spec)
    path = write(tmp_path / "bad.yaml", spec)
    with pytest.raises(FaceswapError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        Pipeline(path).run(progress=False, echo=lambda *_: None)


def test_unwritable_work_folder(sample_a, sample_b, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    spec = tiny_spec(sample_a, sample_b, [])
    spec["work_dir"] = str(blocker / "work")
    result = run_cli("run", write(tmp_path / "j.yaml", spec), timeout=120)
    assert result.returncode != 0 and "cannot write the work folder" in result.stderr


def test_convert_command_takes_a_folder_of_clips(tiny, tmp_path):
    root = tiny[0]
    result = run_cli("-q", "convert", root / "clips", "-m", root / "work" / "model", "-o", tmp_path / "out",
                     timeout=600)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.mp4")) == ["b_full.mp4", "b_short.mp4"]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["clips"][0]["status"] == "ok"
