"""The npm fetch path, offline: safe tar extraction, missing/failing npm, and a fake npm end to end."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
import sys
import tarfile
from pathlib import Path

import attrs
import pytest

from cl_core.errors import DataError
from cl_datasets import fetch
from cl_datasets.emoji import build_emoji
from cl_datasets.params import EmojiParams
from cl_datasets.testing import emoji_fixture_paths


def _tar(path: Path, members: list[tuple[str, bytes | None, str | None]]) -> Path:
    """Write a .tgz; each member is (name, data) for a file or (name, None, target) for a symlink."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            if link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, link
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def _integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def test_extraction_copies_only_the_wanted_direct_children(tmp_path):
    tgz = _tar(tmp_path / "g.tgz", [
        ("package/README.md", b"readme", None),
        ("package/img/google/64/1f600.png", b"png-a", None),
        ("package/img/google/64/sub/x.png", b"deeper", None),
        ("package/img/google/128/1f600.png", b"big", None),
        ("package/img/google/64/notes.txt", b"txt", None),
    ])
    out = tmp_path / "out"
    assert fetch.extract_members(tgz, "package/img/google/64/", out, suffix=".png") == 1
    assert sorted(p.name for p in out.rglob("*")) == ["1f600.png"]
    assert (out / "1f600.png").read_bytes() == b"png-a"


@pytest.mark.parametrize("evil", [
    "package/img/google/64/../../../../../evil.png",
    "../evil.png",
    "/tmp/evil.png",
])
def test_extraction_refuses_path_traversal(tmp_path, evil):
    tgz = _tar(tmp_path / "evil.tgz", [("package/img/google/64/ok.png", b"ok", None), (evil, b"pwned", None)])
    work = tmp_path / "a" / "b" / "c" / "d" / "e"
    with pytest.raises(DataError, match="refusing") as err:
        fetch.extract_members(tgz, "package/img/google/64/", work / "out", suffix=".png")
    assert evil in str(err.value)
    assert not list(tmp_path.rglob("evil.png"))


def test_extraction_refuses_links_under_the_wanted_folder(tmp_path):
    tgz = _tar(tmp_path / "link.tgz", [("package/img/google/64/a.png", None, "/etc/passwd")])
    with pytest.raises(DataError, match="refusing"):
        fetch.extract_members(tgz, "package/img/google/64/", tmp_path / "out", suffix=".png")
    assert not (tmp_path / "out" / "a.png").exists()


def test_integrity_mismatch_is_a_data_error(tmp_path):
    tgz = _tar(tmp_path / "x.tgz", [("package/a", b"a", None)])
    fetch.check_integrity(tgz, _integrity(tgz))
    with pytest.raises(DataError, match="integrity"):
        fetch.check_integrity(tgz, fetch.OPENMOJI.integrity)


def test_missing_npm_says_what_to_install_and_which_params_to_set(tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("CL_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataError) as err:
        build_emoji(EmojiParams())
    message = str(err.value)
    assert "npm" in message and "openmoji_json" in message and "noto_dir" in message
    assert "openmoji@17.0.0" in message and "emoji-datasource-google@16.0.0" in message
    # only what is missing is asked for: Noto given -> only openmoji must be fetched
    with pytest.raises(DataError) as err:
        build_emoji(EmojiParams(noto_dir=emoji_fixture_paths()["noto_dir"]))
    assert "openmoji@17.0.0" in str(err.value) and "emoji-datasource-google" not in str(err.value).split("\n")[0]


# -- a fake `npm` that "downloads" tarballs made from the fixture ---------------------------------------

def _fake_npm(tmp_path: Path, monkeypatch, *, exit_code: int = 0) -> Path:
    """Put a fake npm first on PATH; it copies <name>-<version>.tgz from `registry/` into its cwd."""
    registry = tmp_path / "registry"
    registry.mkdir()
    fixture = Path(emoji_fixture_paths()["noto_dir"])
    _tar(registry / "openmoji-17.0.0.tgz", [
        ("package/package.json", b"{}", None),
        ("package/data/openmoji.json", Path(emoji_fixture_paths()["openmoji_json"]).read_bytes(), None),
    ])
    _tar(registry / "emoji-datasource-google-16.0.0.tgz",
         [(f"package/img/google/64/{p.name}", p.read_bytes(), None) for p in sorted(fixture.glob("*.png"))]
         + [("package/img/google/32/1f600.png", b"small", None)])
    packages = {
        key: attrs.evolve(pkg, integrity=_integrity(registry / f"{pkg.folder}.tgz"))
        for key, pkg in fetch.PACKAGES.items()
    }
    monkeypatch.setattr(fetch, "PACKAGES", packages)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    npm = bindir / "npm"
    npm.write_text(
        f"#!{sys.executable}\n"
        "import shutil, sys, os\n"
        f"open({str(tmp_path / 'calls.log')!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        f"if {exit_code}:\n"
        "    sys.stderr.write('npm ERR! code E404 not found\\n'); sys.exit(" + str(exit_code) + ")\n"
        "for spec in [a for a in sys.argv[2:] if not a.startswith('-')]:\n"
        "    name, version = spec.rsplit('@', 1)\n"
        f"    shutil.copy(os.path.join({str(registry)!r}, f'{{name}}-{{version}}.tgz'), os.getcwd())\n"
    )
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "calls.log"


def test_fetch_fills_the_cache_once_and_atomically(tmp_path, monkeypatch):
    calls = _fake_npm(tmp_path, monkeypatch)
    ds = build_emoji(EmojiParams(max_concepts=12))
    assert len(ds.concepts) == 12
    root = tmp_path / "cache" / "emoji"
    assert sorted(p.name for p in root.iterdir()) == ["emoji-datasource-google-16.0.0", "openmoji-17.0.0"]
    assert (root / "openmoji-17.0.0" / "openmoji.json").is_file()
    pngs = list((root / "emoji-datasource-google-16.0.0" / "64").glob("*.png"))
    assert len(pngs) == 36
    assert not list(root.rglob("*.tgz")) and not list(root.rglob("*32*"))
    lines = calls.read_text().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("pack openmoji@17.0.0 emoji-datasource-google@16.0.0 --silent --ignore-scripts --cache=")
    build_emoji(EmojiParams(max_concepts=12))  # second build: served from the cache, npm not called
    assert len(calls.read_text().splitlines()) == 1
    assert json.loads((root / "openmoji-17.0.0" / "openmoji.json").read_text(encoding="utf-8"))


def test_failed_npm_reports_stderr_and_leaves_no_cache(tmp_path, monkeypatch):
    _fake_npm(tmp_path, monkeypatch, exit_code=3)
    with pytest.raises(DataError) as err:
        build_emoji(EmojiParams())
    assert "`npm pack openmoji@17.0.0 emoji-datasource-google@16.0.0` failed (exit 3)" in str(err.value)
    assert "E404" in str(err.value)
    root = tmp_path / "cache" / "emoji"
    assert list(root.iterdir()) == []  # no half cache, no temp folder


def test_tampered_download_leaves_no_cache(tmp_path, monkeypatch):
    _fake_npm(tmp_path, monkeypatch)
    monkeypatch.setattr(fetch, "PACKAGES", dict(fetch.PACKAGES, noto=fetch.NOTO))  # real pin, fake tarball
    with pytest.raises(DataError, match="integrity"):
        build_emoji(EmojiParams())
    root = tmp_path / "cache" / "emoji"
    assert [p.name for p in root.iterdir()] == ["openmoji-17.0.0"]  # the good package may stay, Noto not
