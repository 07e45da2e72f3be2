"""The core contract kit (cl_core.testing) run against both datasets."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from cl_core.testing import DatasetContract
from cl_datasets.params import ImageCaptionParams
from cl_datasets.testing import emoji_fixture_params


class TestEmojiContract(DatasetContract):
    name = "datasets.emoji"

    @pytest.fixture
    def params(self):
        return emoji_fixture_params(image_size=16)


class TestImageCaptionContract(DatasetContract):
    name = "datasets.image-caption"

    @pytest.fixture
    def params(self, tmp_path):
        for i in range(6):
            Image.new("RGB", (20, 10 + i), (40 * i, 0, 0)).save(tmp_path / f"{i}.png")
        captions = tmp_path / "captions.jsonl"
        captions.write_text("".join(json.dumps({"image": f"{i}.png", "caption": f"image {i}"}) + "\n"
                                    for i in range(6)), encoding="utf-8")
        return ImageCaptionParams(images_dir=str(tmp_path), captions=str(captions), image_size=16, holdout=0.34)
