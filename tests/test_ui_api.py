"""faceswap ui's API and job queue: paths confined to the workspace, jobs that survive a restart, cancel that
saves the checkpoint, uploads that are size-limited and atomic, and face removal from a set. And who may ask:
only the page itself (its Host, its Origin, its token), with every path a job names held to the workspace."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time

import numpy as np
import pytest
from starlette.testclient import TestClient

from faceswap import images
from faceswap.settings import ConvertSettings, ExtractSettings, TrainSettings
from faceswap.ui import app as ui_app
from faceswap.ui.app import create_app
from faceswap.ui.jobs import JobQueue
from faceswap.ui.paths import path_fields

PAGE = "http://127.0.0.1:7913"  # where the tests' page is served (TestClient's Host and server port)
TOKEN = "test-token-of-this-launch"
OCTET = {"Content-Type": "application/octet-stream"}


def page(workspace, **headers) -> TestClient:
    """A client that asks as the page itself does: its Host, its Origin and its token."""
    return TestClient(create_app(workspace, token=TOKEN), base_url=PAGE,
                      headers={"Origin": PAGE, "X-Faceswap-Token": TOKEN, **headers})


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
    with page(workspace) as client:
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
        assert client.post("/api/upload", params={"name": "../../evil.png"}, content=b"x", headers=OCTET).json()[
            "path"] == "uploads/evil.png"  # a name only: the folders in it are dropped
        assert client.post("/api/upload", params={"name": "a.png", "folder": "../up"}, content=b"x",
                           headers=OCTET).status_code == 400
        assert client.get("/api/file", params={"path": "facesets/b/faceset.json"}).status_code == 200
    assert not (workspace / ".faceswap-ui" / "jobs.json").exists()  # no job was queued


def test_uploads_are_limited_and_atomic(workspace, monkeypatch):
    with page(workspace) as client:
        ok = client.post("/api/upload", params={"name": "clip.mp4"}, content=(workspace / "b.mp4").read_bytes(),
                         headers=OCTET)
        assert ok.status_code == 200 and (workspace / "uploads" / "clip.mp4").stat().st_size == \
            (workspace / "b.mp4").stat().st_size
        monkeypatch.setattr(ui_app, "UPLOAD_LIMIT", 1000)
        big = client.post("/api/upload", params={"name": "big.mp4"}, content=iter([b"x" * 600, b"x" * 600]),
                          headers=OCTET)
        assert big.status_code == 400 and "upload limit" in big.json()["error"]
        assert sorted(p.name for p in (workspace / "uploads").iterdir()) == ["clip.mp4"]  # no partial left


def test_queue_survives_a_restart_and_resumes(workspace):
    queue = JobQueue(workspace)
    job = queue.submit("train", ["train", "facesets/b", "facesets/b", "-m", "models/r", "--iterations", "20",
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
    with page(workspace) as client:
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


def test_jobs_of_a_queue_started_with_sigint_ignored_still_take_cancel(tmp_path):
    """A shell's background job starts with SIGINT ignored, and a child inherits that until it sets its own
    handler: the queue's jobs must not, or a Cancel sent while one is starting is lost."""
    import subprocess
    import sys

    code = ("import subprocess, sys; from faceswap.ui.jobs import JobQueue; JobQueue(sys.argv[1]); "
            "print(subprocess.run([sys.executable, '-c', 'import signal; print(signal.getsignal(signal.SIGINT))'], "
            "capture_output=True, text=True).stdout)")
    ignored = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert "default_int_handler" in ignored.stdout, ignored.stdout + ignored.stderr


def test_faces_removed_from_a_set_and_a_preview(workspace):
    with page(workspace) as client:
        before = client.get("/api/faceset", params={"path": "facesets/b"}).json()
        removed = client.post("/api/faceset/remove", json={"path": "facesets/b", "faces": before["faces"][:2]}).json()
        assert removed["removed"] == 2 and removed["count"] == before["count"] - 2
        assert (workspace / "facesets" / "b.rejected" / "faces").is_dir()
        preview = client.post("/api/preview", json={"input": "b.mp4", "model": "models/m", "frame": 30,
                                                    "settings": {"color": "avg"}}).json()
        assert preview["faces"] == 1 and preview["image"].startswith("data:image/png;base64,")
        bad = client.post("/api/preview", json={"input": "b.mp4", "model": "models/m", "settings": {"crf": 99}})
        assert bad.status_code == 400 and "crf" in bad.json()["error"]


def test_a_pipeline_runs_as_a_job(workspace, tmp_path):
    (workspace / "p.yaml").write_text(
        "work_dir: work\nidentities:\n  a: {sources: [facesets/b]}\n  b: {sources: [facesets/b]}\n"
        "train: {iterations: 3}\nconvert:\n  - {input: b.mp4, output: b_swapped.mp4}\n")
    with page(workspace) as client:
        assert {"path": "p.yaml", "kind": "pipeline"} in client.get("/api/state").json()["files"]
        job = client.post("/api/jobs", json={"kind": "run", "pipeline": "p.yaml"}).json()
        # swapped after the check: the job runs the snapshot that was checked, not this
        (workspace / "p.yaml").write_text((workspace / "p.yaml").read_text().replace(
            "work_dir: work", f"work_dir: {tmp_path / 'outside'}"))
        queue = client.app.state.queue
        wait_for(lambda: queue.get(job["id"])["status"] not in ("queued", "running"), 300)
        assert queue.get(job["id"])["status"] == "done", queue.view(queue.get(job["id"]))["log"]
    assert (workspace / "work" / "output" / "b_swapped.mp4").is_file() and not (tmp_path / "outside").exists()


@pytest.fixture
def bare(tmp_path, sample_b):
    """A workspace with one clip, and a folder beside it that no request may reach."""
    root, outside = tmp_path / "ws", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    shutil.copy(sample_b, root / "b.mp4")
    shutil.copy(sample_b, outside / "secret.mp4")
    return root, outside


def files_in(*folders) -> dict:
    return {str(p): p.stat().st_size for folder in folders for p in folder.rglob("*") if p.is_file()}


def one_line(response, status, *words):
    """A refusal: the status, one line naming what was wrong, and no absolute path."""
    error = response.json()["error"]
    assert response.status_code == status and "\n" not in error and "/tmp" not in error, (response.status_code, error)
    assert all(word in error for word in words), error
    return error


def test_cross_site_upload_and_run_is_refused(bare):
    """Reproduction 1: a text/plain POST (no preflight) from another page uploaded a pipeline and ran it."""
    root, outside = bare
    pipeline = (f"work_dir: {outside / 'work'}\nidentities:\n  a: {{sources: [{outside / 'secret.mp4'}]}}\n"
                f"  b: {{sources: [{outside / 'secret.mp4'}]}}\ntrain: {{iterations: 1}}\n")
    before = files_in(root, outside)
    run = json.dumps({"kind": "run", "pipeline": "x/p.yaml"})
    with page(root) as client:
        for origin in ("http://evil.example.com", "null", "http://127.0.0.1:9999", "http://127.0.0.1.evil.com:7913",
                       "http://localhost:7913", "https://127.0.0.1:7913"):
            simple = {"Origin": origin, "Content-Type": "text/plain"}
            one_line(client.post("/api/upload", params={"name": "p.yaml", "folder": "x"}, content=pipeline,
                                 headers=simple), 403, "origin")
            one_line(client.post("/api/jobs", content=run, headers=simple), 403, "origin")
            one_line(client.post("/api/jobs", content=run, headers={**simple, "Content-Type": "application/json"}),
                     403, "origin")
        # no Origin, and a Referer of another page: foreign too
        for headers in ({"Origin": ""}, {"Referer": "http://127.0.0.1:9999/attack.html"}):
            request = client.build_request("POST", "/api/jobs", content=run,
                                           headers={"Content-Type": "application/json"})
            del request.headers["origin"]
            request.headers.update({k: v for k, v in headers.items() if v})
            one_line(client.send(request), 403, "Origin")
        # the page's own origin, but a simple content type: still no
        one_line(client.post("/api/jobs", content=run, headers={"Content-Type": "text/plain"}), 415, "application/json")
        one_line(client.post("/api/upload", params={"name": "p.yaml", "folder": "x"}, content=pipeline,
                             headers={"Content-Type": "text/plain"}), 415, "application/octet-stream")
        assert files_in(root, outside) == before
        # and from the page itself the pipeline uploads, but cannot run: its paths lie outside
        assert client.post("/api/upload", params={"name": "p.yaml", "folder": "x"}, content=pipeline,
                           headers=OCTET).status_code == 200
        one_line(client.post("/api/jobs", content=run, headers={"Content-Type": "application/json"}), 400,
                 "x/p.yaml", "leads out of the workspace")
    assert not (root / ".faceswap-ui" / "jobs.json").exists() and files_in(outside) == files_in(bare[1])
    assert sorted(p.name for p in (root / "x").iterdir()) == ["p.yaml"]  # the refused snapshot is gone


def test_dns_rebinding_host_is_refused(bare):
    """Reproduction 2: `Host: evil.example.com:7913` got the workspace's path and listing."""
    root, _ = bare
    with page(root) as client:
        for host in ("evil.example.com:7913", "evil.example.com", "127.0.0.1:9999", "127.0.0.1.nip.io:7913",
                     "localhost.evil.com:7913", "user@127.0.0.1:7913", "127.0.0.1:7913/x", ""):
            response = client.get("/api/state", headers={"Host": host})
            assert str(root) not in response.text
            one_line(response, 403, "Host")
        for host in ("127.0.0.1:7913", "localhost:7913", "[::1]:7913", "LOCALHOST:7913"):
            assert client.get("/api/state", headers={"Host": host, "Origin": f"http://{host.lower()}"}).status_code \
                == 200, host
    with TestClient(create_app(root, token=TOKEN, host="192.168.7.7"), base_url="http://192.168.7.7:7913",
                    headers={"X-Faceswap-Token": TOKEN}) as client:  # --host beyond loopback: allowed, with the token
        assert client.get("/api/state").status_code == 200
        one_line(client.get("/api/state", headers={"X-Faceswap-Token": ""}), 403, "token")


def test_the_token_is_needed_and_the_page_swaps_it_for_a_cookie(bare):
    root, _ = bare
    with TestClient(create_app(root, token=TOKEN), base_url=PAGE) as client:
        for path in ("/", "/api/state", "/api/file?path=b.mp4", "/api/events"):
            one_line(client.get(path), 403, "token")
            one_line(client.get(path, headers={"X-Faceswap-Token": TOKEN[:-1]}), 403, "token")
            one_line(client.get(path, headers={"Cookie": f"faceswap-ui-7913={TOKEN}x"}), 403, "token")
        one_line(client.get("/api/state", params={"token": TOKEN}), 403, "token")  # only the page takes it in the URL
        one_line(client.get("/?token=wrong"), 403, "token")
        other_port = {"Cookie": f"faceswap-ui-7914={TOKEN}"}  # cookies ignore ports: each page has its own
        one_line(client.get("/api/state", headers=other_port), 403, "token")
        opened = client.get("/", params={"token": TOKEN})
        assert opened.status_code == 200 and "<title>faceswap</title>" in opened.text
        cookie = opened.headers["set-cookie"]
        assert cookie.startswith(f"faceswap-ui-7913={TOKEN};") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        policy = opened.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "script-src 'sha256-" in policy and "unsafe-inline" not in \
            policy.split("script-src")[1].split(";")[0]
        assert opened.headers["x-frame-options"] == "DENY" and opened.headers["x-content-type-options"] == "nosniff"
        assert client.get("/api/state").status_code == 200  # the cookie alone now
        assert client.get("/").status_code == 200
        # a state change needs the page's Origin even with the token; the event stream too
        one_line(client.post("/api/jobs", json={"kind": "x"}), 403, "Origin")
        one_line(client.get("/api/events"), 403, "Origin")
        one_line(client.get("/api/events", headers={"Origin": "http://127.0.0.1:9999"}), 403, "origin")
        one_line(client.get("/api/state", headers={"Sec-Fetch-Site": "same-site", "Sec-Fetch-Dest": "video"}), 403,
                 "another site")
        assert client.post("/api/jobs", json={"kind": "x"}, headers={"Origin": PAGE}).json()["error"].startswith(
            "unknown job kind")


def test_files_are_served_inertly(bare):
    """Reproduction 3: an uploaded .html came back as text/html and ran its script in the page's origin."""
    root, _ = bare
    with page(root) as client:
        for name in ("x.html", "x.htm", "x.svg", "x.js", "x.xhtml", "x.xml", "x.pdf", "x"):
            one_line(client.post("/api/upload", params={"name": name}, content=b"<script>alert(1)</script>",
                                 headers=OCTET), 400, "only videos")
        assert not (root / "uploads").exists() or not any((root / "uploads").iterdir())
        for name in ("x.html", "x.svg", "x.js"):  # put there by other means: still served inertly
            (root / name).write_text("<script>alert(1)</script>")
            served = client.get("/api/file", params={"path": name})
            assert served.headers["content-type"] == "application/octet-stream", name
            assert served.headers["content-disposition"].startswith("attachment;")
            assert served.headers["x-content-type-options"] == "nosniff"
        (root / "r.json").write_text("{}")
        (root / "p.yaml").write_text("a: 1")
        for name, kind in (("b.mp4", "video/mp4"), ("r.json", "application/json"),
                           ("p.yaml", "text/plain; charset=utf-8")):
            served = client.get("/api/file", params={"path": name})
            assert served.headers["content-type"] == kind and "content-disposition" not in served.headers, name
        assert client.post("/api/upload", params={"name": "face.png"}, content=b"x", headers=OCTET).status_code == 200
        assert client.get("/api/file", params={"path": "uploads/face.png"}).headers["content-type"] == "image/png"


def test_every_path_setting_of_a_job_is_confined(bare):
    """Reproduction 4: an extract job's `preview` outside the workspace ran and wrote its PNG there."""
    root, outside = bare
    assert {"reference", "exclude", "preview"} <= set(path_fields(ExtractSettings))
    assert {"reference", "exclude", "sign_cert", "sign_key"} <= set(path_fields(ConvertSettings))
    assert path_fields(TrainSettings) == ["pretrained"]
    with page(root) as client:
        for job in ({"kind": "extract", "sources": ["b.mp4"], "output": "facesets/b",
                     "settings": {"preview": str(outside / "sheet.png")}},
                    {"kind": "extract", "sources": ["b.mp4"], "output": "facesets/b",
                     "settings": {"preview": "../outside/sheet.png"}},
                    {"kind": "extract", "sources": ["b.mp4"], "output": "facesets/b", "settings": {"preview": 3}},
                    {"kind": "train", "a": "b.mp4", "b": "b.mp4", "model": "m",
                     "settings": {"iterations": 1, "pretrained": str(outside)}},
                    {"kind": "convert", "input": "b.mp4", "model": "b.mp4", "output": "o.mp4",
                     "settings": {"sign_key": "../outside/key.pem"}}):
            one_line(client.post("/api/jobs", json=job), 400, "workspace")
        one_line(client.post("/api/preview", json={"input": "b.mp4", "model": "b.mp4",
                                                   "settings": {"exclude": str(outside / "secret.mp4")}}), 400,
                 "workspace")
    assert files_in(outside) == {str(outside / "secret.mp4"): (outside / "secret.mp4").stat().st_size}
    assert not (root / ".faceswap-ui" / "jobs.json").exists() and not (root / "facesets").exists()


def test_a_symlink_leading_out_is_skipped_and_refused(bare):
    """Reproduction 5: a planted link made /api/state answer 400, with both absolute paths in the message."""
    root, outside = bare
    (root / "videos").mkdir()
    (root / "videos" / "planted.mp4").symlink_to("../../outside/secret.mp4")
    (root / "planted-folder").symlink_to(outside)
    with page(root) as client:
        state = client.get("/api/state")
        assert state.status_code == 200 and [f["path"] for f in state.json()["files"]] == ["b.mp4"]
        for path in ("videos/planted.mp4", "planted-folder/secret.mp4"):
            one_line(client.get("/api/file", params={"path": path}), 400, path, "leads out")
            one_line(client.get("/api/video", params={"path": path}), 400, path, "leads out")
            one_line(client.post("/api/jobs", json={"kind": "extract", "sources": [path], "output": "f"}), 400,
                     "leads out")
        one_line(client.post("/api/jobs", json={"kind": "extract", "sources": ["b.mp4"], "output": "planted-folder/f"}),
                 400, "leads out")


def test_a_pipeline_with_a_path_outside_is_refused(bare):
    root, outside = bare
    good = {"work_dir": "work", "identities": {"a": {"sources": ["b.mp4"]}, "b": {"sources": ["b.mp4"]}},
            "train": {"iterations": 1}, "convert": [{"input": "*.mp4"}]}
    (root / "sub").mkdir()
    (root / "sub" / "planted").symlink_to(outside)
    bad = {"work_dir": {"work_dir": str(outside / "work")},
           "work_dir ..": {"work_dir": "../outside/work"},
           "work_dir ~": {"work_dir": "~/faceswap-ui-test-work"},
           "work_dir link": {"work_dir": "sub/planted/work"},
           "sources": {"identities": {"a": {"sources": [str(outside / "secret.mp4")]}, "b": {"sources": ["b.mp4"]}}},
           "sources link": {"identities": {"a": {"sources": ["sub/planted/secret.mp4"]}, "b": {"sources": ["b.mp4"]}}},
           "extract.preview": {"identities": {"a": {"sources": ["b.mp4"], "extract": {"preview": "../outside/s.png"}},
                                              "b": {"sources": ["b.mp4"]}}},
           "extract.reference": {"identities": {"a": {"sources": ["b.mp4"],
                                                      "extract": {"reference": str(outside / "face.png")}},
                                                "b": {"sources": ["b.mp4"]}}},
           "train.pretrained": {"train": {"iterations": 1, "pretrained": str(outside)}},
           "pretrain": {"pretrain": {"sources": [str(outside / "secret.mp4")], "train": {"iterations": 1}}},
           "convert.input": {"convert": [{"input": str(outside / "*.mp4")}]},
           "convert.input ..": {"convert": [{"input": "../outside/secret.mp4"}]},
           "convert.output": {"convert": [{"input": "b.mp4", "output": "../../../outside/o.mp4"}]},
           "convert.settings": {"convert": [{"input": "b.mp4", "settings": {"sign_cert": str(outside / "face.png")}}]},
           "convert.settings photo": {"convert": [{"input": "b.mp4",
                                                   "settings": {"exclude": str(outside / "face.png")}}]}}
    images.write_png(outside / "face.png", np.zeros((16, 16, 3), np.uint8))
    with page(root) as client:
        (root / "ok.yaml").write_text(json.dumps(good))  # YAML reads JSON
        for where, change in bad.items():
            (root / "bad.yaml").write_text(json.dumps({**good, **change}))
            error = one_line(client.post("/api/jobs", json={"kind": "run", "pipeline": "bad.yaml"}), 400, "bad.yaml")
            assert where.split()[0].split(".")[0] in error and re.search("leads out|inside", error), error
        assert not (root / ".faceswap-ui" / "jobs.json").exists()
        assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == [".faceswap-ui"]  # no snapshot
        (root / "bad.yaml").write_text("identities: [")
        one_line(client.post("/api/jobs", json={"kind": "run", "pipeline": "bad.yaml"}), 400, "bad.yaml", "YAML")
        one_line(client.post("/api/jobs", json={"kind": "run", "pipeline": "b.mp4"}), 400, "not a pipeline")
        # the page's own request for a pipeline inside: queued, as the checked snapshot beside the file
        job = client.post("/api/jobs", json={"kind": "run", "pipeline": "ok.yaml"}).json()
        client.post(f"/api/jobs/{job['id']}/cancel", json={})
    assert job["args"][0] == "run" and job["args"][1].startswith(".ok.yaml.") and (root / job["args"][1]).read_text() \
        == json.dumps(good)
    assert sorted(files_in(outside)) == [str(outside / "face.png"), str(outside / "secret.mp4")]
