"""The `faceswap` command: thin click wrappers that parse, call and report."""
from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path

import click

from faceswap import __version__
from faceswap.errors import FaceswapError

log = logging.getLogger("faceswap")


class Group(click.Group):
    """Turns any failure into one line on stderr and exit 1 (a traceback only with --verbose)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except KeyboardInterrupt:
            click.echo("faceswap: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - the top of the program: report, never crash with a trace
            verbose = (ctx.obj or {}).get("verbose", False)
            if verbose:
                traceback.print_exc()
            message = str(exc) if isinstance(exc, FaceswapError) else f"{type(exc).__name__}: {exc}"
            click.echo(f"faceswap: error: {message.splitlines()[0] if message else type(exc).__name__}", err=True)
            sys.exit(1)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="faceswap")
@click.option("-v", "--verbose", is_flag=True, help="Show debug messages and tracebacks.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress bars.")
@click.pass_context
def cli(ctx, verbose, quiet):
    """Face swapping for video: extract faces, train a model, convert clips (outputs are marked synthetic)."""
    ctx.obj = {"verbose": verbose, "quiet": quiet}
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s" if not verbose else "%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    if quiet:
        import os
        os.environ["TQDM_DISABLE"] = "1"


@cli.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def info(path, as_json):
    """Show a video's streams, frame count, fps, duration, rotation and audio."""
    from faceswap import media

    data = media.probe(path).as_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"{data['path']}")
    click.echo(f"  video   {data['codec']} {data['width']}x{data['height']}, {data['frames']} frames, "
               f"{data['fps']:.3f} fps ({'variable' if data['variable_fps'] else 'constant'}), "
               f"{data['duration']:.3f} s, starts at {data['start']:.3f} s, rotation {data['rotation']}")
    if not data["audio"]:
        click.echo("  audio   none")
    for audio in data["audio"]:
        duration = f"{audio['duration']:.3f} s" if audio["duration"] is not None else "unknown length"
        click.echo(f"  audio   {audio['codec']} {audio['sample_rate']} Hz, {audio['channels']} ch, "
                   f"{duration}, starts at {audio['start']:.3f} s")


@cli.group()
def models():
    """Manage the offline face-model files."""


@models.command("fetch")
def models_fetch():
    """Download and verify the face detector and landmark model files (once)."""
    from faceswap import assets

    paths = assets.fetch_models()
    click.echo(f"face models ready in {assets.models_dir()} ({len(paths)} files, sha256 verified)")


@models.command("path")
def models_path():
    """Print the folder holding the face models ($FACESWAP_MODELS overrides it)."""
    from faceswap import assets

    click.echo(str(assets.models_dir()))


@cli.group()
def samples():
    """Manage the sample clips used by the demo and the tests."""


@samples.command("fetch")
def samples_fetch():
    """Download and verify the sample clips into samples/ ($FACESWAP_SAMPLES overrides it)."""
    from faceswap import assets

    paths = assets.fetch_samples()
    click.echo(f"sample clips ready in {assets.samples_dir()} ({len(paths)} files, sha256 verified)")


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Face set folder to write.")
@click.option("--aligner", type=click.Choice(["litert", "fan"]), default="litert", show_default=True,
              help="litert: offline MediaPipe models; fan: face-alignment S3FD + 2DFAN4.")
@click.option("--detector", type=click.Choice(["full", "short"]), default="full", show_default=True,
              help="BlazeFace model for litert: full range, or short range (faces near the camera).")
@click.option("--size", default=256, show_default=True, help="Side of the aligned crops in pixels.")
@click.option("--every", default=1, show_default=True, help="Use every Nth frame.")
@click.option("--start", default=0, show_default=True, help="First frame index.")
@click.option("--end", type=int, default=None, help="Stop before this frame index.")
@click.option("--max-faces", default=0, show_default=True, help="Keep at most N faces per frame (0: all).")
@click.option("--min-size", default=32, show_default=True, help="Ignore faces smaller than this (px).")
@click.option("--min-score", default=0.5, show_default=True, help="Detector score threshold.")
@click.option("--track", default=None, help="Keep one person: largest, center, or a track id.")
@click.option("--min-blur", default=0.0, show_default=True, help="Drop crops whose sharpness is below this.")
@click.option("--smooth/--no-smooth", default=True, show_default=True, help="One-Euro smoothing of landmarks.")
@click.option("--smooth-cutoff", default=1.0, show_default=True, help="One-Euro minimum cut-off (Hz).")
@click.option("--smooth-beta", default=0.3, show_default=True, help="One-Euro speed coefficient.")
@click.option("--interpolate", default=2, show_default=True,
              help="Video frames in a row whose landmarks may be interpolated where the face barely moves (0: "
                   "measure every frame).")
@click.option("--sequence", is_flag=True,
              help="Image folders hold consecutive video frames: track, smooth and interpolate across them "
                   "(by default each image is searched on its own).")
@click.option("--preview", type=click.Path(path_type=Path), default=None,
              help="Write a contact sheet (.png) or video (.mp4) with boxes and landmarks drawn.")
@click.pass_context
def extract(ctx, inputs, output, **options):
    """Detect, align and save faces from videos, image folders or folders of videos into a face set."""
    from faceswap.extract import ExtractSettings, extract as run_extract

    if options["track"] not in (None, "largest", "center") and not str(options["track"]).isdigit():
        raise click.BadParameter("use largest, center or a track id", param_hint="--track")
    summary = run_extract(list(inputs), output, ExtractSettings(**options), progress=not ctx.obj["quiet"])
    click.echo(summary.line())
    if summary.faces == 0:
        click.echo(f"note: no face found in {', '.join(str(p) for p in inputs)}", err=True)


@cli.command()
@click.argument("faceset_a", type=click.Path(path_type=Path))
@click.argument("faceset_b", type=click.Path(path_type=Path))
@click.option("-m", "--model-dir", required=True, type=click.Path(path_type=Path), help="Model folder (resumed if it exists).")
@click.option("--model", "model", type=click.Choice(["lite", "original", "hd"]), default=None,
              help="Architecture for a new model (default lite); must match an existing one.")
@click.option("--size", type=int, default=None, help="Model size in px (hd: 128 or 256).")
@click.option("--latent", type=click.Choice(["dense", "vae"]), default=None, help="Bottleneck type.")
@click.option("--iterations", type=int, default=None, help="Total steps to reach (a resumed model counts its steps).")
@click.option("--minutes", type=float, default=None, help="Train for this many minutes.")
@click.option("--batch-size", type=int, default=None, help="Faces per identity per step.")
@click.option("--lr", type=float, default=None, help="Adam learning rate (architecture default if unset).")
@click.option("--schedule", type=click.Choice(["constant", "cosine"]), default=None, help="Learning-rate schedule.")
@click.option("--amp", type=click.Choice(["auto", "bf16", "fp16", "off"]), default="auto", show_default=True,
              help="Mixed precision (auto: on GPUs bf16/fp16 from 128 px models up, fp32+TF32 below; "
                   "bf16 on CPUs with AMX/AVX512-BF16).")
@click.option("--compile", "compile_", is_flag=True, help="Use torch.compile (slow start, faster steps).")
@click.option("--save-every", default=500, show_default=True, help="Checkpoint every N steps.")
@click.option("--preview-every", default=250, show_default=True, help="Write preview.png every N steps.")
@click.option("--timelapse", is_flag=True, help="Keep every preview and render timelapse.mp4 at the end.")
@click.option("--workers", type=int, default=None,
              help="Data worker processes (default: half the cores, at most 4; none on a 2-core CPU).")
@click.option("--seed", default=0, show_default=True)
@click.option("--holdout", default=0.1, show_default=True, help="Share of each face set kept out for evaluation.")
@click.option("--coverage", type=float, default=None, help="Share of the aligned crop the model sees (new model).")
@click.option("--kl-weight", type=float, default=None, help="KL weight for --latent vae.")
@click.option("--warp-share", type=float, default=None,
              help="Share of inputs given the random warp (lite: 0.5, others: 1); the rest teach exact detail.")
@click.pass_context
def train(ctx, faceset_a, faceset_b, model_dir, compile_, kl_weight, warp_share, **options):
    """Train a shared encoder and two decoders on face sets A and B."""
    from faceswap.training.loop import TrainSettings, train as run_train

    settings = TrainSettings(**options, compile=compile_)
    if kl_weight is not None:
        settings.loss.kl = kl_weight
    if warp_share is not None:
        settings.augment["warp_share"] = warp_share
    summary = run_train(faceset_a, faceset_b, model_dir, settings, progress=not ctx.obj["quiet"])
    click.echo(summary.line())
    if summary.stopped in ("interrupted", "terminated"):
        click.echo(f"checkpoint saved at step {summary.step}; run the same command to resume", err=True)


def convert_options(function):
    """Options shared by convert and the pipeline's convert stage."""
    decorators = [
        click.option("-m", "--model-dir", required=True, type=click.Path(path_type=Path), help="Trained model folder."),
        click.option("--alignments", type=click.Path(path_type=Path), default=None,
                     help="Face set folder or alignments.jsonl made by extract for this input."),
        click.option("--direction", type=click.Choice(["a2b", "b2a"]), default="a2b", show_default=True),
        click.option("--color", type=click.Choice(["avg", "rct", "hist", "none"]), default="rct", show_default=True),
        click.option("--mask", type=click.Choice(["landmarks", "predicted", "combined"]), default=None,
                     help="Default: combined when the model learned a mask, else landmarks."),
        click.option("--erode", default=0, show_default=True, help="Shrink (or, negative, grow) the mask by PX."),
        click.option("--blur", type=float, default=None, help="Feather the mask edge by PX (default 8% of the face)."),
        click.option("--blend", type=click.Choice(["alpha", "seamless"]), default="alpha", show_default=True),
        click.option("--sharpen", default=0.0, show_default=True, help="Unsharp-mask amount for the new face."),
        click.option("--track", default=None, help="Swap one person only: largest, center or a track id."),
        click.option("--bridge", default=5, show_default=True, help="Bridge a face lost for up to N frames."),
        click.option("--sequence", is_flag=True,
                     help="Image folders hold consecutive video frames: track, smooth and bridge across them "
                          "(by default each image is searched on its own)."),
        click.option("--watermark", default=None, help="Draw this visible label on every frame."),
        click.option("--codec", default="libx264", show_default=True),
        click.option("--crf", default=18, show_default=True),
        click.option("--batch-size", default=16, show_default=True, help="Faces per model call."),
    ]
    for decorator in reversed(decorators):
        function = decorator(function)
    return function


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Output video (or image folder); a folder when there are several inputs.")
@convert_options
@click.pass_context
def convert(ctx, inputs, output, model_dir, alignments, **options):
    """Swap faces in videos or image folders; timing and audio kept, output marked as synthetic."""
    from faceswap.swap.batch import convert_many

    convert_many(list(inputs), output, model_dir, options, alignments, progress=not ctx.obj["quiet"],
                 echo=click.echo)


@cli.command()
@click.argument("pipeline_file", type=click.Path(path_type=Path))
@click.option("--work-dir", type=click.Path(path_type=Path), default=None, help="Override the file's work_dir.")
@click.option("--jobs", type=int, default=None, help="Clips converted at once.")
@click.pass_context
def run(ctx, pipeline_file, work_dir, jobs):
    """Run a pipeline file: extract A and B, train, convert clips (unchanged stages are skipped)."""
    from faceswap.pipeline import Pipeline

    Pipeline(pipeline_file, work_dir, jobs).run(progress=not ctx.obj["quiet"], echo=click.echo)


@cli.command()
@click.option("-m", "--model-dir", type=click.Path(path_type=Path), default=None, help="Model to measure.")
@click.option("--video", nargs=2, type=click.Path(path_type=Path), default=None, metavar="SRC OUT",
              help="An input clip and its converted output.")
@click.option("--compare", type=click.Path(path_type=Path), default=None,
              help="A second model folder, or a second converted output of SRC.")
@click.option("--report", type=click.Path(path_type=Path), default=None,
              help="Write the report as JSON here (and a PNG strip beside it).")
@click.option("--every", default=1, show_default=True, help="Measure every Nth frame of the videos.")
def evaluate(model_dir, video, compare, report, every):
    """Measure a model (held-out SSIM/PSNR) and a converted video (parity, pose, jitter, flicker, seams)."""
    from faceswap.evaluate import evaluate as run_evaluate, format_report

    src, out = video if video else (None, None)
    result = run_evaluate(model_dir, src, out, compare, report, every)
    click.echo(format_report(result))
    if report:
        click.echo(f"report: {report}")


def main():
    cli(prog_name="faceswap")


if __name__ == "__main__":
    main()
