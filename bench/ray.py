"""The same 8 clips converted three ways, each an end-to-end `faceswap convert` of the folder: here with
--jobs 2; with --ray (a local cluster of 2 CPUs started by the command); and with --ray ADDRESS, joining a
running cluster of 2 CPUs (as one of `ray start --head --num-cpus 2` is joined), which is how a cluster is used.

Last line: `ratio: X.XX` = clips per minute on the running cluster / clips per minute with --jobs 2 (goal: at
least 0.90, Ray's overhead on one machine at most 10 %).
Usage: python bench/ray.py [MODEL_DIR] [--copies N]   (without a model, a lite model is trained for a few
steps; --copies: each clip N times, 8 x N clips, so that the workers' start weighs less)
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import looped, sample

from faceswap import assets, media

FRAMES = 236  # each clip: about 8 s of video
HOLDER = """
import sys, ray
ray.init(num_cpus=2, include_dashboard=False)
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
ray.shutdown()
"""


def make_clips(folder: Path, tmp: Path) -> list[Path]:
    """4 pieces of sample A (looped twice) and 4 of sample B (looped 4 times), each re-encoded."""
    folder.mkdir()
    clips = []
    for name, times in (("WolfgangLanger_Pexels.mp4", 2), ("single_face.mp4", 4)):
        src = looped(sample(name), tmp / f"loop_{name}", times)
        info = media.probe(src)
        step = max(1, (info.frames - FRAMES) // 3)
        for i in range(4):
            out = folder / f"{Path(name).stem}_{i}.mp4"
            with media.open_writer(out, like=info, audio_from=src) as writer:
                for frame in media.read_frames(src, start=i * step, end=i * step + FRAMES):
                    writer.write_frame(frame)
            clips.append(out)
    return clips


def convert(clips: Path, out: Path, model: Path, *extra, env=None) -> float:
    """Clips per minute of one `faceswap convert` of the folder, start to end."""
    out.mkdir()
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "faceswap", "-q", "convert", str(clips), "-o", str(out), "-m", str(model),
                    *extra], check=True, env=dict(env or os.environ, RAY_DEDUP_LOGS="0"))
    return len(list(clips.iterdir())) * 60 / (time.perf_counter() - start)


def main():
    assets.fetch_models()
    args = sys.argv[1:]
    copies = int(args.pop(args.index("--copies") + 1)) if "--copies" in args else 1
    args = [a for a in args if a != "--copies"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = Path(args[0]) if args else None
        if model is None:
            from faceswap.extract import ExtractSettings, extract
            from faceswap.training.loop import TrainSettings, train

            extract([sample("WolfgangLanger_Pexels.mp4")], tmp / "a", ExtractSettings(every=4), progress=False)
            extract([sample("single_face.mp4")], tmp / "b", progress=False)
            model = tmp / "model"
            train(tmp / "a", tmp / "b", model, TrainSettings(iterations=10, data_workers=0), progress=False)
        clips = tmp / "clips"
        for clip in make_clips(clips, tmp):
            for copy in range(1, copies):
                shutil.copy(clip, clips / f"{clip.stem}_{copy}{clip.suffix}")
        local = convert(clips, tmp / "local", model, "--jobs", "2")
        started = convert(clips, tmp / "ray_own", model, "--ray")
        # a cluster that outlives the command, held by a process of our own (`ray stop` would stop every
        # cluster on the machine); the command joins it by address, as it joins one of `ray start --head`
        # token authentication off for this private cluster: its token file is shared by every cluster of the user
        plain = dict(os.environ, RAY_AUTH_MODE="disabled")
        holder = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True, env=plain)
        try:
            address = holder.stdout.readline().strip()
            joined = convert(clips, tmp / "ray_joined", model, "--ray", address, env=plain)
        finally:
            holder.stdin.close()
            holder.wait(timeout=60)
    print(f"here, --jobs 2:                           {local:6.1f} clips/min")
    print(f"--ray, a local cluster of 2 CPUs started: {started:6.1f} clips/min ({started / local:.2f}x)")
    print(f"--ray ADDRESS, a running cluster, 2 CPUs: {joined:6.1f} clips/min ({joined / local:.2f}x)")
    print(f"ratio: {joined / local:.2f}")


if __name__ == "__main__":
    main()
