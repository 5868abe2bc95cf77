"""`faceswap extract`: find, track, smooth and align faces in videos or image folders into a face set.

Decoding runs in a reader thread; the main thread only finds faces (measuring key frames and interpolating between them,
faces/keyframes.py); a writer thread tracks, smooths, crops and writes. Records are appended to the alignments file only
after their crops are on disk, which makes a killed run resumable from its last whole record.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from faceswap import align, atomic, faceset, images, masks, media, outputs, threads
from faceswap.errors import FaceswapError
from faceswap.faces import Face, FaceCounts, finder_for, keyframes
from faceswap.faces.hands import HandFinder
from faceswap.faces.identity import filters_for
from faceswap.faces.stage import FaceStage
from faceswap.settings import ExtractSettings

log = logging.getLogger(__name__)


@dataclass
class ExtractSummary(FaceCounts):
    skipped_resumed: int = 0
    interpolated: int = 0         # frames whose landmarks were interpolated between measured ones
    faces_in_set: int = 0         # faces the face set holds now, from this run and earlier ones

    def line(self) -> str:
        resumed = f", {self.skipped_resumed} frames already done ({self.faces_in_set} faces in the set)" \
            if self.skipped_resumed else ""
        return (f"extract: {self.frames} frames, {self.faces} faces, {self.frames_without_face} frames without a "
                f"face, {self.interpolated} interpolated{resumed}, {self.fps:.1f} fps")


def blur_score(crop: np.ndarray) -> float:
    """Variance of the Laplacian on a 128 px grey crop: low means blurred."""
    grey = cv2.cvtColor(cv2.resize(crop, (128, 128), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    _, std = cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_32F))
    return float(std[0, 0]) ** 2


class Preview:
    """A contact sheet (PNG) or a video of sampled frames with boxes and landmarks drawn."""

    def __init__(self, path: Path, total_frames: int, cells: int = 16):
        self.path = Path(path)
        self.video = self.path.suffix.lower() in (".mp4", ".mov", ".mkv")
        self.hands = HandFinder()  # the occlusion regions are drawn too (training leaves them out of the loss)
        self.every = 1 if self.video else max(1, total_frames // cells)
        self.seen = 0
        self.cells = cells
        self.tiles: list[np.ndarray] = []
        self.writer = None

    @staticmethod
    def draw(image: np.ndarray, faces: list[Face], hands: list[np.ndarray] = ()) -> np.ndarray:
        out = image.copy()
        if hands:
            covered = masks.hand_mask(hands, image.shape[:2]) > 0.5
            out[covered] = (out[covered] * 0.5 + np.array([0, 220, 255]) * 0.5).astype(np.uint8)
        thick = max(1, image.shape[1] // 400)
        for face in faces:
            x1, y1, x2, y2 = np.asarray(face.bbox).astype(int)
            cv2.rectangle(out, (x1, y1), (x2, y2), (0, 255, 0), thick)
            cv2.putText(out, f"#{face.track}", (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.5 * thick, (0, 255, 0), thick)
            for x, y in np.asarray(face.landmarks):
                cv2.circle(out, (int(x), int(y)), thick + 1, (255, 40, 40), -1)
        return out

    def add(self, frame: media.Frame, faces: list[Face]) -> None:
        self.seen += 1
        if (self.seen - 1) % self.every:  # counted, not by index: with --every the indices skip
            return
        drawn = self.draw(frame.image, faces, self.hands(frame.image, faces, video=self.video))
        if self.video:
            if self.writer is None:
                self.writer = media.VideoWriter(self.path, crf=23, preset="veryfast")
            self.writer.write(drawn, frame.pts)
        elif len(self.tiles) < self.cells:
            scale = 320 / drawn.shape[1]
            self.tiles.append(cv2.resize(drawn, (320, int(round(drawn.shape[0] * scale)))))

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        elif self.tiles:
            images.write_png(self.path, images.grid(self.tiles, 4))


def _gap(settings: ExtractSettings) -> int:
    """Frames in a row that may be interpolated: only between neighbouring frames, not with --every."""
    return max(0, settings.interpolate) if settings.every == 1 else 0


class _FrameSaver:
    """One input's frames, in the single writer thread (records keep frame order and follow their crops onto
    disk): the face stage makes the faces final, then each is cropped, checked, written and recorded."""

    def __init__(self, source: str, output: Path, settings: ExtractSettings, writer: faceset.AlignmentsWriter,
                 summary: ExtractSummary, preview: Preview | None, consecutive: bool, identity: list):
        self.source, self.output, self.settings = source, output, settings
        self.writer, self.summary, self.preview = writer, summary, preview
        self.stage = FaceStage.of(settings, consecutive, identity=[f.fresh() for f in identity])

    def __call__(self, item: tuple | None) -> None:
        """One frame's found faces; None at the end of the input (the stage gives back what it holds)."""
        for frame, faces, measured in (self.stage.push(*item) if item is not None else self.stage.flush()):
            if self.preview is not None:
                self.preview.add(frame, faces)
            records = [r for number, face in enumerate(faces) if (r := self._save_face(frame, face, number))]
            record = {"source": self.source, "frame": frame.index, "pts": round(frame.pts, 6), "faces": records}
            if records and not measured:
                record["interpolated"] = True
                self.summary.interpolated += 1
            self.writer.append(record)
            self.summary.count(len(records))

    def _save_face(self, frame: media.Frame, face: Face, number: int) -> dict | None:
        """Crop, check and write one face; its record, or None when it is too blurred."""
        settings = self.settings
        crop = align.crop_face(frame.image, face.matrix, settings.size, settings.padding)
        blur = blur_score(crop)
        if blur < settings.min_blur:
            return None
        name = f"{Path(self.source).stem}_{frame.index:06d}_{number}.png"
        record = face.to_record(blur, name)
        meta = dict(record, source=self.source, frame=frame.index, pts=frame.pts, size=settings.size,
                    padding=settings.padding)
        path = self.output / faceset.FACES / name
        tmp = path.with_name("." + path.name + ".partial")
        tmp.write_bytes(faceset.encode_png(crop, meta))
        os.replace(tmp, path)
        return record


def extract(inputs: list[Path], output: Path, settings: ExtractSettings | None = None,
            finder=None, progress: bool = True) -> ExtractSummary:
    """Extract every input (video files, image folders, folders of video files) into one face set at `output`."""
    settings = settings or ExtractSettings()
    if not inputs:
        raise FaceswapError("no input given")
    inputs, output = media.expand_inputs(inputs), Path(output)  # a folder of clips stands for its clips
    infos = [media.probe(p) for p in inputs]  # every input checked before any work
    names = [p.name for p in inputs]
    if len(set(names)) != len(names):
        raise FaceswapError("two inputs share a file name; rename one so the face set can tell them apart")
    outputs.claim(output, "faceset", inputs)
    if settings.preview:
        outputs.claim(settings.preview, "preview", inputs + [output], also=("png",))
    created = not output.exists()
    with atomic.exclusive(output, "face set"):
        try:
            atomic.ensure_writable_dir(output, "the face set")
            return _extract_all(inputs, infos, output, settings, finder, progress)
        except BaseException:
            if created and not any((output / faceset.FACES).glob("*.png")):  # a failed start leaves nothing
                atomic.discard(output)
            raise


def _extract_all(inputs, infos, output, settings, finder, progress) -> ExtractSummary:
    (output / faceset.FACES).mkdir(exist_ok=True)
    header = {"schema": faceset.SCHEMA, "version": faceset.VERSION, "size": settings.size,
              "padding": settings.padding, "aligner": settings.aligner, "detector": settings.detector,
              "landmarks": "ibug68", "matrix": "image pixels -> mean-face units"}
    writer = faceset.AlignmentsWriter(output, header)
    finder = finder or finder_for(settings, _gap(settings))
    identity = filters_for(settings)
    summary = ExtractSummary()
    processed = sum(len(range(settings.start, min(settings.end or i.frames, i.frames), settings.every)) for i in infos)
    preview = Preview(settings.preview, processed) if settings.preview else None
    started = time.perf_counter()
    failed = True
    try:
        for path, info in zip(inputs, infos):
            _extract_one(path, info, output, settings, finder, writer, preview, summary, progress, identity)
        failed = False
    finally:
        writer.close()
        summary.seconds = time.perf_counter() - started
        if preview is not None:
            (preview.abort if failed else preview.close)()
    summary.faces_in_set = faceset.write_summary(output, writer.records, [media.fingerprint(i) for i in infos],
                                                 settings.as_json())
    return summary


def _extract_one(path, info, output, settings, finder, writer, preview, summary, progress, identity) -> None:
    source = path.name
    start = settings.start
    if source in writer.done:
        resume_at = writer.done[source] + 1
        skipped = max(0, (resume_at - start + settings.every - 1) // settings.every)
        start = start + skipped * settings.every
        summary.skipped_resumed += skipped
        log.info("%s: resuming at frame %d", source, start)
    end = info.frames if settings.end is None else min(settings.end, info.frames)
    if start >= end:
        return
    # consecutive frames are tracked, smoothed and interpolated; photos are each searched on their own (tracking
    # from one photo's face into an unrelated next photo fits a wrong face, and smoothing would blend the two)
    consecutive = settings.sequence or not media.is_image_folder(path)
    video = consecutive and settings.every <= 2
    finder.reset()
    saver = _FrameSaver(source, output, settings, writer, summary, preview, consecutive, identity)
    bar = tqdm(total=len(range(start, end, settings.every)), desc=f"extract {source}", unit="frame",
               disable=not progress, leave=False)
    # frames in flight: up to 16 decoded ahead and 32 being written, fewer where frames are large (4K: 5
    # and 10), besides the few the face finder holds back; memory stays under about 1 GB at any size
    frame_bytes = max(1, info.width * info.height * 3)
    ahead, behind = max(2, min(16, (128 << 20) // frame_bytes)), max(4, min(32, (256 << 20) // frame_bytes))
    frames = threads.run_ahead(media.read_frames(path, start=start, end=end, step=settings.every), ahead)
    with bar, threads.Behind(saver, behind) as saving:  # the bar is closed (and cleared) before any error shows
        for item in keyframes.find_faces(frames, finder, _gap(settings), video=video):
            saving.put(item)
            bar.update(1)
            bar.set_postfix(faces=summary.faces, refresh=False)
        saving.put(None)
