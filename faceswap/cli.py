"""The `faceswap` command: thin click wrappers that parse, call and report."""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import sys
import traceback
from pathlib import Path

import click

from faceswap import __version__, assets, credentials, images, outputs, settings
from faceswap.errors import FaceswapError, Interrupted
from faceswap.settings import ConvertSettings, ExtractSettings, TrainSettings

log = logging.getLogger("faceswap")


class Limit(click.FloatRange):
    """A float option within a range: NaN and infinity are refused (a NaN limit would filter nothing)."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


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
            if (ctx.obj or {}).get("verbose", False):
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
    paths = assets.fetch_models()
    click.echo(f"face models ready in {assets.models_dir()} ({len(paths)} files, sha256 verified)")


@models.command("path")
def models_path():
    """Print the folder holding the face models ($FACESWAP_MODELS overrides it)."""
    click.echo(str(assets.models_dir()))


@cli.group()
def samples():
    """Manage the sample clips used by the demo and the tests."""


@samples.command("fetch")
def samples_fetch():
    """Download and verify the sample clips into samples/ ($FACESWAP_SAMPLES overrides it)."""
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


@cli.group()
def faceset():
    """Look at, order and clean a face set (identity, blur, pose, size, near-duplicates)."""


@faceset.command("sheet")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Contact sheet PNG to write.")
@click.option("--sort-by", type=click.Choice(["identity", "blur", "yaw", "pitch", "size"]), default=None,
              help="Order the faces, worst first, and print the measure under each.")
@click.option("--reference", type=click.Path(path_type=Path), default=None, help="Photo for --sort-by identity.")
def faceset_sheet(folder, output, sort_by, reference):
    """Write a contact sheet of a face set."""
    from faceswap import curate

    outputs.claim(output, "png", [folder, reference])
    entries = curate.measure(folder, reference)
    if sort_by:
        entries = curate.sort(entries, sort_by)
    curate.sheet(entries, output, label=sort_by)
    click.echo(f"sheet of {len(entries)} faces: {output}")


@faceset.command("sort")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--by", "key", type=click.Choice(["identity", "blur", "yaw", "pitch", "size"]), required=True)
@click.option("--reference", type=click.Path(path_type=Path), default=None, help="Photo for --by identity.")
@click.option("--head", default=20, show_default=True, help="How many of the worst to list.")
def faceset_sort(folder, key, reference, head):
    """List a face set's faces worst first by one measure."""
    from faceswap import curate

    if key == "identity" and not reference:
        raise click.BadParameter("give --reference PHOTO to sort by identity", param_hint="--by")
    for entry in curate.sort(curate.measure(folder, reference), key)[:head]:
        click.echo(f"{entry.path.name}  " + "  ".join(f"{k} {v}" for k, v in entry.measures.items()))


@faceset.command("filter")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--reference", type=click.Path(path_type=Path), default=None,
              help="Keep only faces of the person in this photo.")
@click.option("--max-distance", type=Limit(0, 2), default=0.6, show_default=True,
              help="Largest identity distance to --reference that is kept.")
@click.option("--min-blur", type=Limit(0), default=None, help="Drop crops less sharp than this.")
@click.option("--max-yaw", type=Limit(0, 90), default=None, help="Drop faces turned more (degrees).")
@click.option("--max-pitch", type=Limit(0, 90), default=None, help="Drop faces tilted more (degrees).")
@click.option("--min-size", type=Limit(0), default=None, help="Drop faces smaller than this (px).")
@click.option("--duplicates", type=Limit(0, 255), default=None,
              help="Drop near-duplicates: thumbnails closer than this (mean grey difference, e.g. 3).")
@click.option("--dry-run", is_flag=True, help="Only say what would be moved.")
def faceset_filter(folder, reference, max_distance, min_blur, max_yaw, max_pitch, min_size, duplicates, dry_run):
    """Move the faces that fail the limits to FOLDER.rejected/ (nothing is deleted); training uses what is left."""
    from faceswap import curate

    entries = curate.measure(folder, reference)
    why = curate.rejections(entries, max_distance if reference else None, min_blur, max_yaw, max_pitch, min_size,
                            duplicates)
    for name, reason in sorted(why.items()):
        click.echo(f"{'would reject' if dry_run else 'rejected'} {name}: {reason}")
    moved = 0 if dry_run else curate.apply(folder, why)
    click.echo(f"faceset filter: {len(entries)} faces, {len(why)} {'to reject' if dry_run else 'rejected'}, "
               f"{len(entries) - moved} kept" + (f" (moved to {folder}.rejected)" if moved else ""))


@cli.command()
@click.argument("faceset_a", type=click.Path(path_type=Path))
@click.argument("faceset_b", type=click.Path(path_type=Path))
@click.option("-m", "--model-dir", required=True, type=click.Path(path_type=Path), help="Model folder (resumed if it exists).")
@click.option("--from", "pretrained", type=click.Path(path_type=Path), default=None,
              help="Start a new model from this base (faceswap pretrain): encoder and both decoders.")
@settings.click_options(TrainSettings, skip=frozenset({"pretrained"}))
@click.pass_context
def train(ctx, faceset_a, faceset_b, model_dir, **options):
    """Train a shared encoder and two decoders on face sets A and B."""
    from faceswap.training.loop import train as run_train

    summary = run_train(faceset_a, faceset_b, model_dir, settings.parse(TrainSettings, options, cli=True),
                        progress=not ctx.obj["quiet"])
    _training_ended(summary)


@cli.command()
@click.argument("facesets", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-m", "--model-dir", required=True, type=click.Path(path_type=Path),
              help="Base model folder to write (resumed if it exists).")
@settings.click_options(TrainSettings, skip=frozenset({"pretrained"}))
@click.pass_context
def pretrain(ctx, facesets, model_dir, **options):
    """Pretrain a base on any face sets of any people (no pairs): the shared encoder and one generic decoder, as
    a denoising autoencoder. Start pairs from it with train --from."""
    from faceswap.training.loop import pretrain as run_pretrain

    summary = run_pretrain(list(facesets), model_dir, settings.parse(TrainSettings, options, cli=True),
                           progress=not ctx.obj["quiet"])
    _training_ended(summary)


def _training_ended(summary) -> None:
    click.echo(summary.line())
    if summary.stopped.exit_code:
        raise Interrupted(f"training {summary.stopped.value}: checkpoint saved at step {summary.step}; run the "
                          "same command to resume", summary.stopped.exit_code)


RAY_OPTION = click.option(
    "--ray", "ray_address", is_flag=False, flag_value="", default=None, metavar="[ADDRESS]",
    help="Run on a Ray cluster: 'auto' or HOST:PORT joins one, none given starts one here (pip install "
         "'faceswap[ray]'; paths must be on storage every node sees; put it after the inputs).")


def _executor(address: str | None):
    """The Ray cluster of --ray (started here when no address is given); without --ray the work stays here."""
    if address is None:
        return contextlib.nullcontext()
    from faceswap.cluster import Ray

    return Ray(address or None)


@cli.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Output video (or image folder); a folder when there are several inputs.")
@click.option("-m", "--model-dir", required=True, type=click.Path(path_type=Path), help="Trained model folder.")
@click.option("--alignments", type=click.Path(path_type=Path), default=None,
              help="Face set folder or alignments.jsonl made by extract for this input.")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Clips converted at once (a folder of clips).")
@RAY_OPTION
@settings.click_options(ConvertSettings)
@click.pass_context
def convert(ctx, inputs, output, model_dir, alignments, jobs, ray_address, **options):
    """Swap faces in videos or image folders; timing and audio kept, output marked as synthetic."""
    from faceswap.device import share_cpu_with_video
    from faceswap.swap.batch import convert_many

    share_cpu_with_video()
    with _executor(ray_address) as executor:
        convert_many(list(inputs), output, model_dir, settings.parse(ConvertSettings, options, cli=True),
                     alignments, progress=not ctx.obj["quiet"], echo=click.echo, jobs=jobs, executor=executor)


@cli.command()
@click.argument("pipeline_file", type=click.Path(path_type=Path))
@click.option("--work-dir", type=click.Path(path_type=Path), default=None, help="Override the file's work_dir.")
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="Clips converted at once.")
@RAY_OPTION
@click.pass_context
def run(ctx, pipeline_file, work_dir, jobs, ray_address):
    """Run a pipeline file: extract A and B, train, convert clips (unchanged stages are skipped)."""
    from faceswap.pipeline import Pipeline

    pipeline = Pipeline(pipeline_file, work_dir, jobs)  # the file checked before a cluster is started or joined
    with _executor(ray_address) as executor:
        pipeline.executor = executor or pipeline.executor
        pipeline.run(progress=not ctx.obj["quiet"], echo=click.echo)


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def verify(files):
    """Read the content credentials (C2PA) of outputs: synthetic or not, tool, date, signer, and whether each file
    still matches them. Exit 0 only when every file's are intact."""
    intact = True
    for path in files:
        found, note = credentials.verify(path)
        click.echo(credentials.describe(path, found, note))
        intact = intact and found.state == "intact"
    if not intact:
        sys.exit(1)


@cli.command()
@click.option("-m", "--model-dir", required=True, type=click.Path(path_type=Path), help="A --latent vae model.")
@click.option("--side", type=click.Choice(["a", "b"]), default="a", show_default=True, help="Whose decoder.")
@click.option("-n", "--count", type=click.IntRange(1, 256), default=16, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Sheet PNG to write.")
def sample(model_dir, side, count, seed, output):
    """Decode random codes of a variational model into a sheet of new faces."""
    from faceswap.models.store import load_model
    from faceswap.training.report import sample_sheet

    outputs.claim(output, "png", [model_dir])
    model, _ = load_model(model_dir)
    if model.cfg.latent_type != "vae":
        raise click.UsageError(f"{model_dir}: a {model.cfg.latent_type} model has no code distribution to sample; "
                               "train one with --latent vae")
    images.write_png(output, sample_sheet(model, side, count, seed))
    click.echo(f"sample: {count} faces from decoder {side.upper()}: {output}")


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
    click.echo(format_report(run_evaluate(model_dir, src, out, compare, report, every)))
    if report:
        click.echo(f"report: {report}")


@cli.command()
@click.option("--workspace", type=click.Path(path_type=Path), default=Path("."), show_default=True,
              help="The folder the page works in: every path it takes stays inside it.")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (only this machine by "
                                                                     "default).")
@click.option("--jobs", "slots", type=click.IntRange(1, 16), default=1, show_default=True,
              help="Jobs run at once.")
def ui(workspace, port, host, slots):
    """Serve a local web page: projects and face sets, a job queue, live training, a convert preview."""
    import uvicorn

    from faceswap.ui.app import TOKEN_ENV, create_app

    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: anyone who can reach this address and has the token can run jobs and read "
                    "the workspace", host)
    app = create_app(workspace, slots, token=os.environ.pop(TOKEN_ENV, None), host=host)  # jobs don't inherit it
    name = f"[{host}]" if ":" in host else host
    click.echo(f"faceswap ui: http://{name}:{port}/?token={app.state.token}  (workspace {app.state.workspace.root}; "
               "Ctrl-C stops it)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def main():
    # a background job of a shell starts with SIGINT ignored: kill -INT and the web page's Cancel must still stop it
    signal.signal(signal.SIGINT, signal.default_int_handler)
    cli(prog_name="faceswap")


if __name__ == "__main__":
    main()
