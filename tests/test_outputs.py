"""Nothing of the user's is lost: every command that writes refuses, before any work, an output path that holds
someone else's files, a file of another kind, one of its inputs, or a face set or model where something else
goes; and leaves every byte as it was. Earlier outputs of the same kind are replaced (or resumed) as before."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from faceswap import outputs
from helpers import invoke_cli as invoke


def snapshot(root: Path) -> dict:
    """Every file and folder under `root` with its size and modification time: any write shows."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}


# the command lines, with {out} the output path under test
COMMANDS = {
    "extract": ["extract", "{b}", "-o", "{out}", "--end", "4"],
    "extract --preview": ["extract", "{b}", "-o", "{tmp}/new_set", "--end", "4", "--preview", "{out}"],
    "convert": ["convert", "{b}", "-m", "{model}", "-o", "{out}"],
    "convert (several clips)": ["convert", "{b}", "{b2}", "-m", "{model}", "-o", "{out}"],
    "faceset sheet": ["faceset", "sheet", "{fb}", "-o", "{out}"],
    "train": ["train", "{fa}", "{fb}", "-m", "{out}", "--iterations", "1"],
    "pretrain": ["pretrain", "{fa}", "-m", "{out}", "--iterations", "1"],
    "sample": ["sample", "-m", "{model}", "-o", "{out}"],
    "evaluate --report": ["evaluate", "--video", "{b}", "{b}", "--report", "{out}"],
}
# what each command's own input is (an output there would overwrite it)
INPUT_OF = {"extract": "b", "extract --preview": "b", "convert": "b", "convert (several clips)": "b",
            "faceset sheet": "fb", "train": "fa", "pretrain": "fa", "sample": "model", "evaluate --report": "b"}
SUFFIX = {"extract --preview": ".png", "convert": ".mp4", "faceset sheet": ".png", "sample": ".png",
          "evaluate --report": ".json"}
BAD = ["someone's folder", "someone's file", "an input", "a face set", "a model"]


@pytest.fixture(scope="module")
def place(facesets, small_model, sample_b, tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    (root / "folder").mkdir()
    (root / "folder" / "notes.txt").write_text("my notes")
    shutil.copy(sample_b, root / "folder" / "holiday.mp4")
    shutil.copy(sample_b, root / "b2.mp4")
    shutil.copytree(facesets[1], root / "set")
    shutil.copytree(small_model, root / "model")
    return root


def bad_path(case: str, command: str, place: Path, values: dict) -> Path:
    if case == "someone's folder":
        return place / "folder"
    if case == "someone's file":
        path = place / ("mine" + SUFFIX.get(command, ""))
        if not path.exists():
            path.write_bytes(b"the user's own bytes")
        return path
    if case == "an input":
        return Path(values[INPUT_OF[command]])
    return place / ("set" if case == "a face set" else "model")


SAME_KIND = {("extract", "a face set"), ("train", "a model"), ("pretrain", "a model")}  # resumed, as meant
CASES = [(command, case) for command in COMMANDS for case in BAD if (command, case) not in SAME_KIND]


@pytest.mark.parametrize("command,case", CASES, ids=[f"{c}: {k}" for c, k in CASES])
def test_every_command_refuses_outputs_that_are_not_its_own(command, case, place, facesets, small_model, sample_b,
                                                            tmp_path):
    values = {"b": sample_b, "b2": place / "b2.mp4", "fa": facesets[0], "fb": facesets[1], "model": small_model,
              "tmp": tmp_path}
    out = bad_path(case, command, place, values)
    watched = [place, tmp_path, *facesets, small_model]
    before = [snapshot(p) for p in watched] + [snapshot(sample_b.parent)]
    result = invoke(*[a.format(out=out, **values) for a in COMMANDS[command]])
    assert result.exit_code != 0
    assert result.stderr.strip().splitlines()[-1].startswith("faceswap: error:"), result.stderr
    assert "Traceback" not in result.stderr
    assert [snapshot(p) for p in watched] + [snapshot(sample_b.parent)] == before


def test_filter_refuses_a_rejected_folder_that_is_not_its_own(facesets, tmp_path):
    folder = tmp_path / "set"
    shutil.copytree(facesets[1], folder)
    (tmp_path / "set.rejected").mkdir()
    (tmp_path / "set.rejected" / "diary.txt").write_text("private")
    before = snapshot(tmp_path)
    result = invoke("faceset", "filter", folder, "--min-size", "100000")
    assert result.exit_code != 0 and "set.rejected: already exists" in result.stderr
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("option,value", [("--max-yaw", "nan"), ("--duplicates", "nan"), ("--min-size", "inf")])
def test_filter_limits_must_be_numbers(option, value, facesets):
    result = invoke("faceset", "filter", facesets[1], option, value)
    assert result.exit_code == 2 and "not a finite number" in result.output


def test_earlier_outputs_of_the_same_kind_are_replaced(small_model, sample_b, tmp_path):
    sheet = tmp_path / "r.json"
    for _ in range(2):  # the second run replaces the first run's report and strip
        assert invoke("evaluate", "--video", sample_b, sample_b, "--report", sheet).exit_code == 0
    assert outputs.kind_of(sheet) == "report" and outputs.kind_of(sheet.with_suffix(".png")) == "png"
    assert outputs.kind_of(small_model) == "model"
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "frame_000000.png").write_bytes(b"x")  # a frame folder whose run stopped before its manifest
    assert outputs.kind_of(frames) == "converted"
    (frames / "holiday.jpg").write_bytes(b"x")
    assert outputs.kind_of(frames) is None


def test_a_batch_stopped_between_a_video_and_its_manifest_is_still_its_own(tmp_path):
    import numpy as np

    from faceswap import media

    batch = tmp_path / "batch"
    batch.mkdir()
    writer = media.VideoWriter(batch / "b0.mp4")  # what a Ctrl-C leaves before write_manifest
    writer.write(np.zeros((64, 64, 3), np.uint8))
    writer.close()
    assert outputs.kind_of(batch / "b0.mp4") == "preview" and outputs.kind_of(batch) == "batch"
    outputs.claim(batch, "batch")
    (batch / "b1.mp4").write_bytes(b"the user's own video")
    assert outputs.kind_of(batch) is None


def test_pipeline_output_cannot_name_its_own_model_or_face_set(sample_a, sample_b, tmp_path):
    from faceswap.errors import FaceswapError
    from faceswap.pipeline import Pipeline

    for name in ("../model", "../facesets/b", "/tmp/x.mp4"):
        spec = {"work_dir": "work", "identities": {"a": {"sources": [str(sample_a)]}, "b": {"sources": [str(sample_b)]}},
                "train": {"iterations": 1}, "convert": [{"input": str(sample_b), "output": name}]}
        path = tmp_path / "p.yaml"
        path.write_text(yaml.safe_dump(spec))
        with pytest.raises(FaceswapError, match="must stay inside the work folder's output/"):
            Pipeline(path).run(progress=False, echo=lambda *_: None)
        assert not (tmp_path / "work").exists()


def test_pipeline_work_dir_of_someone_elses_files_is_refused(sample_a, sample_b, tmp_path):
    from faceswap.errors import FaceswapError
    from faceswap.pipeline import Pipeline

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("years of work")
    spec = {"work_dir": "mine", "identities": {"a": {"sources": [str(sample_a)]}, "b": {"sources": [str(sample_b)]}},
            "train": {"iterations": 1}}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(spec))
    before = snapshot(tmp_path)
    with pytest.raises(FaceswapError, match="mine: already exists and holds someone's files"):
        Pipeline(path).run(progress=False, echo=lambda *_: None)
    assert snapshot(tmp_path) == before
