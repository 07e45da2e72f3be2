"""datasets.emoji on the committed 40-concept slice: concepts, captions, styles and the held-out split."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest

from cl_core.components import Dataset, DataSource
from cl_core.errors import DataError
from cl_datasets.emoji import build_emoji
from cl_datasets.emoji_meta import captions_of, clean_keywords, codepoint_key
from cl_datasets.params import EmojiParams
from cl_datasets.testing import (
    FIXTURE_BOTH_STYLES,
    FIXTURE_CONCEPTS,
    emoji_fixture_dir,
    emoji_fixture_params,
    emoji_fixture_paths,
    emoji_fixture_table,
)

ALL_CAPTIONS = ("annotation", "tags", "openmoji_tags", "subgroup")


@pytest.fixture(scope="module")
def ds():
    return build_emoji(emoji_fixture_params())


def _annotations(split: DataSource) -> set[str]:
    return set(split.class_names)


def test_plugin_registers_both_datasets():
    from cl_core.plugins import PluginHost

    names = PluginHost().registry().names("dataset")
    assert "datasets.emoji" in names and "datasets.image-caption" in names


def test_plugin_params_and_testing_modules_import_neither_torch_nor_pillow():
    code = ("import sys, cl_datasets.plugin, cl_datasets.params, cl_datasets.testing, cl_datasets.splits;"
            "print(sorted(m for m in ('torch', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_spec_table_structures_into_params_and_bad_style_is_located():
    from cl_core.plugins import PluginHost
    from cl_core.spec import CONVERTER, DatasetRef
    from cl_core.spec.structure import Structurer

    registry = PluginHost().registry()
    s = Structurer(registry, CONVERTER)
    ok, ref = s.value(emoji_fixture_table(styles=["noto"], captions=["annotation", "tags"]), DatasetRef, "data")
    assert ok, s.problems
    assert ref.params.styles == ("noto",) and ref.params.captions == ("annotation", "tags")
    s = Structurer(registry, CONVERTER)
    ok, _ = s.value({"type": "datasets.emoji", "styles": ["openmoji", "twemoji"], "holdout": 1.0}, DatasetRef, "data")
    assert not ok
    paths = {p.path for p in s.problems}
    assert "data.styles[1]" in paths and "data.holdout" in paths


@pytest.mark.parametrize("bad", [
    {"holdout": 1.0}, {"holdout": -0.1}, {"styles": ()}, {"styles": ("noto", "noto")}, {"styles": ("twemoji",)},
    {"captions": ("title",)}, {"max_concepts": 1}, {"image_size": 4}, {"openmoji_json": "/no/such/file.json"},
])
def test_params_reject_bad_values(bad):
    with pytest.raises(ValueError):
        EmojiParams(**bad)


def test_builds_a_dataset_with_train_and_one_heldout_split_per_style(ds):
    assert isinstance(ds, Dataset)
    assert set(ds.splits()) == {"train", "heldout-openmoji", "heldout-noto"}
    for split in ds.splits().values():
        assert isinstance(split, DataSource) and split.fields == ("image", "text")
        assert split.labels.dtype == np.int64 and len(split.labels) == len(split)


def test_concepts_exclude_skin_tones_components_and_repeated_annotations(ds):
    hexcodes = [c.hexcode for c in ds.concepts]
    assert len(ds.concepts) == FIXTURE_CONCEPTS
    assert not any(m in h for h in hexcodes for m in ("1F3FB", "1F3FF"))  # skin-tone variants + component
    assert [c.hexcode for c in ds.concepts if c.annotation == "brain"] == ["1F9E0"]  # Unicode one kept, E319 dropped
    annotations = [c.annotation for c in ds.concepts]
    assert len(set(annotations)) == len(annotations)


def test_annotations_are_cleaned_lowercase(ds):
    annotations = {c.annotation for c in ds.concepts}
    assert {"flag: germany", "keycap: #", "woman technologist", "spouting-orca"} <= annotations
    assert all(a == a.lower() and a == a.strip() for a in annotations)
    assert clean_keywords(" Face,  GRIN ,face,, smile ") == "face, grin, smile"


def test_noto_is_matched_without_fe0f():
    assert codepoint_key("0023-FE0F-20E3") == codepoint_key("0023-fe0f-20e3") == "0023-20e3"
    ds = build_emoji(emoji_fixture_params(holdout=0.0))
    styles = {c.annotation: ds.concept_styles[c.hexcode] for c in ds.concepts}
    # openmoji "2708" (airplane) matches Noto "2708-fe0f.png"; extras exist in OpenMoji only
    assert styles["airplane"] == styles["keycap: #"] == styles["rainbow flag"] == ("openmoji", "noto")
    assert styles["goldfish"] == styles["narwhal"] == ("openmoji",)
    assert sum(len(s) == 2 for s in styles.values()) == FIXTURE_BOTH_STYLES


def test_split_is_concept_disjoint_and_covers_every_concept(ds):
    train = {c.hexcode for c in ds.train_concepts}
    held = {c.hexcode for c in ds.heldout_concepts}
    assert not train & held
    assert train | held == {c.hexcode for c in ds.concepts}
    assert len(held) == round(0.2 * FIXTURE_BOTH_STYLES) == 7
    assert all(ds.concept_styles[h] == ("openmoji", "noto") for h in held)  # only concepts with both styles
    train_split = ds.splits()["train"]
    assert not held & set(train_split.meta["concept"].tolist())


def test_heldout_text_never_appears_in_train_even_with_all_captions():
    ds = build_emoji(emoji_fixture_params(captions=ALL_CAPTIONS))
    held_names = {c.annotation for c in ds.heldout_concepts}
    assert held_names
    train = ds.splits()["train"]
    assert not held_names & set(train.texts)
    assert not held_names & set(train.class_names)


def test_split_is_deterministic_seeded_and_independent_of_record_order(tmp_path):
    a = build_emoji(emoji_fixture_params())
    b = build_emoji(emoji_fixture_params())
    assert a.splits()["heldout-noto"].class_names == b.splits()["heldout-noto"].class_names
    other = build_emoji(emoji_fixture_params(split_seed=1))
    assert _annotations(other.splits()["heldout-noto"]) != _annotations(a.splits()["heldout-noto"])
    records = json.loads((emoji_fixture_dir() / "openmoji.json").read_text(encoding="utf-8"))
    random.Random(3).shuffle(records)
    shuffled = tmp_path / "openmoji.json"
    shuffled.write_text(json.dumps(records), encoding="utf-8")
    c = build_emoji(emoji_fixture_params(openmoji_json=str(shuffled)))
    assert {x.hexcode for x in c.heldout_concepts} == {x.hexcode for x in a.heldout_concepts}


def test_heldout_splits_share_class_names_and_labels_index_them(ds):
    om, noto = ds.splits()["heldout-openmoji"], ds.splits()["heldout-noto"]
    assert om.class_names == noto.class_names == [c.annotation for c in ds.heldout_concepts]
    for split, style in ((om, "openmoji"), (noto, "noto")):
        assert split.labels.tolist() == list(range(len(split)))
        assert split.texts == [split.class_names[i] for i in split.labels]
        assert set(split.meta["style"].tolist()) == {style}
    assert om.meta["concept"].tolist() == noto.meta["concept"].tolist()


def test_class_descriptions_describe_each_class_and_stay_out_of_training():
    ds = build_emoji(emoji_fixture_params(descriptions=("annotation", "annotation_subgroup", "subgroup")))
    om, noto, train = ds.splits()["heldout-openmoji"], ds.splits()["heldout-noto"], ds.splits()["train"]
    assert om.class_descriptions == noto.class_descriptions
    assert len(om.class_descriptions) == len(om.class_names)
    assert len(train.class_descriptions) == len(train.class_names)
    for concept, described in zip(ds.heldout_concepts, om.class_descriptions):
        # the bare annotation is the class name already, so it is not repeated as a description
        assert described == (f"{concept.annotation}, {concept.subgroup}", concept.subgroup)
    held = {t for d in om.class_descriptions for t in d if "," in t}
    assert held and not held & set(train.texts)  # descriptions are classifier text, not training captions


def test_train_has_both_styles_and_labels_name_the_concept(ds):
    train = ds.splits()["train"]
    styles = train.meta["style"].tolist()
    n_train = len(ds.train_concepts)
    n_noto = sum("noto" in ds.concept_styles[c.hexcode] for c in ds.train_concepts)
    assert styles.count("openmoji") == n_train and styles.count("noto") == n_noto == n_train - 4
    by_hex = {c.hexcode: c for c in ds.concepts}
    assert train.class_names == [c.annotation for c in ds.train_concepts]
    for i in range(len(train)):
        name = train.class_names[train.labels[i]]
        assert name == by_hex[train.meta["concept"][i]].annotation == train.texts[i]


def test_images_are_rgb_squares_on_white_and_styles_differ(ds):
    train = ds.splits()["train"]
    batch = train.get(range(len(train)))
    assert len(batch["image"]) == len(batch["text"]) == len(train)
    for im in batch["image"]:
        assert im.mode == "RGB" and im.size == (64, 64)
        px = np.asarray(im)
        assert px[0, 0].tolist() == [255, 255, 255]  # transparent corner composited on white
        assert (px < 200).any()  # something was drawn
    om = ds.splits()["heldout-openmoji"].get([0])["image"][0]
    noto = ds.splits()["heldout-noto"].get([0])["image"][0]
    assert np.abs(np.asarray(om, dtype=int) - np.asarray(noto, dtype=int)).mean() > 10


def test_get_hands_out_copies_and_checks_indices(ds):
    split = ds.splits()["heldout-noto"]
    im = split.get([0])["image"][0]
    before = np.asarray(im).copy()
    im.paste((0, 0, 0), (0, 0, 64, 64))
    assert np.array_equal(np.asarray(split.get([0])["image"][0]), before)
    with pytest.raises(IndexError):
        split.get([len(split)])


def test_image_row_finds_every_image_in_the_shared_store(ds):
    assert not ds.images.flags.writeable, "every split reads this one store"
    train = ds.splits()["train"]
    for i in range(len(train)):
        row = ds.image_row(str(train.meta["concept"][i]), str(train.meta["style"][i]))
        assert row == train.image_index[i] and np.array_equal(ds.images[row], train.image_array(i))
    for style in ("openmoji", "noto"):
        held = ds.splits()[f"heldout-{style}"]
        for i, c in enumerate(ds.heldout_concepts):
            assert np.array_equal(ds.images[ds.image_row(c.hexcode, style)], held.image_array(i))


def test_image_row_of_a_missing_image_is_a_key_error_that_says_why(ds):
    only_openmoji = next(h for h, styles in ds.concept_styles.items() if styles == ("openmoji",))
    with pytest.raises(KeyError, match=rf"no 'noto' image of concept '{only_openmoji}' \(its styles: openmoji\)"):
        ds.image_row(only_openmoji, "noto")
    with pytest.raises(KeyError, match=r"no 'openmoji' image of concept 'FFFFF' \(no such concept\)"):
        ds.image_row("FFFFF", "openmoji")


def test_caption_kinds_expand_one_example_per_caption():
    ds = build_emoji(emoji_fixture_params(captions=ALL_CAPTIONS, holdout=0.0))
    train = ds.splits()["train"]
    grinning = [i for i in range(len(train)) if train.meta["concept"][i] == "1F600"]
    by_style: dict[str, list[str]] = {}
    for i in grinning:
        by_style.setdefault(str(train.meta["style"][i]), []).append(train.texts[i])
    expected = ["grinning face",
                "cheerful, cheery, face, grin, grinning, happy, laugh, nice, smile, smiling, teeth",
                "smile, happy", "face smiling"]
    assert by_style == {"openmoji": expected, "noto": expected}
    assert len({int(train.labels[i]) for i in grinning}) == 1
    expected_total = sum(len(captions_of(c, ALL_CAPTIONS)) * len(ds.concept_styles[c.hexcode])
                         for c in ds.train_concepts)
    assert len(train) == expected_total > 2 * FIXTURE_CONCEPTS


def test_max_concepts_keeps_a_seeded_subset():
    a = build_emoji(emoji_fixture_params(max_concepts=10))
    b = build_emoji(emoji_fixture_params(max_concepts=10))
    assert len(a.concepts) == 10
    assert [c.hexcode for c in a.concepts] == [c.hexcode for c in b.concepts]
    assert len(a.heldout_concepts) + len(a.train_concepts) == 10


def test_single_style_gives_one_heldout_split():
    om = build_emoji(emoji_fixture_params(styles=("openmoji",)))
    assert set(om.splits()) == {"train", "heldout-openmoji"}
    assert len(om.heldout_concepts) == round(0.2 * FIXTURE_CONCEPTS)  # every concept has the one style
    noto = build_emoji(emoji_fixture_params(styles=("noto",), openmoji_json=emoji_fixture_paths()["openmoji_json"]))
    assert set(noto.splits()) == {"train", "heldout-noto"}
    assert len(noto.concepts) == FIXTURE_BOTH_STYLES
    assert set(noto.splits()["train"].meta["style"].tolist()) == {"noto"}


def test_image_size_applies_to_both_styles():
    ds = build_emoji(emoji_fixture_params(image_size=32))
    for name in ("heldout-openmoji", "heldout-noto"):
        assert {im.size for im in ds.splits()[name].get(range(3))["image"]} == {(32, 32)}


def test_holdout_zero_trains_on_everything():
    ds = build_emoji(emoji_fixture_params(holdout=0.0))
    assert set(ds.splits()) == {"train"}
    assert len(ds.train_concepts) == FIXTURE_CONCEPTS


def _noto_copy(tmp_path):
    folder = tmp_path / "noto"
    shutil.copytree(emoji_fixture_paths()["noto_dir"], folder)
    return folder


def test_corrupt_noto_png_is_reported_or_skipped(tmp_path):
    folder = _noto_copy(tmp_path)
    bad = folder / "1f436.png"  # dog face
    bad.write_bytes(bad.read_bytes()[:100])  # truncated
    with pytest.raises(DataError) as err:
        build_emoji(emoji_fixture_params(noto_dir=str(folder)))
    assert str(bad) in str(err.value) and "skip_bad" in str(err.value)
    ds = build_emoji(emoji_fixture_params(noto_dir=str(folder), skip_bad=True))
    assert ds.skipped == 1 and str(bad) in ds.skipped_items[0]
    dog = next(c for c in ds.concepts if c.annotation == "dog face")
    assert ds.concept_styles[dog.hexcode] == ("openmoji",)
    assert dog in ds.train_concepts  # no longer in both styles, so never held out
    with pytest.raises(KeyError, match="its styles: openmoji"):
        ds.image_row(dog.hexcode, "noto")


def test_glyph_missing_from_the_font_is_reported_or_skipped(tmp_path):
    records = json.loads((emoji_fixture_dir() / "openmoji.json").read_text(encoding="utf-8"))
    records.append({"hexcode": "F0000", "group": "extras-openmoji", "subgroups": "x", "annotation": "nothing",
                    "tags": "", "openmoji_tags": "", "skintone": ""})
    path = tmp_path / "openmoji.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    with pytest.raises(DataError, match="F0000"):
        build_emoji(emoji_fixture_params(openmoji_json=str(path)))
    ds = build_emoji(emoji_fixture_params(openmoji_json=str(path), skip_bad=True))
    assert ds.skipped == 1 and "nothing" not in ds.splits()["train"].class_names


def test_malformed_metadata_is_a_data_error(tmp_path):
    path = tmp_path / "openmoji.json"
    path.write_text('{"not": "a list"}', encoding="utf-8")
    with pytest.raises(DataError, match="JSON list"):
        build_emoji(emoji_fixture_params(openmoji_json=str(path)))
    path.write_text("[{", encoding="utf-8")
    with pytest.raises(DataError, match=str(path)):
        build_emoji(emoji_fixture_params(openmoji_json=str(path)))


def test_combined_captions_and_templates():
    from cl_datasets.emoji_meta import Concept, captions_of, descriptions_of

    c = Concept(hexcode="1F600", annotation="grinning face", tags="face, grin", openmoji_tags="smile, grin",
                subgroup="face smiling", group="smileys-emotion")
    assert captions_of(c, ("annotation_tags", "annotation_subgroup")) == [
        "grinning face: face, grin, smile", "grinning face, face smiling"]
    assert captions_of(c, ("annotation",), ("{}", "an emoji of {}")) == ["grinning face", "an emoji of grinning face"]
    assert descriptions_of(c, ("annotation", "annotation_subgroup")) == ("grinning face, face smiling",)


def test_templated_captions_expand_training_examples():
    from cl_datasets.testing import emoji_fixture_params
    from cl_core.build import BuildContext
    from cl_datasets.emoji import build_emoji

    plain = build_emoji(emoji_fixture_params(image_size=16), BuildContext()).splits()["train"]
    templated = build_emoji(emoji_fixture_params(image_size=16, templates=("{}", "an emoji of {}")),
                            BuildContext()).splits()["train"]
    assert len(templated) == 2 * len(plain)
    texts = templated.get(range(len(templated)))["text"]
    assert sum(t.startswith("an emoji of ") for t in texts) == len(plain)


def test_bad_template_is_rejected():
    import pytest
    from cl_datasets.testing import emoji_fixture_params

    with pytest.raises(ValueError, match="exactly one"):
        emoji_fixture_params(templates=("no placeholder",))
