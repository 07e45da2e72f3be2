"""datasets.image-caption: reading JSONL/CSV, verifying every image, reporting bad rows and files, splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cl_core.errors import DataError
from cl_datasets.image_caption import build_image_caption
from cl_datasets.params import ImageCaptionParams

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}


def _images(folder: Path, n_per_colour: int = 4) -> list[tuple[str, str]]:
    """Write small PNG/JPEG images; returns (relative path, colour) pairs."""
    out = []
    for colour, rgb in COLOURS.items():
        for i in range(n_per_colour):
            rel = f"{colour}/{i}.{'png' if i % 2 else 'jpg'}"
            (folder / colour).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (40 + 10 * i, 30), rgb).save(folder / rel)
            out.append((rel, colour))
    return out


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def _params(images: Path, captions: Path, **kw) -> ImageCaptionParams:
    return ImageCaptionParams(images_dir=str(images), captions=str(captions), image_size=32, **kw)


def test_labelled_jsonl_splits_by_label(tmp_path):
    imgs = tmp_path / "imgs"
    rows = [{"image": rel, "caption": f"a {c} square number {i}", "label": c}
            for i, (rel, c) in enumerate(_images(imgs))]
    ds = build_image_caption(_params(imgs, _jsonl(tmp_path / "c.jsonl", rows), holdout=0.34))
    train, held = ds.splits()["train"], ds.splits()["heldout"]
    assert len(train) + len(held) == 12
    assert len(held.class_names) == 1 and len(train.class_names) == 2  # round(0.34 * 3) labels held out
    assert not set(train.class_names) & set(held.class_names)
    for split in (train, held):
        batch = split.get(range(len(split)))
        for im, text, label in zip(batch["image"], batch["text"], split.labels):
            colour = split.class_names[label]
            assert colour in text
            assert im.size == (32, 32) and im.mode == "RGB"
            centre = np.asarray(im)[16, 16]
            assert np.abs(centre.astype(int) - COLOURS[colour]).max() < 40  # the right image behind the row


def test_csv_without_labels_splits_by_image_and_rows_of_an_image_share_a_label(tmp_path):
    imgs = tmp_path / "imgs"
    pairs = _images(imgs)
    lines = ["image,caption"] + [f'{rel},"{c} one"' for rel, c in pairs] + [f"{rel},{c} two" for rel, c in pairs]
    path = tmp_path / "c.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ds = build_image_caption(_params(imgs, path, holdout=0.25))
    train, held = ds.splits()["train"], ds.splits()["heldout"]
    assert train.class_names is None and held.class_names is None
    train_imgs, held_imgs = set(train.meta["image"].tolist()), set(held.meta["image"].tolist())
    assert not train_imgs & held_imgs and len(held_imgs) == 3 and len(train) + len(held) == 24
    for split in (train, held):
        for img in set(split.meta["image"].tolist()):
            labels = {int(split.labels[i]) for i in range(len(split)) if split.meta["image"][i] == img}
            assert len(labels) == 1
        assert len(set(split.labels.tolist())) == len(set(split.meta["image"].tolist()))


def test_split_is_seeded(tmp_path):
    imgs = tmp_path / "imgs"
    rows = [{"image": rel, "caption": f"{c} {i}"} for i, (rel, c) in enumerate(_images(imgs, 6))]
    path = _jsonl(tmp_path / "c.jsonl", rows)
    held = lambda seed: set(build_image_caption(_params(imgs, path, split_seed=seed)).splits()["heldout"].texts)
    assert held(0) == held(0) != held(1)


def test_corrupt_and_missing_images_are_named_or_skipped(tmp_path):
    imgs = tmp_path / "imgs"
    rows = [{"image": rel, "caption": f"{c} {i}"} for i, (rel, c) in enumerate(_images(imgs))]
    corrupt = imgs / "red" / "1.png"
    corrupt.write_bytes(corrupt.read_bytes()[:60])  # truncated PNG
    (imgs / "green" / "junk.jpg").write_bytes(b"this is not an image")
    rows += [{"image": "blue/missing.png", "caption": "gone"}, {"image": "green/junk.jpg", "caption": "junk"}]
    path = _jsonl(tmp_path / "c.jsonl", rows)
    with pytest.raises(DataError) as err:
        build_image_caption(_params(imgs, path))
    message = str(err.value)
    assert str(corrupt) in message and str(imgs / "blue" / "missing.png") in message
    assert str(imgs / "green" / "junk.jpg") in message
    assert "3 missing or unreadable image(s)" in message and "skip_bad" in message
    assert f"{path}:13" in message  # the row that first uses the missing file
    ds = build_image_caption(_params(imgs, path, skip_bad=True))
    assert ds.skipped == ds.skipped_images == 3 and ds.skipped_rows == 0
    texts = [t for s in ds.splits().values() for t in s.texts]
    assert len(texts) == 11 and "gone" not in texts and "junk" not in texts


def test_bad_rows_are_located_by_file_and_line(tmp_path):
    imgs = tmp_path / "imgs"
    (rel, c), *_ = _images(imgs)
    path = _jsonl(tmp_path / "c.jsonl", [
        {"image": rel, "caption": "fine"},
        {"image": rel, "caption": "also fine"},
        '{"image": "x.png", "caption": ',  # line 3: invalid JSON
        {"image": rel},  # line 4: no caption
        {"image": rel, "caption": "   "},  # line 5: empty caption
        "[1, 2]",  # line 6: not an object
        {"image": rel, "caption": "ok again"},
    ])
    with pytest.raises(DataError) as err:
        build_image_caption(_params(imgs, path))
    message = str(err.value)
    expected = ((3, "invalid JSON"), (4, "missing 'caption'"), (5, "empty caption"), (6, "expected a JSON object"))
    for line, what in expected:
        assert f"{path}:{line}: {what}" in message
    assert f"{path}:1:" not in message and "4 malformed row(s)" in message
    ds = build_image_caption(_params(imgs, path, skip_bad=True, holdout=0.0))
    assert ds.skipped_rows == 4 and ds.skipped == 4
    assert ds.splits()["train"].texts == ["fine", "also fine", "ok again"]


def test_csv_header_and_label_problems(tmp_path):
    imgs = tmp_path / "imgs"
    (rel, c), *_ = _images(imgs)
    no_caption = tmp_path / "a.csv"
    no_caption.write_text(f"image,text\n{rel},hello\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{no_caption}:1: header lacks column\(s\) 'caption'"):
        build_image_caption(_params(imgs, no_caption))
    partial = tmp_path / "b.csv"
    partial.write_text(f"image,caption,label\n{rel},hello,x\n{rel},there,\n{rel},too,many,cells\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        build_image_caption(_params(imgs, partial))
    assert f"{partial}:3: missing 'label'" in str(err.value) and f"{partial}:4: 1 more cell(s)" in str(err.value)


def test_more_than_twenty_problems_are_counted(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    path = _jsonl(tmp_path / "c.jsonl", [{"image": f"m{i}.png", "caption": "x"} for i in range(25)])
    with pytest.raises(DataError) as err:
        build_image_caption(_params(imgs, path))
    assert "... and 5 more" in str(err.value)
    with pytest.raises(DataError, match="no usable rows"):
        build_image_caption(_params(imgs, path, skip_bad=True))


def test_transparency_becomes_white_and_fit_modes(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    im = Image.new("RGBA", (80, 20), (0, 0, 0, 0))  # transparent black, wide
    im.paste((0, 0, 255, 255), (30, 0, 50, 20))  # an opaque blue bar in the middle
    im.save(imgs / "t.png")
    path = _jsonl(tmp_path / "c.jsonl", [{"image": "t.png", "caption": "blue bar"}])
    pad = np.asarray(build_image_caption(_params(imgs, path, holdout=0.0)).splits()["train"].get([0])["image"][0])
    assert pad[0, 0].tolist() == [255, 255, 255] and pad[16, 1].tolist() == [255, 255, 255]
    assert pad[16, 16].tolist()[2] > 200 and pad[16, 16].tolist()[0] < 60
    crop = np.asarray(build_image_caption(_params(imgs, path, holdout=0.0, fit="crop")).splits()["train"]
                      .get([0])["image"][0])
    assert (crop[:, 8:24, 2] > 200).all() and (crop[:, 8:24, 0] < 60).all()  # bar fills the height


def test_params_require_existing_paths(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        ImageCaptionParams(images_dir=str(tmp_path / "nope"), captions=str(tmp_path))
    with pytest.raises(ValueError, match="expected a file"):
        ImageCaptionParams(images_dir=str(tmp_path), captions=str(tmp_path))


def test_unsupported_captions_suffix(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match="unsupported captions file type"):
        build_image_caption(_params(tmp_path, path))
