"""The ``cl`` command line. User errors print without a traceback (``--traceback`` shows it) and exit 1."""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import textwrap
from pathlib import Path

import click

from .errors import ClError
from .registry import KIND_HOOKS, plural


def _fail(message: str) -> None:
    click.echo(click.style("error: ", fg="red", bold=True) + message, err=True)
    sys.exit(1)


def user_errors(func):
    """Turn ClError (and a few OS errors users cause) into a clean message and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        ctx = click.get_current_context()
        if ctx.find_root().params.get("traceback"):
            return func(*args, **kwargs)
        try:
            return func(*args, **kwargs)
        except ClError as exc:
            _fail(_with_notes(str(exc), exc))
        except KeyboardInterrupt as exc:  # a stopped run's note says whether and how to resume it
            _fail(_with_notes("interrupted", exc))
        except BrokenPipeError as exc:  # `cl train ... | head`: the reader left; stop like any Unix command
            _silence_stdout()
            _fail(_with_notes("standard output was closed (piped into a command that exited)", exc))

    return wrapper


def _with_notes(message: str, exc: BaseException) -> str:
    """``message`` and the notes added to ``exc`` on its way up (what a stopped run left behind)."""
    return "\n".join([message, *getattr(exc, "__notes__", ())])


def _silence_stdout() -> None:
    """Point stdout at /dev/null after a broken pipe, so that Python's flush at exit does not fail again and
    print "Exception ignored ... BrokenPipeError"."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (a test runner's captured stream)
        pass


def _count(n: int, noun: str) -> str:
    """``1 plugin``, ``2 plugins``, ``3 losses``."""
    return f"{n} {noun if n == 1 else plural(noun)}"


def _width() -> int:
    """Columns to wrap listings to: the terminal's (``COLUMNS`` wins), 100 when output is not a terminal."""
    return max(40, shutil.get_terminal_size((100, 24)).columns)


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    """Each row's cells left-aligned in columns as wide as their widest cell, two spaces apart (the last
    cell is not padded)."""
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(row, widths)), row[-1]]) for row in rows]


def _wrap_items(items: list[str], indent: str, width: int) -> list[str]:
    """``items`` separated by ", " and wrapped to ``width``, every line starting with ``indent``; lines break
    only between items, so each item stays whole on one line unless it alone is wider than a line (then it is
    wrapped at its own spaces, continued two spaces deeper). Nothing is left out."""
    lines: list[str] = []
    line = ""
    for i, item in enumerate(items):
        text = item + ("," if i < len(items) - 1 else "")
        if line and len(indent) + len(line) + 1 + len(text) <= width:
            line += " " + text
            continue
        if line:
            lines.append(indent + line)
            line = ""
        if len(indent) + len(text) <= width:
            line = text
        else:
            lines += textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=indent + "  ",
                                   break_long_words=False, break_on_hyphens=False)
    if line:
        lines.append(indent + line)
    return lines


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--traceback", is_flag=True, help="Show Python tracebacks for user errors too.")
@click.version_option(package_name="cl-core", prog_name="cl")
def main(traceback: bool) -> None:
    """cl: contrastive representation learning from plugins."""
    _plain_cl_warnings()


def _plain_cl_warnings() -> None:
    """Show cl's own warnings to users (:class:`~cl_core.errors.ClWarning`: a plugin that failed to load, an
    evaluation that was skipped) as one ``warning: ...`` line, without the source line of the
    ``warnings.warn`` call that Python's default format adds; other warnings keep that format."""
    import warnings

    from .errors import ClWarning

    default = warnings.showwarning
    if getattr(default, "plain_plugin_warnings", False):  # already installed (several commands in one process)
        return

    def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        if issubclass(category, ClWarning):
            click.echo(click.style("warning: ", fg="yellow", bold=True) + str(message), err=True)
        else:
            default(message, category, filename, lineno, file, line)

    show.plain_plugin_warnings = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def _host():
    from .plugins import default_host

    return default_host()


def _overrides(items: tuple[str, ...]):
    from .spec import parse_overrides

    return parse_overrides(items)


SET_OPTION = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Override a spec value, e.g. --set trainer.lr=1e-4 (value parsed as TOML).")


@main.command()
@click.argument("spec", required=False, type=click.Path(path_type=Path))
@SET_OPTION
@click.option("--resume", type=click.Path(path_type=Path), help="Continue a killed run from its directory.")
@user_errors
def train(spec: Path | None, overrides: tuple[str, ...], resume: Path | None) -> None:
    """Train the pipeline a SPEC file describes, writing a run directory."""
    from .runs import train as run_train

    if spec is None and resume is None:
        raise click.UsageError("give a SPEC file or --resume RUN")
    result = run_train(spec, overrides=_overrides(overrides), resume=resume, host=_host(),
                       log=lambda m: click.echo(m, err=False))
    try:
        click.echo(f"done: {result.run_dir} ({result.steps} steps, {result.seconds:.0f} s)")
    except BrokenPipeError as exc:  # `cl train ... | head`: say that the run itself is whole
        exc.add_note(f"the run is complete: `cl eval {result.run_dir}` shows its results")
        raise


@main.command(name="eval")
@click.argument("run", type=click.Path(path_type=Path))
@SET_OPTION
@user_errors
def eval_(run: Path, overrides: tuple[str, ...]) -> None:
    """Evaluate the trained model of RUN with its spec's evaluators; or build a SPEC file that has nothing to
    train (e.g. an iterative decoder over saved models) and run its evaluators."""
    from .runs import evaluate_run

    evaluate_run(run, host=_host(), overrides=_overrides(overrides), log=click.echo)


@main.command()
@click.argument("run", metavar="RUN")
@click.argument("items", metavar="ITEM...", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--modality", type=click.Choice(["image", "audio"]), default="image", show_default=True,
              help="What the ITEMs are: image files, or WAV files for an audio tower (an ImageBind run's).")
@click.option("--role", help="Encoder role that embeds the items; default: the caption objective's condition role "
                             "when it takes the modality, else the role named after it, else the run's one role of "
                             "that modality (line art of an ImageBind run: --role lineart).")
@click.option("--decoder", "decoder", metavar="DECODER",
              help="Caption with another decoder than RUN's: 'iterative' (MAGIC's magic search over RUN's text tower "
                   "and an LM, nothing trained), a spec file whose [decoder] table to use over RUN's towers, or a "
                   "decoder run trained in RUN's space (e.g. a DeCap run captioning an ImageBind run's audio).")
@click.option("--decoder-set", "decoder_overrides", multiple=True, metavar="KEY=VALUE",
              help="With --decoder iterative or a spec file: override a decoder param, e.g. --decoder-set k=10.")
@click.option("--max-length", type=click.IntRange(min=1), default=32, show_default=True,
              help="Longest caption, in the decoder's units (tokens; words for captions.clipre).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Items per batch.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, mps or auto.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {item, caption} instead of lines.")
@user_errors
def caption(run: str, items: tuple[Path, ...], modality: str, role: str | None, decoder: str | None,
            decoder_overrides: tuple[str, ...], max_length: int, batch_size: int, device: str, as_json: bool) -> None:
    """Caption files (or the files of folders) with the decoder of RUN, or another one (--decoder).

    RUN is a run directory, a saved folder, a Hub id (org/name[@revision]) or a spec file with nothing to train
    (e.g. CLIPRe over a saved model). Prints one line per item: its path, a tab, its caption.
    """
    from . import captioning

    files = captioning.caption_files(items, modality)  # unreadable files are reported before any model is loaded
    pipeline = captioning.caption_pipeline(run, device, _host())
    if decoder is None and decoder_overrides:
        raise ClError("--decoder-set changes the decoder --decoder names; give --decoder too")
    if decoder is None and pipeline.decoder is None:
        raise ClError(f"{run} has no [decoder]: it cannot caption (a spec with a [decoder] table, e.g. ClipCap or "
                      "CLIPRe over this model, makes one; or --decoder iterative)")
    chosen = captioning.caption_role(pipeline, role, modality)
    if decoder is not None:
        pipeline = captioning.with_decoder(pipeline, chosen, decoder, _overrides(decoder_overrides), run, device,
                                           _host())
    captioning.check_items(pipeline, chosen, files)
    rows = []
    for start in range(0, len(files), batch_size):  # items are decoded one batch at a time
        chunk = files[start : start + batch_size]
        texts = pipeline.caption(chosen, captioning.read_items(chunk, modality), max_length=max_length,
                                 batch_size=batch_size)
        for path, text in zip(chunk, texts):
            if as_json:
                rows.append({"item": str(path), "caption": text})
            else:
                click.echo(f"{path}\t{text}")
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))


@main.group()
def spec() -> None:
    """Validate and show spec files."""


@spec.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@user_errors
def validate(files: tuple[Path, ...]) -> None:
    """Check spec FILES without building anything (no torch import)."""
    from .errors import SpecError
    from .spec import load_spec

    registry = _host().registry()
    failed = []
    for path in files:
        try:
            load_spec(path, registry)
            click.echo(f"{path}: ok")
        except SpecError as exc:
            failed.append(exc)
    if failed:
        _fail("\n".join(str(e) for e in failed))


@spec.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--resolved", is_flag=True, help="Fill every default and add provenance.")
@SET_OPTION
@user_errors
def show(file: Path, resolved: bool, overrides: tuple[str, ...]) -> None:
    """Print a spec file (with --resolved, or with --set overrides applied: every default filled in)."""
    from .spec import dump_spec, load_spec

    host = _host()
    spec_obj = load_spec(file, host.registry(), overrides=_overrides(overrides))
    if not resolved and not overrides:
        click.echo(file.read_text(encoding="utf-8"), nl=False)
        return
    from . import provenance

    click.echo(dump_spec(spec_obj, provenance.collect(host)), nl=False)


@main.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("repo_id", metavar="ORG/NAME")
@click.option("--private", is_flag=True, help="Create the repository private (an existing one keeps its visibility).")
@click.option("--revision", help="Branch to commit to (created from main if missing); default main.")
@click.option("--token", envvar="HF_TOKEN", show_envvar=True, help="Hub token with write access.")
@click.option("--message", "-m", help="Commit message.")
@user_errors
def push(run: Path, repo_id: str, private: bool, revision: str | None, token: str | None, message: str | None) -> None:
    """Upload the trained model of RUN (spec, weights, model card, metrics, plots) to the Hub as ORG/NAME.

    The Hub is HF_ENDPOINT (default https://huggingface.co); the resumable checkpoint stays local.
    """
    from .weights import push_to_hub

    url = push_to_hub(run, repo_id, revision=revision, private=private, token=token or None, message=message)
    click.echo(f"pushed {run} to {repo_id}{'@' + revision if revision else ''}: {url}")


@main.command()
@click.argument("repo", metavar="ORG/NAME[@REVISION]")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option("--revision", help="Branch, tag or commit id (same as ORG/NAME@REVISION).")
@click.option("--token", envvar="HF_TOKEN", show_envvar=True, help="Hub token for private repositories.")
@user_errors
def pull(repo: str, directory: Path | None, revision: str | None, token: str | None) -> None:
    """Download a model from the Hub into DIRECTORY (default: the Hugging Face cache) and check its spec.

    The spec is checked against the installed plugins, so a missing plugin is named right away.
    """
    from . import hub
    from .errors import SpecError
    from .spec import load_spec
    from .weights import SPEC_NAME

    ref = hub.RepoRef.parse(repo)
    if revision:
        ref = hub.RepoRef(ref.repo_id, revision)
    folder = hub.download(ref, token=token or None, local_dir=directory)
    click.echo(f"downloaded {ref} to {folder}")
    if not (folder / SPEC_NAME).is_file():
        _fail(f"{ref} has no {SPEC_NAME}: it is not a cl model")
    try:
        load_spec(folder / SPEC_NAME, _host().registry())
    except SpecError as exc:
        _fail(f"the model needs components that are not available here:\n{exc}")
    click.echo(f'load it with: from_pretrained("{folder if directory else ref}")')


@main.group()
def plugins() -> None:
    """List, check and create plugins."""


@plugins.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@user_errors
def plugins_list(as_json: bool) -> None:
    """Installed plugins, their state (a plugin that failed to load shows its cause) and components."""
    import warnings

    from .errors import PluginLoadWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginLoadWarning)  # failures are shown in the table instead
        host = _host()
        registry = host.registry()
    rows = []
    for status in host.statuses():
        components = [e.name for e in registry.by_plugin(status.entry_point)]
        rows.append({"entry_point": status.entry_point, "distribution": status.distribution,
                     "version": status.version, "state": status.state, "error": status.error,
                     "hooks": list(status.hooks), "components": components})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    # columns as wide as their longest name, so long distribution names keep the table aligned
    lines = _columns([(r["entry_point"], r["distribution"] or "-", r["version"] or "-", "") for r in rows])
    for line, row in zip(lines, rows):
        state = row["state"]
        color = {"failed": "red", "blocked": "yellow"}.get(state)
        click.echo(line + click.style(state, fg=color))
        if row["error"]:
            click.echo(f"    error: {row['error']}")
        if row["components"]:
            click.echo("    " + ", ".join(row["components"]))


@plugins.command(name="new")
@click.argument("name")
@click.option("--dir", "parent", type=click.Path(path_type=Path), default=Path("."), show_default=True,
              help="Folder to create the plugin package in.")
@user_errors
def plugins_new(name: str, parent: Path) -> None:
    """Create a plugin package NAME (encoder, loss, example data, contract tests) that installs and passes
    the contract kit as it is."""
    from .scaffold import NEXT_STEPS, names, new_plugin

    target = new_plugin(name, parent)
    values = names(name)
    click.echo(f"created {values['distribution']} in {target}")
    click.echo(f"  components: {name}.mlp (encoder), {name}.margin-nce (loss), {name}.pairs (dataset)")
    click.echo("next:\n" + "".join(f"  {step}\n" for step in (f"cd {target}", *NEXT_STEPS)), nl=False)


@plugins.command(name="check")
@click.argument("distributions", nargs=-1)
@user_errors
def plugins_check(distributions: tuple[str, ...]) -> None:
    """Load plugins strictly and resolve every lazy factory (imports the heavy modules).

    Every plugin that fails to load and every factory that fails to resolve is reported, then the command
    exits 1. DISTRIBUTIONS (entry-point or distribution names, e.g. clip or cl-clip) limit the check; an
    unknown name is an error."""
    import warnings

    from .errors import PluginLoadWarning
    from .plugins import PluginHost

    with warnings.catch_warnings():  # a lenient host records each failure, so one broken plugin hides no other;
        warnings.simplefilter("ignore", PluginLoadWarning)  # they are reported below and fail the command
        host = PluginHost()
    host.check_known(distributions)

    def wanted(plugin: str, distribution: str | None) -> bool:
        return not distributions or plugin in distributions or distribution in distributions

    broken = sorted((s for s in host.statuses() if s.state == "failed" and wanted(s.entry_point, s.distribution)),
                    key=lambda s: s.entry_point)
    for status in broken:
        click.echo(f"FAIL  {'plugin':<9} {status.entry_point} ({status.distribution or '-'} "
                   f"{status.version or '-'}) failed to load: {status.error}")
    problems = 0
    for entry in host.registry():
        if not wanted(entry.plugin, entry.distribution):
            continue
        try:
            entry.info.load_factory()
            click.echo(f"ok    {entry.kind:<9} {entry.name}")
        except Exception as exc:  # report every broken factory, then fail
            problems += 1
            click.echo(f"FAIL  {entry.kind:<9} {entry.name}: {type(exc).__name__}: {exc}")
    failures = []
    if broken:
        failures.append(f"{_count(len(broken), 'plugin')} failed to load "
                        f"({', '.join(s.entry_point for s in broken)})")
    if problems:
        failures.append(f"{_count(problems, 'component')} failed to resolve")
    if failures:
        _fail("; ".join(failures))


@main.command()
@click.option("--kind", type=click.Choice(list(KIND_HOOKS)))
@click.option("--json", "as_json", is_flag=True)
@user_errors
def components(kind: str | None, as_json: bool) -> None:
    """The catalogue of registered components with their parameters and defaults."""
    from .spec.structure import param_parts

    registry = _host().registry()
    rows = [{"kind": e.kind, "name": e.name, "plugin": e.distribution or e.plugin, "summary": e.info.summary,
             "params": param_parts(e.info.params)} for e in registry if kind in (None, e.kind)]
    rows.sort(key=lambda r: (r["kind"], r["name"]))
    if as_json:
        click.echo(json.dumps([{**r, "params": ", ".join(r["params"])} for r in rows], indent=2))
        return
    if not rows:
        return
    width = _width()
    kind_w = max(len(r["kind"]) for r in rows)
    name_w = max(len(r["name"]) for r in rows)
    column = " " * (kind_w + name_w + 2)  # where summaries and parameters start
    indent = column if width - len(column) >= 40 else "    "  # a narrow terminal: a small indent instead
    for row in rows:
        head = f"{row['kind']:<{kind_w}} {row['name']:<{name_w}} "
        summary = textwrap.wrap(row["summary"], width, initial_indent=head, subsequent_indent=indent,
                                break_long_words=False, break_on_hyphens=False)
        click.echo("\n".join(summary or [head.rstrip()]))
        if row["params"]:
            click.echo("\n".join(_wrap_items(row["params"], indent, width)))


from . import cli_data  # noqa: E402,F401  (registers cl data)
from . import cli_search  # noqa: E402,F401  (registers cl embed / index / search)
from . import cli_serve  # noqa: E402,F401  (registers cl serve)

if __name__ == "__main__":  # pragma: no cover
    main()
