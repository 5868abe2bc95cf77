"""The `faceswap` command: thin click wrappers that parse, call and report."""
from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path

import click

from faceswap import __version__
from faceswap import settings
from faceswap.errors import FaceswapError, Interrupted
from faceswap.settings import ConvertSettings, ExtractSettings, TrainSettings

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
        except Interrupted as exc:
            click.echo(f"faceswap: {exc}", err=True)
            sys.exit(exc.exit_code)
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
@settings.click_options(ExtractSettings)
@click.pass_context
def extract(ctx, inputs, output, **options):
    """Detect, align and save faces from videos, image folders or folders of videos into a face set."""
    import cv2

    from faceswap.extract import extract as run_extract

    # reading, finding and writing already run side by side; OpenCV's own threads on small warps only wait on them
    cv2.setNumThreads(1)
    summary = run_extract(list(inputs), output, settings.parse(ExtractSettings, options, cli=True),
                          progress=not ctx.obj["quiet"])
    click.echo(summary.line())
    if summary.faces_in_set == 0:
        click.echo(f"note: no face found in {', '.join(str(p) for p in inputs)}", err=True)


@cli.command()
@click.argument("faceset_a", type=click.Path(path_type=Path))
@click.argument("faceset_b", type=click.Path(path_type=Path))
@click.option("-m", "--model-dir", required=True, type=click.Path(path_type=Path), help="Model folder (resumed if it exists).")
@settings.click_options(TrainSettings)
@click.pass_context
def train(ctx, faceset_a, faceset_b, model_dir, **options):
    """Train a shared encoder and two decoders on face sets A and B."""
    from faceswap.training.loop import train as run_train

    summary = run_train(faceset_a, faceset_b, model_dir, settings.parse(TrainSettings, options, cli=True),
                        progress=not ctx.obj["quiet"])
    click.echo(summary.line())
    if summary.stopped.exit_code:
        raise Interrupted(f"training {summary.stopped.value}: checkpoint saved at step {summary.step}; run the "
                          "same command to resume", summary.stopped.exit_code)


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Output video (or image folder); a folder when there are several inputs.")
@click.option("-m", "--model-dir", required=True, type=click.Path(path_type=Path), help="Trained model folder.")
@click.option("--alignments", type=click.Path(path_type=Path), default=None,
              help="Face set folder or alignments.jsonl made by extract for this input.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Clips converted at once (a folder of clips).")
@settings.click_options(ConvertSettings)
@click.pass_context
def convert(ctx, inputs, output, model_dir, alignments, jobs, **options):
    """Swap faces in videos or image folders; timing and audio kept, output marked as synthetic."""
    from faceswap.device import share_cpu_with_video
    from faceswap.swap.batch import convert_many

    share_cpu_with_video()
    convert_many(list(inputs), output, model_dir, settings.parse(ConvertSettings, options, cli=True), alignments,
                 progress=not ctx.obj["quiet"], echo=click.echo, jobs=jobs)


@cli.command()
@click.argument("pipeline_file", type=click.Path(path_type=Path))
@click.option("--work-dir", type=click.Path(path_type=Path), default=None, help="Override the file's work_dir.")
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="Clips converted at once.")
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
