"""The UI's web app (Starlette): a page, a JSON API over the workspace and the job queue, server-sent events for
job progress, and a one-frame convert preview. Every job is a `faceswap` command; the preview calls convert's own
functions. Nothing here swaps, trains or finds faces by itself."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import csv
import hashlib
import json
import mimetypes
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from starlette.routing import Route

from faceswap import atomic, curate, images, media, settings
from faceswap.errors import FaceswapError
from faceswap.models import store
from faceswap.settings import ConvertSettings, ExtractSettings, TrainSettings
from faceswap.ui import guard
from faceswap.ui.jobs import JobQueue
from faceswap.ui.paths import checked_pipeline, confine_settings
from faceswap.ui.workspace import PIPELINE_SUFFIXES, UPLOAD_LIMIT, Workspace

CONSENT = ("Every output is marked as synthetic: signed C2PA Content Credentials (AI-composited media), container "
           "metadata and a JSON manifest. Swap only faces of people who agreed to it, and keep the marks.")
TOKEN_ENV = "FACESWAP_UI_TOKEN"  # how a parent passes the ui its token: not on the command line, where ps shows it
ABSOLUTE = re.compile(r"(?<![\w./~:-])/[^\s'\"(),;:]+")  # an absolute path inside an error line
INERT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
               ".json": "application/json", ".txt": "text/plain; charset=utf-8", ".log": "text/plain; charset=utf-8",
               ".csv": "text/plain; charset=utf-8", **{s: "text/plain; charset=utf-8" for s in PIPELINE_SUFFIXES}}


def job_args(ws: Workspace, kind: str, params: dict) -> tuple[list[str], str, dict]:
    """A job's `faceswap` command line (paths confined to the workspace, settings checked as the CLI does), title,
    and what the page watches (a model folder and its target step, or an output)."""
    outputs = []

    def inside(key, must_exist=True) -> str:
        path = ws.path(params.get(key), must_exist)
        if not must_exist:  # an output: its folder is made, inside the workspace, once the whole job checks out
            outputs.append(path)
        return ws.relative(path)

    def made(*result):
        for path in outputs:
            path.parent.mkdir(parents=True, exist_ok=True)
        return result

    def options(model, values) -> tuple[list[str], object]:
        values = confine_settings(ws, model, values)
        pretrained = values.pop("pretrained", None)
        parsed = settings.parse(model, values, kind)
        if model is TrainSettings:
            parsed.require_budget()
        return settings.cli_args(parsed) + (["--from", pretrained] if pretrained else []), parsed

    if kind == "extract":
        sources = [ws.relative(ws.path(s)) for s in params.get("sources") or []]
        if not sources:
            raise FaceswapError("extract: pick one or more videos, image folders or face sets")
        output = inside("output", False)
        return made(["extract", *sources, "-o", output, *options(ExtractSettings, params.get("settings"))[0]],
                    f"extract {', '.join(sources)} -> {output}", {})
    if kind == "train":
        a, b, model = inside("a"), inside("b"), inside("model", False)
        args, parsed = options(TrainSettings, params.get("settings"))
        return made(["train", a, b, "-m", model, *args], f"train {a} + {b} -> {model}",
                    {"model": model, "target": parsed.iterations})
    if kind == "convert":
        source, model, output = inside("input"), inside("model"), inside("output", False)
        args = options(ConvertSettings, params.get("settings"))[0]
        return made(["convert", source, "-m", model, "-o", output, *args], f"convert {source} -> {output}",
                    {"output": output})
    if kind == "run":
        return ["run", checked_pipeline(ws, params.get("pipeline"))], f"run {params['pipeline']}", {}
    raise FaceswapError(f"unknown job kind {kind!r} (extract, train, convert, run)")


class Previewer:
    """Convert's Swapper for the model and settings last asked for, kept between frames."""

    def __init__(self):
        self.key = self.swapper = None
        self.lock = threading.Lock()

    def __call__(self, model: Path, source: Path, index: int, values: ConvertSettings) -> dict:
        from faceswap.swap.convert import Swapper, preview_frame

        started = time.perf_counter()
        with self.lock:
            key = (str(model), (model / store.CONFIG).stat().st_mtime_ns, values.model_dump_json())
            if key != self.key:
                self.swapper, self.key = Swapper(model, values), key
            original, swapped, faces = preview_frame(source, index, self.swapper)
        side_by_side = np.hstack([original, swapped])
        return {"image": "data:image/png;base64," + base64.b64encode(images.png_bytes(side_by_side)).decode(),
                "faces": faces, "ms": round(1000 * (time.perf_counter() - started))}


def training(ws: Workspace, relative: str, queue: JobQueue) -> dict:
    """A model's live state: step, the loss history, speed, ETA, and the preview's version."""
    folder = ws.path(relative, must_exist=False)
    rows = []
    if (folder / store.LOSS_LOG).is_file():
        with open(folder / store.LOSS_LOG, newline="") as handle:
            rows = [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)]
    config = json.loads((folder / store.CONFIG).read_text()) if (folder / store.CONFIG).is_file() else {}
    step = int(rows[-1]["step"]) if rows else int(config.get("step", 0))
    with queue.lock:
        job = next((j for j in reversed(queue.jobs) if j.get("watch", {}).get("model") == relative), None)
        job = job and dict(job)
    target = job and job["watch"].get("target")
    rate = None
    if len(rows) >= 2 and rows[-1]["elapsed_s"] > rows[0]["elapsed_s"]:
        rate = (rows[-1]["step"] - rows[0]["step"]) / (rows[-1]["elapsed_s"] - rows[0]["elapsed_s"])
    preview = folder / store.PREVIEW
    return {"step": step, "target": target, "loss": rows[-300:],
            "egs": rows[-1].get("examples_per_s") if rows else None,
            "eta_s": round((target - step) / rate) if rate and target and target > step else None,
            "preview": f"/api/file?path={relative}/{store.PREVIEW}&v={preview.stat().st_mtime_ns}"
            if preview.is_file() else None, "job": job}


def shown(ws: Workspace, path: str) -> str:
    """An absolute path as an error line may show it: relative to the workspace, or not at all."""
    inside = Path(path).is_relative_to(ws.root)
    return (Path(path).relative_to(ws.root).as_posix() or ".") if inside else "(a path outside the workspace)"


def file_headers(path: Path) -> dict:
    """How /api/file serves a file: an inert type from the allow-list, anything else as a download."""
    suffix = path.suffix.lower()
    guessed = mimetypes.guess_type(path.name)[0] or ""  # .ts guesses as text/vnd.trolltech.linguist
    video = suffix in media.VIDEO_SUFFIXES and guessed.startswith("video/")
    if kind := INERT_TYPES.get(suffix) or (guessed if video else ""):
        return {"Content-Type": kind, "Cache-Control": "no-store"}
    return {"Content-Type": "application/octet-stream", "Cache-Control": "no-store",
            "Content-Disposition": f"attachment; filename*=utf-8''{quote(path.name)}"}


@dataclass
class UI:
    """The page's server side: what its handlers share (made by create_app, kept as app.state.ui), a method a route."""
    ws: Workspace
    queue: JobQueue
    previewer: Previewer
    page: str
    csp: str  # the page's Content-Security-Policy, with its script's hash

    def routes(self) -> list[Route]:
        api = self.api
        return [
            Route("/", self.index), Route("/api/state", api(self.state)), Route("/api/file", self.file),
            Route("/api/upload", api(self.upload), methods=["POST"]), Route("/api/faceset", api(self.faceset_view)),
            Route("/api/faceset/remove", api(self.faceset_remove), methods=["POST"]),
            Route("/api/jobs", api(self.jobs_create), methods=["POST"]),
            Route("/api/jobs/{job}/cancel", api(self.job_cancel), methods=["POST"]),
            Route("/api/jobs/{job}/resume", api(self.job_resume), methods=["POST"]),
            Route("/api/training", api(self.train_view)), Route("/api/video", api(self.video_info)),
            Route("/api/preview", api(self.preview), methods=["POST"]), Route("/api/events", self.events),
        ]

    def api(self, handler):
        """JSON in and out; a FaceswapError (or a bad value) is a 400 with its one line, no absolute path."""
        async def endpoint(request: Request):
            try:
                return JSONResponse(await handler(request))
            except (FaceswapError, ValueError, KeyError, TypeError) as exc:
                line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                return JSONResponse({"error": ABSOLUTE.sub(lambda m: shown(self.ws, m.group()), line)}, status_code=400)
        return endpoint

    @staticmethod
    async def body(request: Request) -> dict:
        data = await request.json()
        if not isinstance(data, dict):
            raise FaceswapError("expected a JSON object")
        return data

    async def index(self, request: Request):
        return HTMLResponse(self.page, headers={"Cache-Control": "no-store", "Content-Security-Policy": self.csp})

    async def state(self, request: Request):
        return {"workspace": str(self.ws.root), "files": self.ws.listing(), "jobs": self.queue.snapshot(),
                "consent": CONSENT}

    async def file(self, request: Request):
        try:
            path = self.ws.path(request.query_params.get("path", ""))
        except FaceswapError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if not path.is_file():
            return JSONResponse({"error": "not a file"}, status_code=400)
        headers = file_headers(path)
        return FileResponse(path, media_type=headers.pop("Content-Type"), headers=headers)

    async def upload(self, request: Request):
        target = self.ws.upload_target(request.query_params.get("name", ""),
                                       request.query_params.get("folder", "uploads"))
        size = int(request.headers.get("content-length") or 0)
        if size > UPLOAD_LIMIT:
            raise FaceswapError(f"larger than the upload limit of {UPLOAD_LIMIT // 1024 ** 2} MB")
        partial, written = atomic.partial_path(target), 0
        try:
            with open(partial, "wb") as handle:
                async for chunk in request.stream():
                    written += len(chunk)
                    if written > UPLOAD_LIMIT:
                        raise FaceswapError(f"larger than the upload limit of {UPLOAD_LIMIT // 1024 ** 2} MB")
                    handle.write(chunk)
            atomic.commit(partial, target)
        finally:
            atomic.discard(partial)
        return {"path": self.ws.relative(target), "bytes": written}

    async def faceset_view(self, request: Request):
        return self.ws.faceset(request.query_params.get("path", ""))

    async def faceset_remove(self, request: Request):
        data = await self.body(request)
        folder = self.ws.path(data.get("path"))
        names = {self.ws.path(face).name: "removed in faceswap ui" for face in data.get("faces", [])}
        removed = await run_in_threadpool(curate.apply, folder, names)
        return {"removed": removed, **self.ws.faceset(data["path"])}

    async def jobs_create(self, request: Request):
        data = await self.body(request)
        args, title, watch = job_args(self.ws, data.get("kind"), data)
        return self.queue.submit(data["kind"], args, title, watch)

    async def job_cancel(self, request: Request):
        return self.queue.cancel(request.path_params["job"])

    async def job_resume(self, request: Request):
        return self.queue.resume(request.path_params["job"])

    async def train_view(self, request: Request):
        return training(self.ws, request.query_params.get("model", ""), self.queue)

    async def video_info(self, request: Request):
        info = await run_in_threadpool(media.probe, self.ws.path(request.query_params.get("path", "")))
        return {"frames": info.frames, "width": info.width, "height": info.height, "fps": float(info.fps)}

    async def preview(self, request: Request):
        data = await self.body(request)
        values = confine_settings(self.ws, ConvertSettings, data.get("settings"), absolute=True)  # the server's cwd
        parsed = settings.parse(ConvertSettings, values, "preview")
        return await run_in_threadpool(self.previewer, self.ws.path(data.get("model")),
                                       self.ws.path(data.get("input")), int(data.get("frame", 0)), parsed)

    async def events(self, request: Request):
        async def stream():
            version = -1
            while not await request.is_disconnected():
                version = await run_in_threadpool(self.queue.wait_change, version, 1.0)
                yield f"data: {json.dumps({'jobs': self.queue.snapshot()})}\n\n"
                await asyncio.sleep(0.3)
        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    @contextlib.asynccontextmanager
    async def lifespan(self, _app):
        yield
        await run_in_threadpool(self.queue.shutdown)


def create_app(workspace: Path, slots: int = 1, token: str | None = None, host: str | None = None) -> Starlette:
    """The page's app: only requests from its own page pass (guard.Guard); a token is made if none is given."""
    ws = Workspace(workspace)
    page = (Path(__file__).with_name("page.html")).read_text()
    script = page.split("<script>", 1)[1].split("</script>", 1)[0]
    csp = guard.PAGE_CSP.format(script=base64.b64encode(hashlib.sha256(script.encode()).digest()).decode())
    ui = UI(ws, JobQueue(ws.root, slots), Previewer(), page, csp)
    token = token or guard.new_token()
    app = Starlette(routes=ui.routes(), lifespan=ui.lifespan,
                    middleware=[Middleware(guard.Guard, token=token, host=host)])
    app.state.ui, app.state.queue, app.state.workspace, app.state.token = ui, ui.queue, ws, token
    return app
