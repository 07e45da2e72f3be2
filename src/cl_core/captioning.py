"""What ``cl caption`` does besides parsing its options: reading the files of each modality, choosing the role that
embeds them, and putting another decoder over a run (``--decoder``).

Decoders reused across models (ImageBind's "cross-modal decoder reuse"): a decoder trained on one model's
embeddings decodes another model's embeddings only when both are in one space. A bound model (ImageBind) keeps the
image and text towers of the model it was bound to frozen, so it shares those towers, bit for bit, with every
decoder trained on that model. :func:`with_decoder` checks exactly that, with :func:`tower_digest`: the decoder's
run and RUN must have at least one tower whose weights are identical; then RUN's tower of the captioned role joins
the decoder's pipeline. Otherwise it stops with the two sets of towers named, rather than decode nonsense.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import ClError

#: Suffixes of the files a folder given to `cl caption` contributes, per modality (other files are ignored).
SUFFIXES = {"image": (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"), "audio": (".wav",)}


# -- files --------------------------------------------------------------------------------------------------------


def _pil():
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:  # pragma: no cover - Pillow comes with matplotlib
        raise ClError("cl caption reads images with Pillow: pip install pillow") from exc
    return Image, UnidentifiedImageError


def _image_problem(path: Path, exc: BaseException) -> ClError:
    if type(exc).__name__ == "UnidentifiedImageError":
        return ClError(f"{path}: not an image (Pillow cannot identify it)")
    return ClError(f"{path}: cannot decode the image: {exc}")


def _check_image(path: Path) -> None:
    """Raise a ClError saying why ``path`` is not an image Pillow can read (header and, where the format allows,
    integrity; nothing is decoded)."""
    image_module, unidentified = _pil()
    try:
        with image_module.open(path) as image:
            image.verify()
    except (unidentified, OSError, ValueError, SyntaxError) as exc:  # SyntaxError: some Pillow plugins' "corrupt"
        raise _image_problem(path, exc) from None


def _read_image(path: Path):
    """The RGB PIL image of ``path`` (a ClError when it cannot be decoded)."""
    image_module, unidentified = _pil()
    try:
        with image_module.open(path) as image:
            return image.convert("RGB")
    except (unidentified, OSError, ValueError, SyntaxError) as exc:
        raise _image_problem(path, exc) from None


def _check_audio(path: Path) -> None:
    """Only the name here: the audio tower reads and checks the content (:func:`check_items`), and cl-core knows
    no audio format."""
    if path.suffix.lower() not in SUFFIXES["audio"]:
        raise ClError(f"{path}: not a WAV file (convert it, e.g. `ffmpeg -i {path.name} -ac 1 -ar 16000 "
                      f"{path.stem}.wav`)")


#: How `cl caption` checks and reads a file of each modality (audio files go to the tower as paths).
READERS = {"image": (_check_image, _read_image), "audio": (_check_audio, str)}


def caption_files(paths: Sequence[Path], modality: str) -> list[Path]:
    """Every file given and every file of the modality's suffixes in the folders given (sorted by name), each
    checked by the modality's checker. All problems are reported together, in the order given.

    Raises:
        DataError: missing paths, folders without such files, files that fail the check.
    """
    from .errors import DataError, indented_list

    suffixes = SUFFIXES[modality]
    check, _ = READERS[modality]
    problems: list[str] = []
    found: list[Path] = []
    for path in paths:
        files: list[Path] = []
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
            if not files:
                problems.append(f"{path}: a folder with no {modality} files ({', '.join(suffixes)})")
        elif path.exists():
            files = [path]
        else:
            problems.append(f"{path}: no such file or folder")
        for file in files:
            try:
                check(file)
                found.append(file)
            except ClError as exc:
                problems.append(str(exc))
    if problems:
        raise DataError(f"{len(problems)} item(s) cannot be captioned:\n" + indented_list(problems))
    return found


def read_items(files: Sequence[Path], modality: str) -> list[Any]:
    """What the encoder of ``modality`` takes for each file (a PIL image; an audio file's path)."""
    _, read = READERS[modality]
    return [read(f) for f in files]


def check_items(pipeline: Any, role: str, files: Sequence[Path]) -> None:
    """Let the role's encoder check the files' content before any is captioned, when it can (an encoder with a
    ``check_files(paths) -> list[str]`` method, e.g. ImageBind's audio tower: silent, clipped, truncated WAVs).

    Raises:
        DataError: one line per bad file.
    """
    from .errors import DataError, indented_list

    check = getattr(pipeline.encoder(role), "check_files", None)
    problems = list(check([str(f) for f in files])) if check is not None else []
    if problems:
        raise DataError(f"{len(problems)} item(s) cannot be captioned:\n" + indented_list(problems))


# -- the model ----------------------------------------------------------------------------------------------------


def caption_device(name: str):
    from .trainer import resolve_device

    try:
        return resolve_device(name)
    except ClError as exc:
        raise ClError(f"--device {name}: {str(exc).split(' but ', 1)[-1]}") from None
    except RuntimeError as exc:  # torch.device("nonsense")
        raise ClError(f"--device {name}: {exc}") from None


def caption_pipeline(run: str, device: str, host: Any):
    """The pipeline of a run folder / Hub id (weights loaded), or of a spec file with nothing to train (built with
    its data, as `cl eval SPEC` builds it), in eval mode on ``device``.

    Raises:
        SpecError: a spec that trains. WeightsError / HubError: a run that does not load.
    """
    from .errors import Problem, SpecError

    path = Path(run)
    if path.suffix == ".toml" and (path.is_file() or not path.exists()):
        from .build import build_pipeline
        from .spec import load_spec

        registry = host.registry()
        spec_obj = load_spec(path, registry)
        if spec_obj.trains:
            raise SpecError(str(path), [Problem("", "this spec trains: `cl train` it, then `cl caption` the run "
                                                    "directory it writes")])
        target = caption_device(device)
        return build_pipeline(spec_obj, registry, device=target, source=str(path)).to(target).eval()
    from .weights import from_pretrained

    return from_pretrained(run, host=host, device=caption_device(device))


def caption_role(pipeline: Any, role: str | None, modality: str) -> str:
    """The encoder role that embeds the items: ``role`` when given; else the condition role of the spec's first
    ``core.caption`` objective when its encoder takes ``modality``; else the role named ``modality``; else the one
    role whose encoder takes ``modality``. An encoder whose modality is ``"any"`` takes every modality.

    Raises:
        ClError: the role is not the run's, takes another modality, or no single role takes ``modality``.
    """
    def takes(r: str) -> bool:
        return getattr(pipeline.encoder(r), "modality", "any") in (modality, "any")

    described = ", ".join(f"{r} ({getattr(pipeline.encoder(r), 'modality', 'any')})" for r in pipeline.roles)
    if role is not None:
        if role not in pipeline.encoders:
            raise ClError(f"--role {role}: the run has no encoder role {role!r}; its roles: {described or 'none'}")
        if not takes(role):
            raise ClError(f"--role {role}: its encoder takes {pipeline.encoder(role).modality} items, and cl caption "
                          f"reads {modality} files; the run's roles: {described}")
        return role
    conditions: list[str] = [str(ref.params.condition) for ref in pipeline.spec.objective if ref.type == "core.caption"]
    candidates = [r for r in conditions[:1] if r in pipeline.encoders and takes(r)]
    candidates += [modality] if modality in pipeline.encoders and takes(modality) else []
    if not candidates:
        typed = [r for r in pipeline.roles if getattr(pipeline.encoder(r), "modality", "any") == modality]
        candidates = typed if len(typed) == 1 else []
    if not candidates:
        raise ClError(f"which role embeds the {modality} files? give --role ROLE; the run's roles (modality): "
                      f"{described or 'none'}")
    return candidates[0]


# -- another decoder ----------------------------------------------------------------------------------------------


def tower_digest(module: Any) -> str:
    """SHA-256 (hex) of a module's floating-point weights and buffers, in state-dict order: each tensor's dtype,
    shape and bytes, on the CPU. Names are left out, so a tower wrapped by ``core.from-run`` (its keys under
    ``encoder.``) digests as the tower of its source run. Two towers with one digest embed identically: they are one
    space's tower."""
    import torch

    h = hashlib.sha256()
    for value in module.state_dict().values():
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            continue
        t = value.detach().cpu().contiguous()
        h.update(f"{t.dtype}{list(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def shared_towers(a: Any, b: Any) -> list[tuple[str, str]]:
    """``(role in a, role in b)`` of the towers of pipelines ``a`` and ``b`` whose weights are identical."""
    digests = {role: tower_digest(a.encoder(role)) for role in a.roles}
    theirs = {role: tower_digest(b.encoder(role)) for role in b.roles}
    return [(ra, rb) for ra, da in digests.items() for rb, db in theirs.items() if da == db]


#: what ``--decoder iterative`` means: the decoder table put over RUN's towers
ITERATIVE = {"type": "iterative.magic"}


def with_decoder(pipeline: Any, role: str, decoder: str, overrides: Sequence[tuple[str, Any]], run: str,
                 device: str, host: Any):
    """``pipeline`` with the decoder ``--decoder`` names for captioning the items of ``role``:

    * ``iterative``, or a spec file: that decoder table (``--decoder-set`` applied) built over the run's towers;
    * a decoder run (folder or Hub id): its pipeline, with ``pipeline``'s tower of ``role`` added, after checking
      that the two share a tower (module docstring).

    Raises:
        SpecError: a bad decoder table. ClError: a run with no decoder, or no tower shared with ``pipeline``.
    """
    from .spec import structure_spec

    path = Path(decoder)
    if decoder == "iterative" or path.suffix == ".toml":
        table = dict(ITERATIVE) if decoder == "iterative" else _decoder_table(path)
        for key, value in overrides:
            table[key] = value
        source = f"--decoder {decoder}"
        registry = host.registry()
        ref = structure_spec({"format": 1, "decoder": table}, registry, source=source).decoder
        from .build import BuildContext, _build
        from .components import Decoder

        ctx = BuildContext(encoders=dict(pipeline.encoders.items()), registry=registry, path="decoder", source=source)
        built = _build(registry, ref, ctx, Decoder)
        pipeline.decoder = built.to(caption_device(device)).eval()
        return pipeline
    if overrides:
        raise ClError("--decoder-set applies to --decoder iterative or a spec file, not to a trained decoder run")
    other = caption_pipeline(decoder, device, host)
    if other.decoder is None:
        raise ClError(f"--decoder {decoder}: it has no [decoder] to caption with")
    shared = shared_towers(other, pipeline)
    if not shared:
        mine = ", ".join(f"{r} {tower_digest(other.encoder(r))[:12]}" for r in other.roles) or "none"
        theirs = ", ".join(f"{r} {tower_digest(pipeline.encoder(r))[:12]}" for r in pipeline.roles) or "none"
        raise ClError(f"--decoder {decoder} was trained in another space than {run}: no tower of one is a tower of the "
                      f"other (decoder's towers: {mine}; {run}'s: {theirs}), so {run}'s {role!r} embeddings would "
                      "decode into nonsense. Use a decoder trained on the model RUN was bound to (its frozen towers "
                      "are RUN's).")
    other.encoders[role] = pipeline.encoder(role)
    return other


def _decoder_table(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ClError(f"--decoder {path}: cannot read it as a TOML spec: {exc}") from None
    table = data.get("decoder")
    if not isinstance(table, dict):
        raise ClError(f"--decoder {path}: the spec has no [decoder] table")
    return dict(table)
