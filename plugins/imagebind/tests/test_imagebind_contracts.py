"""The core contract kit (:mod:`cl_core.testing`) on cl-imagebind's datasets ``imagebind.emoji`` and
``imagebind.audio-pairs`` and its evaluator ``imagebind.bind``; the encoder ``imagebind.audio`` has its contract
class in test_audio_tower.py. Offline and in seconds: conftest's stand-ins speak and draw for ``imagebind.emoji``,
so each dataset here is built through its registered factory without espeak-ng."""

from __future__ import annotations

import pytest
import torch

from cl_core.build import build_pipeline
from cl_core.plugins import PluginHost
from cl_core.spec import load_spec
from cl_core.testing import DatasetContract, EvaluatorContract
from cl_datasets.testing import emoji_fixture_paths
from cl_imagebind.pairs_params import AudioPairsParams
from cl_imagebind.params import BindParams, EmojiBindParams

#: the plugins a tiny ImageBind pipeline is built from (the core's components come with any host)
PLUGINS = ["imagebind", "clip", "datasets"]

#: a frozen text tower beside BIND_SPEC's towers, so the table has an emergent column (audio -> text)
TEXT_TOWER = {"type": "clip.text-transformer", "context_length": 12, "width": 32, "layers": 1, "embed_dim": 16,
              "freeze": True}


@pytest.mark.usefixtures("fake_media")
class TestEmojiBindContract(DatasetContract):
    name = "imagebind.emoji"

    @pytest.fixture
    def params(self):
        return EmojiBindParams(**emoji_fixture_paths(), image_size=16, holdout=0.25, voices=3, heldout_voices=1,
                               lineart_size=16)

    def test_batches_of_one_pair_type_carry_exactly_its_roles(self, component):
        train = component.splits()["train"]
        for group, name in enumerate(train.group_names):
            rows = [int(i) for i in (train.groups == group).nonzero()[0][:3]]
            assert set(train.get(rows)) == set(name.split("-")), name


class TestAudioPairsContract(DatasetContract):
    name = "imagebind.audio-pairs"

    @pytest.fixture
    def params(self, pairs_folder):
        # one of the three labels held out: both splits are checked
        return AudioPairsParams(pairs=str(pairs_folder / "pairs.jsonl"), image_size=8, holdout=0.34)

    def test_both_splits_are_built(self, component):
        assert {name: len(s) for name, s in component.splits().items()} == {"train": 2, "heldout": 1}


@pytest.mark.usefixtures("fake_media")
class TestBindContract(EvaluatorContract):
    name = "imagebind.bind"

    @pytest.fixture
    def params(self):
        return BindParams(ks=(1, 5), examples=2)

    @pytest.fixture
    def pipeline(self, bind_spec):
        """The untrained ImageBind pipeline of conftest's ``BIND_SPEC`` with a frozen text tower added, and its
        ``imagebind.emoji`` data (evaluation splits ``voices`` and ``heldout``)."""
        registry = PluginHost(only=PLUGINS, strict=True).registry()
        spec = load_spec(bind_spec("contract"), registry, overrides=[("encoders.text", TEXT_TOWER)])
        torch.manual_seed(0)
        return build_pipeline(spec, registry)

    def test_reports_every_ordered_pair_and_the_emergent_ratios(self, component, pipeline, dataset, tmp_path):
        results = component.evaluate(pipeline, dataset, self._ctx(tmp_path / "plots"))
        roles = ("image", "text", "audio", "lineart")
        for split in ("voices", "heldout"):
            for q in roles:
                for g in roles:
                    if q != g:
                        assert 0.0 <= results[f"bind/{split}/{q}2{g}@5"] <= 1.0
            assert {f"bind/{split}/audio/emergent_ratio", f"bind/{split}/lineart/emergent_ratio"} <= set(results)
        written = sorted(p.name for p in (tmp_path / "plots").iterdir())
        assert written == ["bind-heldout-examples.txt", "bind-heldout-similarity.png", "bind-voices-examples.txt",
                           "bind-voices-similarity.png"]
