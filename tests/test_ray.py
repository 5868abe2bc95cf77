"""Batches and pipelines on a real Ray cluster of two nodes of one CPU each, started on this machine as on two
(`ray start --head`, `ray start --address`): the same frames and credentials as a local run, a worker killed
mid-clip, a damaged clip, Ctrl-C of the driver, extract parts, training workers through Ray Train."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from faceswap import credentials, media
from faceswap.errors import FaceswapError
from faceswap.settings import ConvertSettings, TrainSettings
from helpers import invoke_cli

ray = pytest.importorskip("ray")

from faceswap.cluster import Ray  # noqa: E402
from faceswap.swap.batch import convert_many  # noqa: E402

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(node: subprocess.Popen) -> None:
    """A node of ours stopped: its `ray start --block` stops what it started (raylet, agents, on the head the GCS)
    on SIGTERM; whatever is left of its process group is killed."""
    if node.poll() is None:
        node.terminate()  # the leader alone: with its whole group at once it waits on a drain nobody answers
        try:
            node.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(node.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    node.wait()


@pytest.fixture(scope="module")
def cluster():
    """Two nodes of one CPU each, joined by this process; its address for `--ray ADDRESS`. `ray start --block`
    keeps each node in a process group of ours, stopped at the end whatever happened (`ray stop` would stop
    every Ray cluster on this machine, other people's too)."""
    os.environ["RAY_DEDUP_LOGS"] = "0"
    # token authentication off for this private cluster: its token file is shared by every cluster of the user
    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray_cli, port = Path(sys.executable).with_name("ray"), free_port()
    address = f"127.0.0.1:{port}"
    common = ["--block", "--num-cpus", "1", "--num-gpus", "0", "--object-store-memory", str(200 * 2 ** 20),
              "--disable-usage-stats"]
    temp = tempfile.mkdtemp(prefix="fsray")  # short: Ray's socket paths must fit in 107 characters
    nodes = []
    try:
        for extra in (["--head", "--port", str(port), "--include-dashboard", "false", "--dashboard-port",
                       str(free_port()), "--temp-dir", temp],
                      ["--address", address]):
            nodes.append(subprocess.Popen([str(ray_cli), "start", *common, *extra, "--dashboard-agent-listen-port",
                                           str(free_port())], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
        ray.init(address=address)
        deadline = time.monotonic() + 120
        while sum(n["Alive"] for n in ray.nodes()) < 2:
            assert time.monotonic() < deadline and all(n.poll() is None for n in nodes), "the cluster did not start"
            time.sleep(0.2)
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        os.environ.pop("RAY_AUTH_MODE", None)
        for node in reversed(nodes):
            stop(node)
        shutil.rmtree(temp, ignore_errors=True)


def cut(src: Path, out: Path, start: int, end: int) -> Path:
    with media.open_writer(out, like=media.probe(src), audio_from=src) as writer:
        for frame in media.read_frames(src, start=start, end=end):
            writer.write_frame(frame)
    return out


@pytest.fixture(scope="module")
def clips(sample_a, sample_b, tmp_path_factory) -> Path:
    """Four short clips: three pieces of sample B and one of sample A."""
    folder = tmp_path_factory.mktemp("ray_clips")
    for i in range(3):
        cut(sample_b, folder / f"b{i}.mp4", 16 * i, 16 * i + 16)
    cut(sample_a, folder / "a0.mp4", 0, 16)
    return folder


def frames_of(path: Path) -> list[np.ndarray]:
    return [f.image for f in media.read_frames(path)]


def partials(folder: Path) -> list[Path]:
    return [p for p in Path(folder).rglob("*") if ".partial" in p.name]


def test_convert_on_ray_equals_a_local_convert(cluster, clips, small_model, tmp_path):
    """One worker on each node (each has one CPU): a local run's frames and credentials."""
    settings = ConvertSettings()
    (tmp_path / "local").mkdir()
    (tmp_path / "ray").mkdir()
    with Ray() as executor:
        rows = convert_many([clips], tmp_path / "ray", small_model, settings, progress=False, echo=lambda _: None,
                            executor=executor)
    local = convert_many([clips], tmp_path / "local", small_model, settings, progress=False, echo=lambda _: None,
                         jobs=2)
    assert [r["status"] for r in rows] == ["ok"] * 4 and [r["retries"] for r in rows] == [0] * 4
    assert [r["frames"] for r in rows] == [r["frames"] for r in local]
    for row in rows:
        name = Path(row["output"]).name
        ours, theirs = frames_of(Path(row["output"])), frames_of(tmp_path / "local" / name)
        assert len(ours) == len(theirs) == row["frames"]
        for a, b in zip(ours, theirs):
            assert np.abs(a.astype(int) - b.astype(int)).max() <= 1, name
        found, note = credentials.verify(Path(row["output"]))
        assert found.state == "intact", note
    report = json.loads((tmp_path / "ray" / "report.json").read_text())
    assert [r["status"] for r in report["clips"]] == ["ok"] * 4
    assert not partials(tmp_path / "ray")


def test_a_killed_worker_costs_its_clip_one_retry(cluster, clips, sample_b, small_model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("b0", "b1"):
        os.link(clips / f"{name}.mp4", folder / f"{name}.mp4")
    os.link(sample_b, folder / "long.mp4")  # the whole sample: long enough to be caught mid-clip
    out, result = tmp_path / "out", {}
    out.mkdir()

    def run():
        with Ray() as executor:
            result["rows"] = convert_many([folder], out, small_model, ConvertSettings(), progress=False,
                                          echo=lambda _: None, executor=executor)

    thread = threading.Thread(target=run)
    thread.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and thread.is_alive():
        for partial in out.glob(".long.partial-*.mp4"):
            pid = int(partial.name.split("-")[1])  # the worker writing it: .long.partial-PID-UUID.mp4
            os.kill(pid, signal.SIGKILL)
            killed = pid
        time.sleep(0.02)
    thread.join(timeout=300)
    assert killed is not None, "no worker was caught converting"
    rows = {Path(r["clip"]).name: r for r in result["rows"]}
    assert all(r["status"] == "ok" for r in rows.values())
    assert rows["long.mp4"]["retries"] == 1 and rows["b0.mp4"]["retries"] == rows["b1.mp4"]["retries"] == 0
    for name, row in rows.items():
        assert media.probe(Path(row["output"])).frames == media.probe(folder / name).frames
        assert credentials.verify(Path(row["output"]))[0].state == "intact"
    assert not partials(out)


def test_a_damaged_clip_is_reported_and_the_others_finish(cluster, clips, small_model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    os.link(clips / "b0.mp4", folder / "b0.mp4")
    (folder / "broken.mp4").write_bytes((clips / "b1.mp4").read_bytes()[:3000])
    (tmp_path / "out").mkdir()
    with Ray() as executor, pytest.raises(FaceswapError, match="1 of 2 clips failed"):
        convert_many([folder], tmp_path / "out", small_model, ConvertSettings(), progress=False, echo=lambda _: None,
                     executor=executor)
    rows = {Path(r["clip"]).name: r for r in json.loads((tmp_path / "out" / "report.json").read_text())["clips"]}
    assert rows["b0.mp4"]["status"] == "ok" and (tmp_path / "out" / "b0.mp4").is_file()
    assert rows["broken.mp4"]["status"].startswith("failed: ")
    assert not (tmp_path / "out" / "broken.mp4").exists() and not partials(tmp_path / "out")


def test_ctrl_c_of_the_driver_leaves_nothing_half_written(cluster, clips, sample_b, small_model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    os.link(sample_b, folder / "long.mp4")
    os.link(clips / "b0.mp4", folder / "b0.mp4")
    out = tmp_path / "out"
    out.mkdir()
    command = [sys.executable, "-m", "faceswap", "-q", "convert", str(folder), "-o", str(out), "-m", str(small_model),
               "--ray", cluster]
    env = dict(os.environ, RAY_DEDUP_LOGS="0")
    driver = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and driver.poll() is None and not (out.is_dir() and partials(out)):
        time.sleep(0.02)
    assert driver.poll() is None, driver.communicate()[0]
    driver.send_signal(signal.SIGINT)
    text = driver.communicate(timeout=120)[0]
    assert driver.returncode == 130, text
    assert not partials(out), partials(out)
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert not partials(out)
    verified = invoke_cli("verify", out / "long.mp4", out / "b0.mp4")
    assert verified.exit_code == 0, verified.stdout


def test_pipeline_extracts_as_tasks_give_a_local_extracts_face_set(cluster, sample_a, sample_b, tmp_path):
    from faceswap import faceset
    from faceswap.extract import extract
    from faceswap.pipeline import Pipeline
    from faceswap.settings import ExtractSettings

    a1, a2 = cut(sample_a, tmp_path / "a1.mp4", 0, 24), cut(sample_a, tmp_path / "a2.mp4", 200, 224)
    b1 = cut(sample_b, tmp_path / "b1.mp4", 0, 36)
    spec = {"work_dir": "work",
            "identities": {"a": {"sources": [str(a1), str(a2)]}, "b": {"sources": [str(b1)]}},
            "train": {"model": "lite", "iterations": 2, "data_workers": 0, "preview_every": 2},
            "convert": [{"input": str(b1), "direction": "b2a"}]}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    lines = []
    with Ray() as executor:
        report = Pipeline(path, executor=executor).run(progress=False, echo=lines.append)
    assert [r["status"] for r in report["clips"]] == ["ok"]
    merged = tmp_path / "work" / "facesets" / "a"
    extract([a1, a2], tmp_path / "local_a", ExtractSettings(), progress=False)
    assert (merged / faceset.ALIGNMENTS).read_bytes() == (tmp_path / "local_a" / faceset.ALIGNMENTS).read_bytes()
    assert faceset.read_summary(merged) == faceset.read_summary(tmp_path / "local_a")
    assert sorted(p.name for p in (merged / "faces").iterdir()) == \
        sorted(p.name for p in (tmp_path / "local_a" / "faces").iterdir())
    assert not list((tmp_path / "work" / "facesets").glob(".*parts"))
    lines.clear()
    with Ray() as executor:  # a rerun skips every stage through the same keys
        Pipeline(path, executor=executor).run(progress=False, echo=lines.append)
    assert sum("unchanged, skipped" in line for line in lines) == 3
    assert "skipped (unchanged)" in "\n".join(lines)


def test_several_training_workers_need_ray_or_torchrun(tmp_path, sample_a, sample_b):
    result = invoke_cli("train", tmp_path / "a", tmp_path / "b", "-m", tmp_path / "m", "--iterations", "1",
                        "--workers", "2")
    assert result.exit_code != 0 and not (tmp_path / "m").exists()
    assert result.stderr.strip().splitlines() == [
        "faceswap: error: workers 2: that many training processes are asked for and 1 run: use run --ray "
        "(Ray Train), or train under torchrun --nproc_per_node 2"]
    # a pipeline says so before its extracts, not after them
    spec = tmp_path / "p.yaml"
    identities = {"a": {"sources": [str(sample_a)]}, "b": {"sources": [str(sample_b)]}}
    spec.write_text(yaml.safe_dump({"work_dir": str(tmp_path / "work"), "identities": identities,
                                    "train": {"iterations": 1, "workers": 2}}))
    result = invoke_cli("run", spec)
    assert result.exit_code != 0 and not (tmp_path / "work").exists()
    assert result.stderr.strip().splitlines() == [
        "faceswap: error: pipeline: train.workers: 2 training processes need run --ray (Ray Train)"]


def test_training_workers_through_ray_train(cluster, facesets, small_model, tmp_path):
    """workers 2: the DDP loop in two Ray Train workers on gloo, one on each node, resuming a model's checkpoint;
    rank 0 alone writes the model folder."""
    from faceswap.models.store import load_model, read_config

    model = tmp_path / "model"
    shutil.copytree(small_model, model)
    step = read_config(model)["step"]
    settings = TrainSettings(iterations=step + 2, workers=2, data_workers=0, precision="fp32", preview_every=1000)
    with Ray() as executor:
        summary = executor.train(*facesets, model, settings, progress=False)
    assert (summary.start_step, summary.step) == (step, step + 2), summary
    config = read_config(model)
    assert config["step"] == step + 2 and config["world_size"] == 2
    load_model(model)
    assert not list(tmp_path.glob(".*ray-train"))
