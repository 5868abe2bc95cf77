"""`faceswap run PIPELINE.yaml`: extract A, extract B, train, convert clips; cached, resumable stages.

Each stage's key is a sha256 of its settings and of the content of its inputs. A stage whose key matches its last
success (recorded in <work_dir>/pipeline-state.json) and whose outputs exist is skipped; a changed key reruns it and,
through the keys, everything downstream. Relative paths in a pipeline file are relative to the file's own folder.
"""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

import yaml

from faceswap import atomic, faceset, images, media, outputs, settings
from faceswap.cluster import Local, parts_dir
from faceswap.device import share_cpu_with_video
from faceswap.errors import FaceswapError, Interrupted
from faceswap.models import store
from faceswap.media import VIDEO_SUFFIXES
from faceswap.settings import ConvertSettings, ExtractSettings, TrainSettings
from faceswap.swap.batch import table
from faceswap.swap.convert import manifest_path

log = logging.getLogger(__name__)
STATE = "pipeline-state.json"
TOP_KEYS = {"work_dir", "identities", "pretrain", "train", "convert", "jobs"}
IDENTITY_KEYS = {"sources", "extract"}
CLIP_KEYS = {"input", "output", "direction", "settings"}


def _check_mapping(value, where: str, allowed: set | dict) -> dict:
    if not isinstance(value, dict):
        raise FaceswapError(f"pipeline: {where} must be a mapping, not {type(value).__name__}")
    for key in value:
        if key not in allowed:
            raise FaceswapError(f"pipeline: {where}.{key}: unknown key (allowed: {', '.join(sorted(allowed))})")
    return value


class Pipeline:
    def __init__(self, path: Path, work_dir: Path | None = None, jobs: int | None = None, executor=None):
        """`executor`: where the stages run (cluster.Ray); None: here, converting `jobs` clips at once."""
        self.path = Path(path)
        if not self.path.is_file():
            raise FaceswapError(f"{self.path}: pipeline file not found")
        try:
            spec = yaml.safe_load(self.path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise FaceswapError(f"{self.path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        self.base = self.path.resolve().parent
        self.spec = self._validate(spec)
        self.work = Path(work_dir) if work_dir else self._path(self.spec.get("work_dir", "work"))
        self.jobs = jobs or int(self.spec.get("jobs", 1))
        self.executor = executor or Local(self.jobs)
        trains = {"train": self.spec.get("train", {}), "pretrain.train": self.spec.get("pretrain", {}).get("train", {})}
        for where, train in trains.items():  # refused here, not once the extracts have run
            if isinstance(self.executor, Local) and train.get("workers", 1) > 1:
                raise FaceswapError(f"pipeline: {where}.workers: {train['workers']} training processes need run "
                                    "--ray (Ray Train)")
        self.damaged = False

    def _check_sources(self, identity, where: str, allowed: set) -> dict:
        identity = _check_mapping(identity, where, allowed)
        sources = identity.get("sources")
        if isinstance(sources, str):
            identity["sources"] = sources = [sources]
        if not isinstance(sources, list) or not sources:
            raise FaceswapError(f"pipeline: {where}.sources: give one or more videos, folders or face sets")
        for source in sources:
            if not isinstance(source, str) or not self._path(source).exists():
                raise FaceswapError(f"pipeline: {where}.sources: {source!r} not found")
        settings.parse(ExtractSettings, identity.get("extract", {}), f"{where}.extract")
        self._check_files(identity.get("extract", {}), f"{where}.extract")
        return identity

    def _check_budget(self, train_spec, where: str) -> None:
        settings.parse(TrainSettings, train_spec, where)
        self._check_files(train_spec, where)
        if train_spec.get("iterations") is None and train_spec.get("minutes") is None:
            raise FaceswapError(f"pipeline: {where}: give iterations or minutes")

    def _path(self, value: str) -> Path:
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.base / path).resolve()

    def _validate(self, spec) -> dict:
        spec = _check_mapping(spec if spec is not None else {}, "(top)", TOP_KEYS)
        identities = _check_mapping(spec.get("identities"), "identities", {"a", "b"})
        for side in ("a", "b"):
            if side not in identities:
                raise FaceswapError(f"pipeline: identities.{side}: missing")
            self._check_sources(identities[side], f"identities.{side}", IDENTITY_KEYS)
        if "pretrain" in spec:  # a base of its own: any people's faces, extracted like an identity's
            pretrain_spec = self._check_sources(spec["pretrain"], "pretrain", IDENTITY_KEYS | {"train"})
            self._check_budget(pretrain_spec.get("train", {}), "pretrain.train")
            if spec.get("train", {}).get("pretrained"):
                raise FaceswapError("pipeline: give train.pretrained or a pretrain stage, not both")
        self._check_budget(spec.get("train", {}), "train")
        clips = spec.get("convert", [])
        if not isinstance(clips, list):
            raise FaceswapError("pipeline: convert: must be a list of clips")
        for i, clip in enumerate(clips):
            clip = _check_mapping(clip, f"convert[{i}]", CLIP_KEYS)
            if not isinstance(clip.get("input"), str):
                raise FaceswapError(f"pipeline: convert[{i}].input: missing")
            if "direction" in clip.get("settings", {}):
                raise FaceswapError(f"pipeline: convert[{i}].settings.direction: give direction beside settings")
            settings.parse(ConvertSettings, {**clip.get("settings", {}), "direction": clip.get("direction", "a2b")},
                           f"convert[{i}].settings")
            self._check_files(clip.get("settings", {}), f"convert[{i}].settings")
        if not isinstance(spec.get("jobs", 1), int):
            raise FaceswapError("pipeline: jobs: expected int")
        return spec

    # -- state ------------------------------------------------------------------------------------
    def _load_state(self) -> dict:
        path = self.work / STATE
        try:
            return json.loads(path.read_text()) if path.is_file() else {}
        except ValueError:
            log.warning("%s is damaged; every stage will run again from the start", path)
            self.damaged = True  # what is on disk cannot be matched to its settings: none of it is reused
            return {}

    def _save_state(self) -> None:
        atomic.write_json(self.work / STATE, self.state)

    PHOTO_KEYS = ("reference", "exclude")
    FILE_KEYS = tuple(dict.fromkeys(k for model in (ExtractSettings, TrainSettings, ConvertSettings)
                                    for k in settings.path_fields(model)))
    OUTPUT_KEYS = ("preview",)

    def _check_files(self, values: dict, where: str) -> None:
        """The files a stage's settings name exist, and its photos read, before the first stage starts."""
        for key in self.FILE_KEYS:
            if not values.get(key) or key in self.OUTPUT_KEYS:
                continue
            path = self._path(values[key])
            if not path.exists():
                raise FaceswapError(f"pipeline: {where}.{key}: {values[key]!r} not found")
            if key in self.PHOTO_KEYS:
                for photo in media.image_files(path) if path.is_dir() else [path]:
                    images.read_image(photo)

    def _with_paths(self, settings: dict) -> dict:
        """A stage's settings with the files they name made relative to the pipeline file."""
        return {k: (str(self._path(v)) if k in self.FILE_KEYS and v else v) for k, v in settings.items()}

    def _photos(self, settings: dict) -> list[str]:
        """Content hashes of the reference photos: a changed photo reruns its stage."""
        return [self._fingerprint(Path(settings[k])) for k in self.PHOTO_KEYS if settings.get(k)]

    @staticmethod
    def _key(*parts) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    @staticmethod
    def _fingerprint(path: Path) -> str:
        """Content hash of an input: a file's bytes, a face set's alignments, a folder's files."""
        path = Path(path)
        for record in (path, path / faceset.ALIGNMENTS, path / store.CONFIG):
            if record.is_file():
                return atomic.sha256_of(record)
        digest = hashlib.sha256()
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(item.relative_to(path)).encode())
            digest.update(atomic.sha256_of(item).encode())
        return digest.hexdigest()

    def _done(self, stage: str, key: str, output: Path) -> bool:
        record = self.state.get(stage)
        return bool(record and record.get("key") == key and "finished" in record and Path(output).exists())

    def _finish(self, stage: str, key: str, **info) -> None:
        self.state[stage] = {"key": key, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **info}
        self._save_state()

    # -- stages -------------------------------------------------------------------------------------
    def _extract(self, side: str, progress: bool, echo) -> Path:
        identity = self.spec["pretrain"] if side == "pretrain" else self.spec["identities"][side]
        sources = [self._path(s) for s in identity["sources"]]
        if len(sources) == 1 and (sources[0] / faceset.ALIGNMENTS).is_file():
            echo(f"[extract {side}] using the face set {sources[0]}")
            return sources[0]
        settings = self._with_paths(identity.get("extract", {}))
        out = self.work / "facesets" / side
        key = self._key("extract", settings, [self._fingerprint(s) for s in sources], self._photos(settings))
        if self._done(f"extract_{side}", key, out / faceset.SUMMARY):
            echo(f"[extract {side}] unchanged, skipped")
            return out
        if self.damaged or self.state.get(f"extract_{side}", {}).get("key") not in (None, key):
            if out.exists():
                shutil.rmtree(out)  # settings or sources changed: start the face set again
            shutil.rmtree(parts_dir(out), ignore_errors=True)  # and a cluster's unmerged parts with it
        summary = self.executor.extract(sources, out, ExtractSettings(**settings), progress)
        echo(f"[extract {side}] {summary.line()}")
        if summary.faces_in_set == 0:
            raise FaceswapError(f"identity {side}: no face found in {', '.join(map(str, sources))}")
        self._finish(f"extract_{side}", key, faces=summary.faces)
        return out

    def _train(self, set_a: Path, set_b: Path | None, progress: bool, echo, stage: str = "train",
               base: Path | None = None) -> Path:
        """The train stage (A, B -> model), or with set_b None the pretrain stage (face set -> base)."""
        spec = self.spec["pretrain"].get("train", {}) if set_b is None else self.spec.get("train", {})
        settings = self._with_paths(dict(spec, **({"pretrained": str(base)} if base else {})))
        out = self.work / ("base" if set_b is None else "model")
        inputs = [self._fingerprint(p) for p in (set_a, set_b, settings.get("pretrained")) if p]
        key = self._key(stage, settings, *inputs)
        if self._done(stage, key, out / store.CONFIG):
            echo(f"[{stage}] unchanged, skipped")
            return out
        previous = self.state.get(stage, {})
        if (self.damaged or previous.get("key") not in (None, key)) and out.exists():
            shutil.rmtree(out)  # changed data or settings: a fresh model
        summary = self.executor.train(set_a, set_b, out, TrainSettings(**settings), progress)
        echo(f"[{stage}] {summary.line()}")
        if summary.stopped.exit_code:
            self.state[stage] = {"key": key, "status": summary.stopped.value, "step": summary.step}
            self._save_state()
            raise Interrupted(f"{stage} {summary.stopped.value} at step {summary.step}; checkpoint saved, run "
                              "again to resume", summary.stopped.exit_code)
        self._finish(stage, key, step=summary.step)
        return out

    def _clips(self) -> list[tuple[Path, Path, str, dict]]:
        clips, names = [], {}
        for i, clip in enumerate(self.spec.get("convert", [])):
            pattern = str(self._path(clip["input"]))
            matches = sorted(Path(p) for p in glob.glob(pattern)) if glob.has_magic(pattern) else [Path(pattern)]
            if not matches:
                raise FaceswapError(f"pipeline: convert[{i}].input: {clip['input']!r} matches nothing")
            for source in matches:
                if source.is_dir() and source.suffix.lower() not in VIDEO_SUFFIXES and not any(source.iterdir()):
                    raise FaceswapError(f"pipeline: convert[{i}].input: {source} is an empty folder")
                template = clip.get("output") or "{stem}_" + clip.get("direction", "a2b") + ".mp4"
                try:
                    name = template.format(stem=source.stem, name=source.name)
                except (KeyError, IndexError, ValueError):
                    raise FaceswapError(f"pipeline: convert[{i}].output: only {{stem}} and {{name}} fill in") \
                        from None
                output = self.work / "output" / name
                if Path(name).is_absolute() or ".." in Path(name).parts:
                    raise FaceswapError(f"pipeline: convert[{i}].output: {name!r} must stay inside the work "
                                        "folder's output/")
                if output.parent.is_dir():  # a fresh work folder's output/ is made later, holding nothing to refuse
                    outputs.claim(output, "converted", also=("preview",))
                if name in names:
                    raise FaceswapError(f"pipeline: convert[{i}]: output name {name!r} is also made by "
                                        f"convert[{names[name]}]; give each clip its own output")
                names[name] = i
                settings = dict(self._with_paths(clip.get("settings", {})), direction=clip.get("direction", "a2b"))
                clips.append((source, output, name, settings))
        return clips

    def run(self, progress: bool = True, echo=print) -> dict:
        clips = self._clips()  # validate names before any long work, and before the work folder is made
        sources = [self._path(s) for side in self.spec["identities"].values() for s in side["sources"]]
        outputs.claim(self.work, "work", sources)
        atomic.ensure_writable_dir(self.work, "the work folder")
        self.executor.check([self.work, *sources, *(c[0] for c in clips)])
        self.state = self._load_state()
        set_a = self._extract("a", progress, echo)
        set_b = self._extract("b", progress, echo)
        base = None
        if "pretrain" in self.spec:
            base = self._train(self._extract("pretrain", progress, echo), None, progress, echo, "pretrain")
        model = self._train(set_a, set_b, progress, echo, base=base)
        model_key = self._fingerprint(model)
        share_cpu_with_video()  # training is done: from here on the model shares the CPU with video work
        (self.work / "output").mkdir(exist_ok=True)
        rows, todo = [], []
        for source, output, name, clip_settings in clips:
            stage = f"convert:{name}"
            try:
                key = self._key("convert", clip_settings, self._fingerprint(source), model_key,
                                self._photos(clip_settings))
            except OSError as exc:
                rows.append({"clip": str(source), "output": str(output), "status": f"failed: {exc}"})
                continue
            if self._done(stage, key, output) and manifest_path(output).exists():
                record = self.state[stage]
                rows.append({"clip": str(source), "output": str(output), "frames": record.get("frames", 0),
                             "faces": record.get("faces", 0), "fps": 0.0, "status": "skipped (unchanged)"})
                continue
            todo.append((source, output, {"stage": stage, "key": key, "settings": clip_settings}))
        for settings_json in {json.dumps(t[2]["settings"], sort_keys=True) for t in todo}:
            group = [t for t in todo if json.dumps(t[2]["settings"], sort_keys=True) == settings_json]
            results = self.executor.convert(group, model, ConvertSettings(**json.loads(settings_json)), progress)
            for result in results:
                if result["status"] == "ok":
                    self._finish(result["stage"], result["key"], frames=result["frames"], faces=result["faces"])
                rows.append({k: v for k, v in result.items() if k not in ("stage", "key", "settings")})
        report = {"pipeline": str(self.path), "work_dir": str(self.work), "model": str(model),
                  "preview": str(model / store.PREVIEW), "clips": rows}
        atomic.write_json(self.work / "report.json", report)
        if rows:
            echo(table(rows))
        echo(f"model: {model}  training preview: {model / store.PREVIEW}")
        for row in rows:
            if not row["status"].startswith("failed"):
                echo(f"output: {row['output']}")
        if failed := [r for r in rows if r["status"].startswith("failed")]:
            raise FaceswapError(f"{len(failed)} of {len(rows)} clips failed (see {self.work / 'report.json'})")
        return report
