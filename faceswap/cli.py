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
@click.option("--preview", type=click.Path(path_type=Path), default=None,
              help="Write a contact sheet (.png) or video (.mp4) with boxes and landmarks drawn.")
@click.pass_context
def extract(ctx, inputs, output, **options):
    """Detect, align and save faces from videos or image folders into a face set."""
    from faceswap.extract import ExtractSettings, extract as run_extract

    if options["track"] not in (None, "largest", "center") and not str(options["track"]).isdigit():
        raise click.BadParameter("use largest, center or a track id", param_hint="--track")
    summary = run_extract(list(inputs), output, ExtractSettings(**options), progress=not ctx.obj["quiet"])
    click.echo(summary.line())
    if summary.faces == 0:
        click.echo(f"note: no face found in {', '.join(str(p) for p in inputs)}", err=True)


def main():
    cli(prog_name="faceswap")


if __name__ == "__main__":
    main()
