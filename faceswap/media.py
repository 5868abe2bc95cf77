"""Frames in, frames out: decode with real timestamps, encode keeping them, copy audio in sync, image folders.

PyAV is the engine: it gives each frame's presentation time (variable frame rate survives) and can copy
audio packets without re-encoding. Nothing here holds more than a few frames in memory.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from faceswap import atomic, images, outputs
from faceswap.errors import FaceswapError

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv", ".flv"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
# photos OpenCV cannot decode (phones' HEIC/HEIF and AVIF, cameras' raw files): named, never silently left out
UNREADABLE_PHOTO_SUFFIXES = {".heic", ".heif", ".avif", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2"}
TIMESTAMPS_FILE = "timestamps.json"
DEFAULT_IMAGE_FPS = Fraction(25)
# Audio codecs each container can hold as they are; anything else is transcoded.
AUDIO_COPY_OK = {
    ".mp4": {"aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"},
    ".m4v": {"aac", "mp3", "ac3", "eac3", "alac"},
    ".mov": {"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s24le", "opus", "flac"},
    ".mkv": None,  # None: anything
    ".webm": {"opus", "vorbis"},
}
AUDIO_FALLBACK = {".webm": "libopus"}


@dataclass
class Frame:
    """One decoded frame: RGB uint8 image, presentation time in seconds, and its index in the stream."""
    image: np.ndarray
    pts: float
    index: int
    ticks: int | None = None         # raw pts in time_base units, when it came from a container
    time_base: Fraction | None = None

    @property
    def shape(self) -> tuple:
        return self.image.shape


@dataclass
class AudioInfo:
    index: int
    codec: str
    sample_rate: int
    channels: int
    start: float
    duration: float | None


@dataclass
class MediaInfo:
    path: Path
    width: int
    height: int
    frames: int
    fps: Fraction
    variable_fps: bool
    duration: float
    start: float
    rotation: int
    codec: str
    time_base: Fraction
    audio: list[AudioInfo] = field(default_factory=list)
    is_folder: bool = False

    def as_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k != "audio"}
        data.update(path=str(self.path), fps=float(self.fps), time_base=str(self.time_base),
                    audio=[a.__dict__ for a in self.audio])
        return data


def fingerprint(info: MediaInfo) -> dict:
    """What identifies an input without reading all of it: name, byte count, a hash of its first and last MiB
    (of every image's name and size, for a folder), frame count and frame size."""
    path = Path(info.path)
    digest = hashlib.sha256()
    if path.is_dir():
        files = image_files(path)
        for item in files:
            digest.update(f"{item.name}:{item.stat().st_size}\n".encode())
        size = sum(item.stat().st_size for item in files)
    else:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            digest.update(handle.read(1 << 20))
            handle.seek(max(0, size - (1 << 20)))
            digest.update(handle.read(1 << 20))
    return {"name": path.name, "bytes": size, "sampled_sha256": digest.hexdigest(), "frames": info.frames,
            "width": info.width, "height": info.height}


def is_image_folder(path: Path) -> bool:
    return Path(path).is_dir()


def _files(folder: Path, suffixes: set[str]) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in suffixes and p.is_file())


def image_files(folder: Path) -> list[Path]:
    return _files(folder, IMAGE_SUFFIXES)


def unreadable_photos(folder: Path) -> str | None:
    """What a folder holds of photos in formats faceswap cannot read, as a sentence's end ("holds 3 .heic files
    (IMG_0001.HEIC, ...), ..."), or None."""
    found = _files(folder, UNREADABLE_PHOTO_SUFFIXES)
    if not found:
        return None
    kinds = "/".join(sorted({p.suffix.lower() for p in found}))
    names = ", ".join(p.name for p in found[:3]) + (", ..." if len(found) > 3 else "")
    many = len(found) > 1
    return (f"holds {len(found)} {kinds} file{'s' if many else ''} ({names}), a format faceswap cannot read: save "
            f"{'them' if many else 'it'} as JPEG or PNG")


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Videos and image folders as given; a folder holding videos (and no images) stands for those videos."""
    clips = []
    for path in map(Path, inputs):
        if path.is_dir() and not image_files(path):
            videos = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
            if not videos:
                raise FaceswapError(f"{path}: {unreadable_photos(path) or 'holds neither images nor video clips'}")
            clips.extend(videos)
        else:
            clips.append(path)
    return clips


def _open(path: Path):
    path = Path(path)
    if not path.exists():
        raise FaceswapError(f"{path}: no such file")
    if path.is_file() and path.stat().st_size == 0:
        raise FaceswapError(f"{path}: the file is empty")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.FFmpegError as exc:
        raise FaceswapError(f"{path}: not a readable video ({exc.strerror or exc})") from None
    if not container.streams.video:
        container.close()
        raise FaceswapError(f"{path}: has no video stream")
    return container


def _seconds(value, time_base) -> float | None:
    return None if value is None else float(value * time_base)


def _rotation(container, stream) -> int:
    """Display rotation in degrees (clockwise, as players apply it), from side data or the old 'rotate' tag."""
    if tag := stream.metadata.get("rotate"):
        return int(tag) % 360
    try:
        for frame in container.decode(stream):
            return int(round(-frame.rotation)) % 360
    except av.FFmpegError:
        return 0
    return 0


def _upright(image: np.ndarray, rotation: int) -> np.ndarray:
    turn = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}.get(rotation)
    return image if turn is None else cv2.rotate(image, turn)


def _folder_frames(folder: Path) -> tuple[list[Path], list[float], Fraction]:
    """A folder's images, their times (from timestamps.json, else at DEFAULT_IMAGE_FPS) and frame rate."""
    files = image_files(folder)
    if not files:
        raise FaceswapError(f"{folder}: {unreadable_photos(folder) or 'the folder holds no images'}")
    stamps = folder / TIMESTAMPS_FILE
    if stamps.is_file():
        data = json.loads(stamps.read_text())
        if len(data.get("pts", [])) == len(files):
            return files, [float(t) for t in data["pts"]], Fraction(data.get("fps", "25")).limit_denominator(100000)
    return files, [float(i / DEFAULT_IMAGE_FPS) for i in range(len(files))], DEFAULT_IMAGE_FPS


def probe(path: Path) -> MediaInfo:
    """Streams, frame count, fps (and whether it varies), duration, rotation and audio of a video or folder."""
    path = Path(path)
    if is_image_folder(path):
        files, pts, fps = _folder_frames(path)
        if unreadable := unreadable_photos(path):
            log.warning("%s: %s (they are left out)", path, unreadable)
        first = images.read_image(files[0])
        steps = np.diff(pts)
        return MediaInfo(path, first.shape[1], first.shape[0], len(files), fps,
                         bool(len(steps) and np.ptp(steps) > 1e-3), float(len(files) / fps), 0.0, 0,
                         "images", Fraction(1, 1000000), [], True)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        tb = stream.time_base
        pts_list = []
        audio_span = {a.index: [None, None] for a in container.streams.audio}  # first pts, end, in seconds
        with contextlib.suppress(av.FFmpegError):  # a damaged tail: report what is readable
            for packet in container.demux(stream, *container.streams.audio):
                if packet.pts is None or not packet.size or packet.is_discard:
                    continue
                if packet.stream.type == "video":
                    pts_list.append(packet.pts)
                    continue
                begin = float(packet.pts * packet.time_base)
                span = audio_span[packet.stream.index]
                span[0] = begin if span[0] is None else min(span[0], begin)
                span[1] = max(span[1] or begin, begin + float((packet.duration or 0) * packet.time_base))
        pts_list.sort()
        steps = np.diff(np.array(pts_list, dtype=np.float64)) * float(tb) if len(pts_list) > 1 else np.array([])
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        start = _seconds(pts_list[0], tb) if pts_list else 0.0
        duration = float((pts_list[-1] - pts_list[0]) * tb) + float(np.median(steps)) if len(pts_list) > 1 \
            else _seconds(stream.duration, tb) or 0.0
        variable = bool(len(steps) > 1 and (steps.max() - steps.min()) > 0.5 * float(tb) + 1e-4)
        container.seek(0)
        rotation = _rotation(container, stream)
        audio = []
        for a in container.streams.audio:
            first, last = audio_span[a.index]
            start = _seconds(a.start_time, a.time_base) if a.start_time is not None else first
            audio.append(AudioInfo(a.index, a.codec_context.codec.canonical_name, a.codec_context.sample_rate or 0,
                                   a.codec_context.channels, max(start or 0.0, 0.0),
                                   None if first is None else last - max(first, 0.0)))
        width, height = stream.codec_context.width, stream.codec_context.height
        if rotation in (90, 270):
            width, height = height, width
        return MediaInfo(path, width, height, len(pts_list), Fraction(rate), variable, duration,
                         start or 0.0, rotation, stream.codec_context.codec.canonical_name, tb, audio)
    finally:
        container.close()


def read_frames(path: Path, start: int = 0, end: int | None = None, step: int = 1) -> Iterator[Frame]:
    """Stream RGB frames with timestamps from a video or a folder of images; frames [start, end) every `step`."""
    path = Path(path)
    if is_image_folder(path):
        files, pts, _ = _folder_frames(path)
        for index in range(start, len(files) if end is None else min(end, len(files)), step):
            yield Frame(images.read_image(files[index]), pts[index], index)
        return
    container = _open(path)
    try:
        stream = container.streams.video[0]
        if stream.codec_context.width * stream.codec_context.height > 500_000:
            stream.thread_type = "AUTO"  # frame threads pay on large frames; on small ones they cost more
        else:                            # CPU than they save
            stream.thread_count = 1
        rotation = _rotation(container, stream)
        container.seek(0)
        tb = stream.time_base
        # One RGB converter for the whole stream: a frame's own to_ndarray(format=...) makes a new swscale
        # context, with new threads, for every frame. Its threads pay only from 4K on.
        to_rgb = VideoReformatter()
        rgb_threads = 1 if stream.codec_context.width * stream.codec_context.height < 4_000_000 else 0
        index = -1
        frames = container.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except av.FFmpegError as exc:
                if index < 0:
                    raise FaceswapError(f"{path}: could not decode any frame ({exc.strerror or exc})") from None
                log.warning("%s: damaged after frame %d (%s); stopping there", path, index, exc.strerror or exc)
                break
            index += 1
            if index < start or (index - start) % step:
                continue
            if end is not None and index >= end:
                break
            ticks = frame.pts if frame.pts is not None else frame.dts
            image = _upright(to_rgb.reformat(frame, format="rgb24", threads=rgb_threads).to_ndarray(), rotation)
            seconds = float(ticks * tb) if ticks is not None else index / float(stream.average_rate or 25)
            yield Frame(image, seconds, index, ticks, tb)
    finally:
        container.close()


class _AudioCopier:
    """Feeds a source's audio packets to the output as video time advances, so memory stays flat."""

    def __init__(self, source: Path, output, suffix: str):
        self.container = av.open(str(source), metadata_errors="ignore")
        self.inputs = list(self.container.streams.audio)
        self.map, self.transcoders = {}, {}
        allowed = AUDIO_COPY_OK.get(suffix, set())
        for stream in self.inputs:
            if allowed is None or stream.codec_context.codec.canonical_name in allowed:
                self.map[stream.index] = output.add_stream_from_template(stream)
            else:
                codec = AUDIO_FALLBACK.get(suffix, "aac")
                out = output.add_stream(codec, rate=stream.codec_context.sample_rate or 48000)
                out.layout = stream.codec_context.layout.name if stream.codec_context.layout else "stereo"
                self.map[stream.index] = out
                self.transcoders[stream.index] = av.AudioResampler(
                    format=out.codec_context.codec.audio_formats[0].name, layout=out.layout, rate=out.rate)
                log.info("audio %s cannot go into %s as is; transcoding to %s",
                         stream.codec_context.name, suffix, codec)
        self.output = output
        # Without edit lists a negative audio pts (AAC priming) would shift the whole file: drop those few ms.
        self.drop_negative = suffix not in (".mp4", ".mov", ".m4v")
        self.packets = self.container.demux(*self.inputs) if self.inputs else iter(())
        self.pending = None
        self.done = not self.inputs

    def _mux(self, packet) -> None:
        out = self.map[packet.stream.index]
        if packet.stream.index in self.transcoders:
            for frame in packet.decode():
                for resampled in self.transcoders[packet.stream.index].resample(frame):
                    resampled.pts = None
                    self.output.mux(out.encode(resampled))
            return
        packet.stream = out
        self.output.mux(packet)

    def until(self, seconds: float | None) -> None:
        """Mux audio packets whose time is before `seconds` (all of them when None)."""
        while not self.done:
            if self.pending is None:
                try:
                    packet = next(self.packets)
                except (StopIteration, av.FFmpegError):
                    self.done = True
                    break
                if packet.dts is None or packet.size == 0:  # flush packets: not data
                    continue
                if self.drop_negative and packet.pts is not None and packet.pts < 0:
                    continue
                self.pending = packet
            packet = self.pending
            if seconds is not None and packet.pts is not None and float(packet.pts * packet.time_base) > seconds:
                break
            self.pending = None
            self._mux(packet)

    def close(self) -> None:
        self.until(None)
        for index in self.transcoders:
            self.output.mux(self.map[index].encode(None))
        self.container.close()


class VideoWriter(atomic.Committing):
    """Encode RGB frames to a video at their own timestamps, copying audio from `audio_from`. Written under a
    hidden name that close() renames and abort() (or an error in a `with` block) removes: never half-written."""

    def __init__(self, path: Path, fps: Fraction = Fraction(25), time_base: Fraction | None = None,
                 codec: str = "libx264", crf: int = 18, preset: str = "fast", tune: str | None = None,
                 audio_from: Path | None = None, metadata: dict | None = None, pix_fmt: str = "yuv420p",
                 seal=None, threads: int = 0):
        self.path = Path(path)
        self.seal = seal  # a credentials.Sealer: content credentials go into the finished file before its rename
        if self.path.is_dir():
            raise FaceswapError(f"{self.path}: is a folder, not a video file name")
        if not self.path.parent.is_dir():
            raise FaceswapError(f"{self.path.parent}: output folder does not exist")
        self.fps = Fraction(fps).limit_denominator(1000000)
        # Without a source time base, pick one in which a frame lasts a whole number of ticks.
        self.time_base = time_base or Fraction(1, self.fps.numerator * -(-10000 // self.fps.numerator))
        self.codec, self.crf, self.preset, self.tune, self.pix_fmt = codec, crf, preset, tune, pix_fmt
        self.threads = threads  # the encoder's threads; 0: its own choice
        self.audio_from = Path(audio_from) if audio_from else None
        self.metadata = {"comment": f"made by {outputs.VIDEO_MARK}", **(metadata or {})}  # marks it as faceswap's own
        self.partial = atomic.partial_path(self.path)
        self.container = self.stream = self.audio = self.last_ticks = None
        self.count = 0

    def _start(self, width: int, height: int) -> None:
        atomic.discard(self.partial)
        try:
            self.container = av.open(str(self.partial), mode="w")
        except (av.FFmpegError, ValueError) as exc:
            raise FaceswapError(f"{self.path}: cannot write here ({exc})") from None
        for key, value in self.metadata.items():
            self.container.metadata[key] = str(value)
        try:
            stream = self.container.add_stream(self.codec, rate=self.fps)
        except (av.FFmpegError, ValueError) as exc:
            raise FaceswapError(f"unknown or unusable video codec {self.codec!r} ({exc})") from None
        # 4:2:0 cannot hold an odd width or height: such frames are written in 4:4:4, at their exact size
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv444p" if self.pix_fmt.endswith("420p") and (width % 2 or height % 2) else self.pix_fmt
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base
        options = {}
        if self.codec in ("libx264", "libx265", "h264", "hevc"):
            options = {"crf": str(self.crf), "preset": self.preset, **({"tune": self.tune} if self.tune else {})}
        elif self.codec in ("libvpx-vp9", "libaom-av1", "libsvtav1"):
            options = {"crf": str(self.crf), "b": "0"}
        if self.path.suffix.lower() not in (".mp4", ".mov", ".m4v") and options:
            # Containers without edit lists shift every timestamp to keep B-frame dts >= 0: no B-frames there.
            options["x265-params" if self.codec == "libx265" else "bf"] = "bframes=0" if self.codec == "libx265" else "0"
        if self.codec == "libx265":
            options["x265-params"] = ":".join(filter(None, [options.get("x265-params"), "log-level=error"]))
            if self.path.suffix.lower() in (".mp4", ".mov"):  # the tag Apple's players need
                stream.codec_context.codec_tag = "hvc1"
        stream.options = options
        stream.codec_context.thread_count = self.threads
        self.stream = stream
        if self.audio_from is not None:
            try:
                self.audio = _AudioCopier(self.audio_from, self.container, self.path.suffix.lower())
            except av.FFmpegError as exc:
                raise FaceswapError(f"{self.audio_from}: cannot read its audio ({exc})") from None

    def write(self, image: np.ndarray, pts: float | None = None, ticks: int | None = None,
              time_base: Fraction | None = None) -> None:
        """Encode one RGB frame at `pts` seconds (or raw ticks in `time_base`); default: next frame at fps."""
        if self.container is None:
            self._start(image.shape[1], image.shape[0])
        if ticks is not None and time_base == self.time_base:
            value = int(ticks)
        elif pts is not None:
            value = int(round(pts / self.time_base))
        else:
            value = 0 if self.last_ticks is None else self.last_ticks + int(round(1 / (self.fps * self.time_base)))
        if self.last_ticks is not None and value <= self.last_ticks:
            value = self.last_ticks + 1  # timestamps must rise strictly
        self.last_ticks = value
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = value
        frame.time_base = self.time_base
        if self.audio is not None:
            self.audio.until(float(value * self.time_base) + 0.5)
        self.container.mux(self.stream.encode(frame))
        self.count += 1

    def write_frame(self, frame: Frame, image: np.ndarray | None = None) -> None:
        self.write(frame.image if image is None else image, frame.pts, frame.ticks, frame.time_base)

    def close(self) -> Path:
        if self.container is None:
            raise FaceswapError(f"{self.path}: no frames to write")
        self.container.mux(self.stream.encode(None))
        if self.audio is not None:
            self.audio.close()
        self.container.close()
        self.container = None
        if self.seal is not None:
            self.seal.file(self.partial, self.path)
        atomic.commit(self.partial, self.path)
        return self.path

    def abort(self) -> None:
        if self.container is not None:
            with contextlib.suppress(Exception):  # closing a broken output must not hide the first error
                self.container.close()
            self.container = None
        if self.audio is not None:
            self.audio.container.close()
            self.audio = None
        atomic.discard(self.partial)


class ImageFolderWriter(atomic.Committing):
    """Write frames as numbered PNGs plus timestamps.json, into a temporary folder renamed on close()."""

    def __init__(self, path: Path, fps: Fraction = Fraction(25), seal=None, **_ignored):
        self.path = Path(path)
        self.seal = seal  # a credentials.Sealer: content credentials in every image
        if self.path.exists() and not self.path.is_dir():
            raise FaceswapError(f"{self.path}: exists and is not a folder")
        if not self.path.parent.is_dir():
            raise FaceswapError(f"{self.path.parent}: output folder does not exist")
        self.partial = atomic.partial_path(self.path)
        atomic.discard(self.partial)
        self.partial.mkdir()
        self.fps = Fraction(fps)
        self.pts = []
        self.count = 0

    def write(self, image: np.ndarray, pts: float | None = None, **_ignored) -> None:
        pts = self.count / float(self.fps) if pts is None else pts
        name = f"frame_{self.count:06d}.png"
        data = images.png_bytes(image)
        (self.partial / name).write_bytes(data if self.seal is None else self.seal.image(data, name))
        self.pts.append(pts)
        self.count += 1

    def write_frame(self, frame: Frame, image: np.ndarray | None = None) -> None:
        self.write(frame.image if image is None else image, frame.pts)

    def close(self) -> Path:
        (self.partial / TIMESTAMPS_FILE).write_text(json.dumps({"fps": str(self.fps), "pts": self.pts}))
        atomic.commit(self.partial, self.path)
        return self.path

    def abort(self) -> None:
        atomic.discard(self.partial)


def open_writer(path: Path, like: MediaInfo | None = None, audio_from: Path | None = None, **options):
    """A video writer for a file name with a suffix, or an image-folder writer for anything else."""
    path = Path(path)
    fps = like.fps if like else Fraction(25)
    if path.suffix == "" or path.is_dir():
        return ImageFolderWriter(path, fps=fps, seal=options.get("seal"))
    time_base = like.time_base if like and not like.is_folder else None
    source = audio_from if audio_from and not is_image_folder(Path(audio_from)) else None
    return VideoWriter(path, fps=fps, time_base=time_base, audio_from=source, **options)
