"""Convert fps (lite model, sample A) against pass-through fps (decode + encode + audio copy with our media
module, no face work), in one run; and peak RSS of convert on sample A and on a 4x longer clip.

Last line: `ratio: X.XX` = convert fps (occlusion on, the default; content credentials included) / pass-through
fps (goals on CPU: >= 0.5; RSS growth 1x -> 4x <= 10 %). Convert with --occlusion off and the cost of signing
are printed beside it.
Usage: python bench/convert.py [MODEL_DIR]   (without one, a lite model is trained for a few steps)
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import looped, sample

from faceswap import assets

CHILD = r"""
import json, re, sys, time
sys.path.insert(0, {root!r})
from faceswap import media, threads
from faceswap.device import share_cpu_with_video
from faceswap.settings import ConvertSettings
from faceswap.swap.convert import convert
src, model, out, mode = sys.argv[1:5]
start = time.perf_counter()
if mode.startswith("convert"):
    share_cpu_with_video()  # as the convert command does
    settings = ConvertSettings(occlusion="off" if mode == "convert-off" else "auto")
    frames = convert(src, model, out, settings, progress=False).frames
else:
    info = media.probe(src)
    with media.open_writer(out, like=info, audio_from=src) as writer:
        for frame in threads.run_ahead(media.read_frames(src)):
            writer.write_frame(frame)
    frames = info.frames
seconds = time.perf_counter() - start
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork and exec, so a child of a big parent reports
# the parent's size; VmHWM belongs to this process's own memory
peak = int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({{"fps": frames / seconds, "rss_mb": peak / 1024}}))
"""


def child(src, model, out, mode) -> dict:
    code = CHILD.format(root=str(Path(__file__).resolve().parent.parent))
    result = subprocess.run([sys.executable, "-c", code, str(src), str(model), str(out), mode], capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def sealing_ms(video: Path) -> float:
    """Time to embed content credentials into a finished video (a copy of one already signed)."""
    import shutil
    import time

    from faceswap import credentials

    copy = video.with_name("sealed" + video.suffix)
    shutil.copy(video, copy)
    sealer = credentials.Sealer(credentials.definition("", "in.mp4", None, {}), credentials.load_signing())
    start = time.perf_counter()
    sealer.file(copy, copy)
    return 1000 * (time.perf_counter() - start)


def main():
    assets.fetch_models()
    src = sample("WolfgangLanger_Pexels.mp4")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = Path(sys.argv[1]) if len(sys.argv) > 1 else None
        if model is None:
            from faceswap.extract import extract
            from faceswap.training.loop import TrainSettings, train

            extract([src], tmp / "a", progress=False)
            extract([sample("single_face.mp4")], tmp / "b", progress=False)
            model = tmp / "model"
            train(tmp / "a", tmp / "b", model, TrainSettings(iterations=10, data_workers=0), progress=False)
        long = looped(src, tmp / "long.mp4")
        passthrough = max(child(src, model, tmp / "p.mp4", "pass")["fps"] for _ in range(2))
        runs = [child(src, model, tmp / "c.mp4", "convert") for _ in range(2)]
        converted = max(r["fps"] for r in runs)
        no_occlusion = max(child(src, model, tmp / "o.mp4", "convert-off")["fps"] for _ in range(2))
        rss_1x = min(r["rss_mb"] for r in runs)
        rss_4x = child(long, model, tmp / "c4.mp4", "convert")["rss_mb"]
        seal_ms = sealing_ms(tmp / "c4.mp4")
    print(f"pass-through (decode+encode+audio): {passthrough:7.1f} fps")
    print(f"convert (find faces, swap, encode):  {converted:7.1f} fps")
    print(f"convert --occlusion off (no hands):  {no_occlusion:7.1f} fps (occlusion costs "
          f"{100 * (1 - converted / no_occlusion):.0f} %)")
    print(f"peak RSS: 1x {rss_1x:.0f} MB, 4x {rss_4x:.0f} MB, growth {100 * (rss_4x / rss_1x - 1):+.1f} %")
    convert_ms = 1000 * 4 * 472 / converted
    print(f"content credentials: {seal_ms:.0f} ms to sign the 4x output again, {100 * seal_ms / convert_ms:.1f} % "
          "of its convert")
    print(f"ratio: {converted / passthrough:.2f}")


if __name__ == "__main__":
    main()
