"""faceswap ui's API and job queue: paths confined to the workspace, jobs that survive a restart, cancel that
saves the checkpoint, uploads that are size-limited and atomic, and face removal from a set."""
from __future__ import annotations

import json
import os
import shutil
import signal
import time

import pytest
from starlette.testclient import TestClient

from faceswap.ui import app as ui_app
from faceswap.ui.app import create_app
from faceswap.ui.jobs import JobQueue


@pytest.fixture
def workspace(tmp_path, facesets, small_model, sample_b):
    root = tmp_path / "ws"
    shutil.copytree(facesets[1], root / "facesets" / "b")
    shutil.copytree(small_model, root / "models" / "m")
    shutil.copy(sample_b, root / "b.mp4")
    return root


def wait_for(check, seconds: float = 120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_paths_outside_the_workspace_are_refused(workspace, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("TOP-SECRET-CONTENT")
    (workspace / "link").symlink_to(tmp_path)
    (workspace / "file-link.txt").symlink_to(outside)
    with TestClient(create_app(workspace)) as client:
        for path in ("../secret.txt", str(outside), "link/secret.txt", "file-link.txt", "~/x", "models/../../secret.txt",
                     ".faceswap-ui/jobs.json", ""):
            response = client.get("/api/file", params={"path": path})
            assert response.status_code == 400 and "TOP-SECRET" not in response.text, path
        for job in ({"kind": "extract", "sources": [str(outside)], "output": "x"},
                    {"kind": "extract", "sources": ["b.mp4"], "output": "../out"},
                    {"kind": "convert", "input": "b.mp4", "model": "models/m", "output": "/tmp/x.mp4"},
                    {"kind": "convert", "input": "b.mp4", "model": "models/m", "output": "o.mp4",
                     "settings": {"reference": "link/secret.txt"}},
                    {"kind": "train", "a": "facesets/b", "b": "facesets/b", "model": "models/x"},  # no budget
                    {"kind": "shell", "command": "rm -rf /"}):
            response = client.post("/api/jobs", json=job)
            assert response.status_code == 400, job
        assert client.post("/api/upload", params={"name": "../../evil.txt"}, content=b"x").json()["path"] == \
            "uploads/evil.txt"  # a name only: the folders in it are dropped
        assert client.post("/api/upload", params={"name": "a.txt", "folder": "../up"}, content=b"x").status_code == 400
        assert client.get("/api/file", params={"path": "facesets/b/faceset.json"}).status_code == 200
    assert not (workspace / ".faceswap-ui" / "jobs.json").exists()  # no job was queued


def test_uploads_are_limited_and_atomic(workspace, monkeypatch):
    with TestClient(create_app(workspace)) as client:
        ok = client.post("/api/upload", params={"name": "clip.mp4"}, content=(workspace / "b.mp4").read_bytes())
        assert ok.status_code == 200 and (workspace / "uploads" / "clip.mp4").stat().st_size == \
            (workspace / "b.mp4").stat().st_size
        monkeypatch.setattr(ui_app, "UPLOAD_LIMIT", 1000)
        big = client.post("/api/upload", params={"name": "big.bin"}, content=iter([b"x" * 600, b"x" * 600]))
        assert big.status_code == 400 and "upload limit" in big.json()["error"]
        assert sorted(p.name for p in (workspace / "uploads").iterdir()) == ["clip.mp4"]  # no partial left


def test_queue_survives_a_restart_and_resumes(workspace):
    queue = JobQueue(workspace)
    job = queue.submit("train", ["train", "facesets/b", "facesets/b", "-m", "models/r", "--iterations", "120",
                                 "--save-every", "5", "--preview-every", "5"], "train r")
    wait_for(lambda: (workspace / "models" / "r" / "config.json").is_file())
    queue.stopped.set()  # the UI and its job die together
    os.killpg(queue.processes[job["id"]].pid, signal.SIGKILL)
    queue.processes[job["id"]].wait()
    queue.worker.join()
    restarted = JobQueue(workspace)  # a new UI process over the same workspace
    assert restarted.get(job["id"])["status"] == "interrupted"
    restarted.resume(job["id"])
    wait_for(lambda: restarted.get(job["id"])["status"] in ("done", "failed"), 300)
    view = restarted.view(restarted.get(job["id"]))
    assert view["status"] == "done" and "resuming" in "\n".join(view["log"] + [
        (workspace / ".faceswap-ui" / f"job-{job['id']}.log").read_text()])


def test_cancel_saves_the_checkpoint(workspace):
    with TestClient(create_app(workspace)) as client:
        job = client.post("/api/jobs", json={"kind": "train", "a": "facesets/b", "b": "facesets/b", "model": "models/c",
                                             "settings": {"iterations": 100000, "preview_every": 5}}).json()
        wait_for(lambda: client.get("/api/training", params={"model": "models/c"}).json()["step"] >= 5)
        client.post(f"/api/jobs/{job['id']}/cancel", json={})
        queue = client.app.state.queue
        wait_for(lambda: queue.get(job["id"])["status"] != "running", 120)
        assert queue.get(job["id"])["status"] == "cancelled" and queue.get(job["id"])["returncode"] == 130
        config = json.loads((workspace / "models" / "c" / "config.json").read_text())
        assert config["step"] >= 5  # saved on the way out, as Ctrl-C does
        assert client.post(f"/api/jobs/{job['id']}/resume", json={}).json()["status"] == "queued"
        client.post(f"/api/jobs/{job['id']}/cancel", json={})
        wait_for(lambda: queue.get(job["id"])["status"] in ("cancelled", "interrupted"), 120)


def test_faces_removed_from_a_set_and_a_preview(workspace):
    with TestClient(create_app(workspace)) as client:
        before = client.get("/api/faceset", params={"path": "facesets/b"}).json()
        removed = client.post("/api/faceset/remove", json={"path": "facesets/b", "faces": before["faces"][:2]}).json()
        assert removed["removed"] == 2 and removed["count"] == before["count"] - 2
        assert (workspace / "facesets" / "b.rejected" / "faces").is_dir()
        preview = client.post("/api/preview", json={"input": "b.mp4", "model": "models/m", "frame": 30,
                                                    "settings": {"color": "avg"}}).json()
        assert preview["faces"] == 1 and preview["image"].startswith("data:image/png;base64,")
        bad = client.post("/api/preview", json={"input": "b.mp4", "model": "models/m", "settings": {"crf": 99}})
        assert bad.status_code == 400 and "crf" in bad.json()["error"]


def test_a_pipeline_runs_as_a_job(workspace):
    (workspace / "p.yaml").write_text(
        "work_dir: work\nidentities:\n  a: {sources: [facesets/b]}\n  b: {sources: [facesets/b]}\n"
        "train: {iterations: 3}\nconvert:\n  - {input: b.mp4, output: b_swapped.mp4}\n")
    with TestClient(create_app(workspace)) as client:
        assert {"path": "p.yaml", "kind": "pipeline"} in client.get("/api/state").json()["files"]
        job = client.post("/api/jobs", json={"kind": "run", "pipeline": "p.yaml"}).json()
        queue = client.app.state.queue
        wait_for(lambda: queue.get(job["id"])["status"] not in ("queued", "running"), 300)
        assert queue.get(job["id"])["status"] == "done", queue.view(queue.get(job["id"]))["log"]
    assert (workspace / "work" / "output" / "b_swapped.mp4").is_file()
