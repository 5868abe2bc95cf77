"""Every path a job started from the page names, found from the settings models and the pipeline's own parser,
and held to the workspace with the same rule as the rest of the page (Workspace.inside)."""
from __future__ import annotations

import hashlib
from pathlib import Path

from faceswap import atomic
from faceswap.errors import FaceswapError
from faceswap.settings import ConvertSettings, ExtractSettings, TrainSettings, path_fields
from faceswap.ui.workspace import PIPELINE_SUFFIXES, Workspace


def _values(value) -> list:
    return value if isinstance(value, list) else [value]


def confine_settings(ws: Workspace, model, values: dict | None, absolute: bool = False) -> dict:
    """`values` with every path setting checked to lie inside the workspace (relative to it, or absolute)."""
    values = dict(values or {})
    for name in path_fields(model):
        if values.get(name) in (None, "", []):
            continue
        checked = []
        for value in _values(values[name]):
            if not isinstance(value, str):
                raise FaceswapError(f"{name}: a path inside the workspace is needed")
            try:
                path = ws.path(value, must_exist=False)
            except FaceswapError as exc:
                raise FaceswapError(f"{name}: {exc}") from None
            checked.append(str(path) if absolute else ws.relative(path))
        values[name] = checked if isinstance(values[name], list) else checked[0]
    return values


def pipeline_paths(pipeline, cwd: Path):
    """(key, path) for every file or folder a pipeline reads or writes, resolved as its run resolves them (with the
    pipeline's own _path and _with_paths: a key it reads relative to the file is checked relative to the file)."""
    def from_settings(model, values, where):
        for name, value in pipeline._with_paths(values or {}).items():
            if name in path_fields(model) and value:
                for item in _values(value):  # made absolute if the pipeline reads it from its folder, else cwd's
                    yield f"{where}.{name}", cwd / Path(str(item)).expanduser()

    spec, work = pipeline.spec, pipeline.work
    yield "work_dir", work
    for name in ("facesets/a", "facesets/b", "facesets/pretrain", "model", "base", "output", "report.json",
                 "pipeline-state.json"):  # what the run writes there: no planted link may lead it out
        yield "work_dir", work / name
    identities = [(f"identities.{side}", spec["identities"][side]) for side in ("a", "b")]
    for where, identity in identities + ([("pretrain", spec["pretrain"])] if "pretrain" in spec else []):
        for source in identity["sources"]:
            yield f"{where}.sources", pipeline._path(source)
        yield from from_settings(ExtractSettings, identity.get("extract"), f"{where}.extract")
    yield from from_settings(TrainSettings, spec.get("train"), "train")
    if "pretrain" in spec:
        yield from from_settings(TrainSettings, spec["pretrain"].get("train"), "pretrain.train")
    for i, clip in enumerate(spec.get("convert", [])):
        yield f"convert[{i}].input", pipeline._path(clip["input"])  # the pattern itself
        yield from from_settings(ConvertSettings, clip.get("settings"), f"convert[{i}].settings")
    for source, output, _, _ in pipeline._clips():  # what the patterns match and the outputs, as the run names them
        yield "convert.input", source
        yield "convert.output", output


def checked_pipeline(ws: Workspace, relative: str) -> str:
    """A snapshot of the pipeline file, checked: every path in it lies inside the workspace. The job runs the
    snapshot (beside the file, so relative paths mean the same), so the file cannot change after the check."""
    from faceswap.pipeline import Pipeline

    original = ws.path(relative)
    if not original.is_file() or original.suffix.lower() not in PIPELINE_SUFFIXES:
        raise FaceswapError(f"{relative}: not a pipeline file (.yaml)")
    data = original.read_bytes()
    snapshot = original.with_name(f".{original.name}.{hashlib.sha256(data).hexdigest()[:12]}.checked.yaml")
    atomic.write_bytes(snapshot, data)  # a dot name: not listed, and no upload can take it
    try:
        pipeline = Pipeline(snapshot)
        for key, path in pipeline_paths(pipeline, ws.root):
            ws.inside(path, f"pipeline {relative}: {key}")
    except BaseException as exc:
        snapshot.unlink(missing_ok=True)
        if not isinstance(exc, FaceswapError):
            raise
        line = str(exc).replace(str(snapshot), relative)
        raise FaceswapError(line if relative in line else f"{relative}: {line}") from None
    return ws.relative(snapshot)
