"""Reader and writer round trips on the real sample clips and on clips made here with ffmpeg."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from faceswap import images, media
from faceswap.errors import FaceswapError
from helpers import run_cli


def round_trip(src: Path, out: Path) -> tuple[media.MediaInfo, media.MediaInfo]:
    info = media.probe(src)
    with media.open_writer(out, like=info, audio_from=src) as writer:
        for frame in media.read_frames(src):
            writer.write_frame(frame)
    return info, media.probe(out)


def assert_same_timing(src: Path, out: Path) -> None:
    a, b = media.probe(src), media.probe(out)
    assert b.frames == a.frames
    pts_a = np.array([f.pts for f in media.read_frames(src)])
    pts_b = np.array([f.pts for f in media.read_frames(out)])
    assert len(pts_a) == len(pts_b) == a.frames
    assert np.abs(pts_a - pts_b).max() <= max(float(a.time_base), float(b.time_base)) + 1e-9
    assert abs(a.duration - b.duration) <= 1 / float(a.fps)
    assert len(a.audio) == len(b.audio)
    for x, y in zip(a.audio, b.audio):
        assert abs(x.start - y.start) <= 0.05
        if x.duration is not None:
            assert abs(x.duration - y.duration) <= 0.05


@pytest.mark.parametrize("name", ["WolfgangLanger_Pexels.mp4", "single_face.mp4", "no_face.mp4"])
def test_round_trip_samples(sample_dir, tmp_path, name):
    src = sample_dir / name
    info, out = round_trip(src, tmp_path / "out.mp4")
    assert info.audio and out.audio, "audio stream must survive"
    assert out.audio[0].codec == info.audio[0].codec  # copied, not re-encoded (MP3 in MP4 too)
    assert (out.width, out.height) == (info.width, info.height)
    assert_same_timing(src, tmp_path / "out.mp4")
    # the picture survives the re-encode
    first_in = next(media.read_frames(src)).image.astype(float)
    first_out = next(media.read_frames(tmp_path / "out.mp4")).image.astype(float)
    assert np.abs(first_in - first_out).mean() < 4


def test_variable_frame_rate_kept(sample_a, tmp_path, make_clip):
    vfr = tmp_path / "vfr.mp4"
    make_clip("-i", sample_a, "-t", "4", "-vf", r"select='lt(n\,20)+not(mod(n\,3))'", "-fps_mode", "vfr",
              "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "copy", vfr)
    info = media.probe(vfr)
    assert info.variable_fps
    round_trip(vfr, tmp_path / "out.mp4")
    assert media.probe(tmp_path / "out.mp4").variable_fps
    assert_same_timing(vfr, tmp_path / "out.mp4")


def test_audio_that_starts_late(sample_a, tmp_path, make_clip):
    video = tmp_path / "v.mp4"
    late = tmp_path / "late.mp4"
    make_clip("-i", sample_a, "-t", "4", "-an", "-c:v", "copy", video)
    make_clip("-i", video, "-itsoffset", "1.5", "-i", sample_a, "-map", "0:v", "-map", "1:a", "-t", "5",
              "-c", "copy", late)
    assert media.probe(late).audio[0].start == pytest.approx(1.5, abs=0.05)
    round_trip(late, tmp_path / "out.mp4")
    assert media.probe(tmp_path / "out.mp4").audio[0].start == pytest.approx(1.5, abs=0.05)
    assert_same_timing(late, tmp_path / "out.mp4")


def test_clip_without_audio(sample_b, tmp_path, make_clip):
    silent = tmp_path / "silent.mp4"
    make_clip("-i", sample_b, "-an", "-c:v", "copy", silent)
    _, out = round_trip(silent, tmp_path / "out.mp4")
    assert out.audio == [] and out.frames == 72


def test_hevc_mov_and_mkv_output(sample_b, tmp_path, make_clip):
    mov = tmp_path / "clip.mov"
    make_clip("-i", sample_b, "-c:v", "libx265", "-x265-params", "log-level=error", "-preset", "ultrafast",
              "-c:a", "aac", mov)
    info = media.probe(mov)
    assert info.codec == "hevc" and info.frames == 72
    round_trip(mov, tmp_path / "out.mkv")
    assert_same_timing(mov, tmp_path / "out.mkv")
    with media.open_writer(tmp_path / "hevc.mkv", like=info, codec="libx265", tune="grain") as writer:
        for frame in media.read_frames(mov, end=5):  # HEVC into Matroska: no Apple tag there
            writer.write_frame(frame)
    assert media.probe(tmp_path / "hevc.mkv").codec == "hevc"


def test_audio_transcoded_when_container_cannot_hold_it(sample_b, tmp_path, make_clip):
    pcm = tmp_path / "pcm.mov"
    make_clip("-i", sample_b, "-c:v", "copy", "-c:a", "pcm_s16le", pcm)
    source, out = round_trip(pcm, tmp_path / "out.mp4")  # MP4 cannot hold PCM: AAC instead
    assert out.audio and out.audio[0].codec == "aac"
    assert out.audio[0].duration == pytest.approx(source.audio[0].duration, abs=0.05)


def test_rotation_metadata_is_honoured(sample_b, tmp_path, make_clip):
    rotated = tmp_path / "rot.mp4"
    make_clip("-display_rotation", "90", "-i", sample_b, "-c", "copy", rotated)
    reference = tmp_path / "ref.png"
    make_clip("-i", rotated, "-frames:v", "1", reference)  # ffmpeg's own autorotate
    info = media.probe(rotated)
    assert info.rotation in (90, 270) and (info.width, info.height) == (360, 640)
    first = next(media.read_frames(rotated)).image
    expected = images.read_image(reference)
    assert first.shape == expected.shape
    assert np.abs(first.astype(float) - expected).mean() < 3


def test_image_folder_in_and_out(sample_b, tmp_path):
    folder = tmp_path / "frames"
    info = media.probe(sample_b)
    with media.open_writer(folder, like=info) as writer:
        for frame in media.read_frames(sample_b, end=10):
            writer.write_frame(frame)
    assert len(media.image_files(folder)) == 10
    again = list(media.read_frames(folder))
    original = list(media.read_frames(sample_b, end=10))
    assert [f.pts for f in again] == pytest.approx([f.pts for f in original])
    assert np.array_equal(again[3].image, original[3].image)  # PNG is lossless
    out = tmp_path / "from_folder.mp4"
    with media.open_writer(out, like=media.probe(folder)) as writer:
        for frame in again:
            writer.write_frame(frame)
    assert media.probe(out).frames == 10


def test_photos_in_a_format_faceswap_cannot_read_are_named(sample_b, tmp_path, caplog):
    """A phone's HEIC photos or a camera's raw files beside JPEGs are named in a warning, not silently left out; a
    folder of nothing else stops extract with one line that says what to do."""
    folder = tmp_path / "photos"
    with media.open_writer(folder, like=media.probe(sample_b)) as writer:
        for frame in media.read_frames(sample_b, end=2):
            writer.write_frame(frame)
    (folder / "IMG_0001.HEIC").write_bytes(np.random.default_rng(0).bytes(4000))
    (folder / "DSC_0002.dng").write_bytes(b"II*\x00" + bytes(100))
    with caplog.at_level("WARNING"):
        assert media.probe(folder).frames == 2
    assert "2 .dng/.heic files (DSC_0002.dng, IMG_0001.HEIC)" in caplog.text and "left out" in caplog.text
    only = tmp_path / "iphone"
    only.mkdir()
    (only / "IMG_0001.HEIC").write_bytes(np.random.default_rng(1).bytes(4000))
    with pytest.raises(FaceswapError, match=r"1 \.heic file \(IMG_0001\.HEIC\).*JPEG or PNG"):
        media.probe(only)
    result = run_cli("extract", only, "-o", tmp_path / "faces")
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert "1 .heic file (IMG_0001.HEIC)" in lines[0] and "JPEG or PNG" in lines[0]
    assert not (tmp_path / "faces").exists()


def test_frame_range_and_step(sample_b):
    frames = list(media.read_frames(sample_b, start=10, end=30, step=5))
    assert [f.index for f in frames] == [10, 15, 20, 25]


def test_odd_size_and_interrupted_write(tmp_path):
    out = tmp_path / "odd.mp4"
    with media.VideoWriter(out, fps=Fraction(10)) as writer:
        for i in range(5):
            writer.write(np.full((77, 101, 3), i * 40, np.uint8))
    info = media.probe(out)
    assert (info.frames, info.width, info.height) == (5, 101, 77)  # exact size, not padded to even
    assert next(media.read_frames(out)).image.shape == (77, 101, 3)
    broken = tmp_path / "broken.mp4"
    with pytest.raises(RuntimeError):
        with media.VideoWriter(broken, fps=Fraction(10)) as writer:
            writer.write(np.zeros((64, 64, 3), np.uint8))
            raise RuntimeError("interrupted")
    assert not broken.exists()
    assert list(tmp_path.glob(".*partial*")) == []


def test_unicode_and_spaces_in_paths(sample_b, tmp_path):
    folder = tmp_path / "vidéo clips ü"
    folder.mkdir()
    src = folder / "mon clip été.mp4"
    src.write_bytes(sample_b.read_bytes())
    round_trip(src, folder / "sortie finale ✓.mp4")
    assert media.probe(folder / "sortie finale ✓.mp4").frames == 72
    with media.open_writer(folder / "images à", like=media.probe(src)) as writer:
        writer.write_frame(next(media.read_frames(src)))
    assert len(list(media.read_frames(folder / "images à"))) == 1


def test_truncated_file_reads_up_to_the_damage(sample_a, tmp_path):
    cut = tmp_path / "cut.mp4"
    data = sample_a.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    try:
        count = sum(1 for _ in media.read_frames(cut))
    except FaceswapError as exc:  # a clear error is also acceptable
        assert "cut.mp4" in str(exc)
    else:
        assert 0 < count < 472


def test_info_command(sample_a):
    result = run_cli("info", sample_a)
    assert result.returncode == 0
    assert "472 frames" in result.stdout and "aac" in result.stdout


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "folder"])
def test_bad_inputs_give_one_clear_line(tmp_path, kind):
    path = tmp_path / "bad.mp4"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a video\n" * 50)
    elif kind == "folder":
        path = tmp_path / "empty folder"
        path.mkdir()
    result = run_cli("info", path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("faceswap: error:"), result.stderr
    assert "Traceback" not in result.stderr


def test_cli_help_and_version():
    result = run_cli("--help")
    assert result.returncode == 0 and "info" in result.stdout
    assert run_cli("--version").stdout.strip().endswith(__import__("faceswap").__version__)
