"""The UI's job queue: each job is a `faceswap` command run as a child process (the CLI is the one
implementation), one at a time by default, persisted as JSON in the workspace so a restart shows what was
running as interrupted, ready to resume. Cancel sends SIGINT, so a training saves its checkpoint as Ctrl-C does."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from faceswap import atomic
from faceswap.errors import FaceswapError

FINAL = ("done", "failed", "cancelled", "interrupted")
PERCENT = re.compile(r"(\d{1,3})%\|")


class JobQueue:
    def __init__(self, workspace: Path, slots: int = 1):
        self.root = Path(workspace)
        self.folder = self.root / ".faceswap-ui"
        self.file = self.folder / "jobs.json"
        self.slots = slots
        self.folder.mkdir(parents=True, exist_ok=True)
        self.stopped = threading.Event()
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.processes: dict[str, subprocess.Popen] = {}
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN and threading.current_thread() is threading.main_thread():
            # children inherit an ignored SIGINT (a shell's background job starts so) until their imports are done:
            # a Cancel in those seconds would be lost
            signal.signal(signal.SIGINT, signal.default_int_handler)
        self.jobs: list[dict] = self._load()
        self.version = 0
        self.worker = threading.Thread(target=self._work, daemon=True, name="ui-jobs")
        self.worker.start()

    def _load(self) -> list[dict]:
        try:
            jobs = json.loads(self.file.read_text())["jobs"] if self.file.is_file() else []
        except (ValueError, KeyError, TypeError):
            jobs = []
        for job in jobs:
            if job["status"] in ("running", "queued"):  # the UI stopped under it: it did not finish
                job["status"] = "interrupted"
        return jobs

    def _save(self) -> None:
        atomic.write_json(self.file, {"jobs": self.jobs})
        self.version += 1
        self.changed.notify_all()

    def submit(self, kind: str, args: list[str], title: str, watch: dict | None = None) -> dict:
        job = {"id": uuid.uuid4().hex[:10], "kind": kind, "title": title, "args": [str(a) for a in args],
               "status": "queued", "created": time.time(), "watch": watch or {}}
        with self.lock:
            self.jobs.append(job)
            self._save()
        return job

    def get(self, job_id: str) -> dict:
        with self.lock:
            for job in self.jobs:
                if job["id"] == job_id:
                    return job
        raise FaceswapError(f"no job {job_id}")

    def cancel(self, job_id: str) -> dict:
        with self.lock:
            job = self.get(job_id)
            if job["status"] == "queued":
                job["status"] = "cancelled"
                self._save()
            elif job["status"] == "running" and job_id in self.processes:
                job["cancel"] = True
                os.killpg(self.processes[job_id].pid, signal.SIGINT)  # as Ctrl-C: train saves its checkpoint
            return job

    def resume(self, job_id: str) -> dict:
        """Queue an ended job again: train and extract pick up where they stopped."""
        with self.lock:
            job = self.get(job_id)
            if job["status"] not in FINAL or job["status"] == "done":
                raise FaceswapError(f"job {job_id} is {job['status']}; only a stopped job resumes")
            job.update(status="queued", cancel=False, returncode=None)
            self._save()
            return job

    def log_path(self, job: dict) -> Path:
        return self.folder / f"job-{job['id']}.log"

    def view(self, job: dict) -> dict:
        """A job with its progress (the last percentage its bar printed) and the tail of its log."""
        path = self.log_path(job)
        text = path.read_bytes()[-8000:].decode(errors="replace") if path.is_file() else ""
        lines = [line.strip() for line in re.split(r"[\r\n]+", text) if line.strip()]
        found = PERCENT.findall(text)
        progress = 100 if job["status"] == "done" else int(found[-1]) if found else 0
        return dict(job, progress=progress, log=lines[-12:])

    def snapshot(self) -> list[dict]:
        with self.lock:
            return [self.view(job) for job in self.jobs]

    def wait_change(self, version: int, timeout: float) -> int:
        with self.lock:
            if self.version == version:
                self.changed.wait(timeout)
            return self.version

    def _work(self) -> None:
        while not self.stopped.is_set():
            with self.lock:
                running = sum(job["status"] == "running" for job in self.jobs)
                job = next((j for j in self.jobs if j["status"] == "queued"), None) if running < self.slots else None
                if job is not None:
                    self._start(job)
            if self.stopped.wait(0.2):
                break  # stopping: what still runs shows as interrupted on the next start
            self._reap()

    def _start(self, job: dict) -> None:
        with open(self.log_path(job), "ab") as log:
            process = subprocess.Popen([sys.executable, "-m", "faceswap", *job["args"]], cwd=self.root,
                                       stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        self.processes[job["id"]] = process
        job.update(status="running", started=time.time(), pid=process.pid)
        self._save()

    def _reap(self) -> None:
        with self.lock:
            for job_id, process in list(self.processes.items()):
                code = process.poll()
                if code is None:
                    continue
                job = self.get(job_id)
                del self.processes[job_id]
                status = "done" if code == 0 else "cancelled" if job.get("cancel") else \
                    "interrupted" if code in (130, 143) else "failed"
                job.update(status=status, returncode=code, ended=time.time())
                self._save()
            if self.processes:  # progress moves: wake the page's event stream now and then
                self.version += 1
                self.changed.notify_all()

    def shutdown(self) -> None:
        """Stop running jobs as Ctrl-C would (checkpoints saved); they show as interrupted on the next start."""
        self.stopped.set()
        with self.lock:
            for process in self.processes.values():
                os.killpg(process.pid, signal.SIGINT)
        for process in list(self.processes.values()):
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
