"""Zero-shot and retrieval evaluators on hand-built cases whose answers are computed by hand."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from cl_core.build import BuildContext
from cl_core.components import Dataset, DataSource, EvalContext
from cl_core.errors import DataError, EvaluationWarning
from cl_clip import params as P
from cl_clip.ranking import hit_rate, ranks
from cl_clip.retrieval import RetrievalEvaluator, build_retrieval
from cl_clip.zero_shot import ZeroShotEvaluator, build_zero_shot


def image(i: int) -> np.ndarray:
    """A tiny uint8 image whose first pixel encodes its id (the fake encoder reads it back)."""
    a = np.full((6, 6, 3), 255, dtype=np.uint8)
    a[0, 0, 0] = i
    return a


class FakePipeline:
    """Duck-typed pipeline: images map to ``image_vecs[id]``, texts to ``text_vecs[text]``."""

    def __init__(self, image_vecs: Sequence[Sequence[float]], text_vecs: dict[str, Sequence[float]]):
        self.image_vecs = torch.tensor(image_vecs, dtype=torch.float32)
        self.text_vecs = {k: torch.tensor(v, dtype=torch.float32) for k, v in text_vecs.items()}
        self.calls: list[tuple[str, int, int]] = []

    def embed(self, role: str, items, *, batch_size: int = 256) -> torch.Tensor:
        self.calls.append((role, len(items), batch_size))
        if role == "image":
            return self.image_vecs[[int(np.asarray(it)[0, 0, 0]) for it in items]]
        return torch.stack([self.text_vecs[t] for t in items])

    def scorer_for(self, query_role: str, candidate_role: str):
        return None  # no scorer trained these roles: probabilities use CLIP's scale of 100


class Source(DataSource):
    def __init__(self, images, texts, labels, class_names):
        self.fields = ("image", "text")
        self._images, self._texts = list(images), list(texts)
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.class_names = class_names

    def __len__(self) -> int:
        return len(self._images)

    def get(self, indices):
        return {"image": [self._images[i] for i in indices], "text": [self._texts[i] for i in indices]}


class Data(Dataset):
    def __init__(self, **splits: DataSource):
        self._splits = splits

    def splits(self):
        return self._splits


CTX = EvalContext(device=torch.device("cpu"), plots_dir=None, batch_size=2)


# -- ranking ------------------------------------------------------------------------------------------
def test_ranks_count_ties_against_the_model():
    scores = torch.tensor([[0.9, 0.5, 0.1], [0.3, 0.3, 0.3], [0.2, 0.8, 0.8]])
    correct = torch.tensor([[True, False, False], [False, True, False], [False, False, True]])
    assert ranks(scores, correct).tolist() == [1, 3, 2]
    assert hit_rate(ranks(scores, correct), 1) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="no correct candidate"):
        ranks(scores, torch.zeros(3, 3, dtype=torch.bool))


# -- zero-shot ----------------------------------------------------------------------------------------
def test_prompt_ensemble_is_normalised_mean_of_normalised_embeddings():
    pipe = FakePipeline([[1, 0, 0]], {"a cat": [10, 0, 0], "b cat": [0, 1, 0], "a dog": [0, 0, 2], "b dog": [0, 0, 3]})
    zs = ZeroShotEvaluator(P.ZeroShotParams(prompts=("a {}", "b {}")))
    w = zs.class_embeddings(pipe, ["cat", "dog"])
    s = 1 / math.sqrt(2)
    torch.testing.assert_close(w, torch.tensor([[s, s, 0.0], [0.0, 0.0, 1.0]]))


def test_class_descriptions_join_the_prompt_average():
    # cat: name prompts [1,0,0] (x2 templates) + description "cat, pet" prompts [0,1,0] (x2) -> (2,2,0)/|.|;
    # dog has no description: its name alone
    text = {"a cat": [3, 0, 0], "b cat": [1, 0, 0], "a cat, pet": [0, 5, 0], "b cat, pet": [0, 1, 0],
            "a dog": [0, 0, 2], "b dog": [0, 0, 1]}
    zs = ZeroShotEvaluator(P.ZeroShotParams(prompts=("a {}", "b {}"), descriptions=True))
    w = zs.class_embeddings(FakePipeline([[1, 0, 0]], text), ["cat", "dog"], descriptions=[("cat, pet",), ()])
    s = 1 / math.sqrt(2)
    torch.testing.assert_close(w, torch.tensor([[s, s, 0.0], [0.0, 0.0, 1.0]]))


def test_zero_shot_descriptions_change_the_ranking_and_names_are_kept_on_record():
    # The names point the wrong way; with the (unit-normalised) descriptions, class x averages
    # (0,1) + (1,0) + (1,0) -> along (2,1) and class y along (1,2), so both images are classified right.
    text = {"x": [0, 1], "y": [1, 0], "x, first": [4, 0], "x, one": [9, 0], "y, second": [0, 4], "y, two": [0, 1]}

    class Described(Source):
        class_descriptions = [("x, first", "x, one"), ("y, second", "y, two")]

    params = P.ZeroShotParams(prompts=("{}",), descriptions=True, top_k=(1,))
    src = Described([image(0), image(1)], ["x", "y"], [0, 1], ["x", "y"])
    m = ZeroShotEvaluator(params).evaluate(FakePipeline([[1, 0], [0, 1]], text), Data(test=src), CTX)
    assert m["zero-shot/test/top1"] == pytest.approx(1.0)
    assert m["zero-shot/test/names/top1"] == pytest.approx(0.0)  # names alone: both wrong
    # Data without descriptions: a warning, names only, and no names/ keys.
    plain = Source([image(0), image(1)], ["x", "y"], [0, 1], ["x", "y"])
    with pytest.warns(UserWarning, match="no class_descriptions"):
        m2 = ZeroShotEvaluator(params).evaluate(FakePipeline([[1, 0], [0, 1]], text), Data(test=plain), CTX)
    assert m2["zero-shot/test/top1"] == pytest.approx(0.0) and not any("/names/" in k for k in m2)


def test_zero_shot_top1_top5_and_chance_by_hand():
    # 6 classes on the axes of R^6 (one template), images point at known classes
    names = [f"c{i}" for i in range(6)]
    eye = torch.eye(6)
    text = {f"{n}": eye[i].tolist() for i, n in enumerate(names)}
    img = [
        eye[0] + 0.5 * eye[1],  # label 0 -> top1 right
        eye[2] + 0.1 * eye[1],  # label 1 -> rank 2
        eye[0] + eye[3] + eye[4] + eye[5] + eye[1] + 0.9 * eye[2],  # label 2 -> rank 6 (>5)
        eye[3],  # label 3 -> right
    ]
    pipe = FakePipeline([v.tolist() for v in img], text)
    src = Source([image(i) for i in range(4)], ["x"] * 4, [0, 1, 2, 3], names)
    zs = ZeroShotEvaluator(P.ZeroShotParams(prompts=("{}",), classes="all"))
    m = zs.evaluate(pipe, Data(train=src, test=src), CTX)
    assert set(m) == {"zero-shot/test/top1", "zero-shot/test/top5", "zero-shot/test/balanced_top1",
                      "zero-shot/test/chance"}
    assert m["zero-shot/test/top1"] == pytest.approx(2 / 4)
    assert m["zero-shot/test/top5"] == pytest.approx(3 / 4)
    assert m["zero-shot/test/chance"] == pytest.approx(1 / 6)
    assert m["zero-shot/test/balanced_top1"] == pytest.approx(2 / 4)
    # "split" candidates: only the 4 labels present compete (class 4, 5 are not candidates)
    zs_split = ZeroShotEvaluator(P.ZeroShotParams(prompts=("{}",)))
    with pytest.warns(EvaluationWarning, match=r"split 'test': K = 5 not reported: with 4 candidates"):
        m2 = zs_split.evaluate(pipe, Data(test=src), CTX)
    assert m2["zero-shot/test/chance"] == pytest.approx(1 / 4)
    assert m2["zero-shot/test/top1"] == pytest.approx(2 / 4)
    # top5 of 4 candidates would be 1 for any model: left out
    assert "zero-shot/test/top5" not in m2
    # embedding calls honour ctx.batch_size, and "train" is not evaluated by default
    assert all(bs == 2 for _, _, bs in pipe.calls)


def test_zero_shot_balanced_accuracy_weights_classes_equally():
    names = ["a", "b"]
    pipe = FakePipeline([[1, 0], [1, 0], [1, 0], [1, 0]], {"a": [1, 0], "b": [0, 1]})
    src = Source([image(i) for i in range(4)], ["x"] * 4, [0, 0, 0, 1], names)
    m = ZeroShotEvaluator(P.ZeroShotParams(prompts=("{}",))).evaluate(pipe, Data(val=src), CTX)
    assert m["zero-shot/val/top1"] == pytest.approx(3 / 4)
    assert m["zero-shot/val/balanced_top1"] == pytest.approx(0.5)


def test_zero_shot_writes_example_plot(tmp_path):
    names = ["cat", "dog", "car"]
    eye = torch.eye(3)
    pipe = FakePipeline(eye.tolist(), {f"an emoji of {n}": eye[i].tolist() for i, n in enumerate(names)})
    src = Source([image(i) for i in range(3)], ["x"] * 3, [0, 1, 2], names)
    ctx = EvalContext(device=torch.device("cpu"), plots_dir=tmp_path / "plots", batch_size=8)
    ZeroShotEvaluator(P.ZeroShotParams(prompts=("an emoji of {}",), examples=2)).evaluate(pipe, Data(test=src), ctx)
    png = tmp_path / "plots" / "zero-shot-test.png"
    assert png.is_file() and png.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_zero_shot_needs_labels_when_split_requested():
    src = Source([image(0)], ["x"], None, None)
    pipe = FakePipeline([[1.0]], {})
    with pytest.raises(DataError, match="no labels"):
        ZeroShotEvaluator(P.ZeroShotParams(splits=("test",))).evaluate(pipe, Data(test=src), CTX)
    with pytest.warns(UserWarning, match="skipped"):
        assert ZeroShotEvaluator(P.ZeroShotParams()).evaluate(pipe, Data(test=src), CTX) == {}
    with pytest.raises(DataError, match="not found"):
        ZeroShotEvaluator(P.ZeroShotParams(splits=("nope",))).evaluate(pipe, Data(test=src), CTX)


def test_evaluator_factories_check_roles():
    ctx = BuildContext(spec=None, encoders={"image": object(), "caption": object()})
    with pytest.raises(ValueError, match="no encoder for role 'text'"):
        build_zero_shot(P.ZeroShotParams(), ctx)
    assert isinstance(build_retrieval(P.RetrievalParams(text_role="caption"), ctx), RetrievalEvaluator)


# -- retrieval ----------------------------------------------------------------------------------------
def _retrieval_case(labels):
    images = [[1, 0], [0, 1], [1, 1]]
    texts = {"t0": [1, 0.1], "t1": [1, 0], "t2": [0, 1]}
    pipe = FakePipeline(images, texts)
    src = Source([image(i) for i in range(3)], ["t0", "t1", "t2"], labels, None)
    return pipe, Data(test=src)


def test_retrieval_pairs_by_hand():
    # i2t: image 0 -> t1 beats t0 (rank 2); image 1 -> t2, t0 beat t1 (rank 3);
    #      image 2 -> t0 beats t2 and t1 ties it (rank 3, ties count against)
    # t2i: t0 -> image 0 best (1); t1 -> image 0 and 2 beat image 1 (3); t2 -> image 1 beats image 2 (2)
    pipe, data = _retrieval_case(labels=None)
    with pytest.warns(EvaluationWarning, match="K = 3 not reported: with 3 candidates"):
        m = RetrievalEvaluator(P.RetrievalParams(ks=(1, 2, 3))).evaluate(pipe, data, CTX)
    assert m["retrieval/test/i2t@1"] == 0.0
    assert m["retrieval/test/i2t@2"] == pytest.approx(1 / 3)
    assert "retrieval/test/i2t@3" not in m and "retrieval/test/t2i@3" not in m  # 3 of 3: a hit for any model
    assert m["retrieval/test/i2t_mean_rank"] == pytest.approx(8 / 3)
    assert m["retrieval/test/i2t_median_rank"] == 3.0
    assert m["retrieval/test/t2i@1"] == pytest.approx(1 / 3)
    assert m["retrieval/test/t2i@2"] == pytest.approx(2 / 3)
    assert m["retrieval/test/t2i_mean_rank"] == pytest.approx(2.0)


def test_retrieval_label_matching_is_hit_at_k():
    # labels [0, 0, 1]: image 0 is right with t0 or t1 (t1 is best: rank 1); image 1 with t0/t1
    # (best t0 at 0.0995, t2 beats it: rank 2); image 2 only with t2 (rank 3 as before)
    pipe, data = _retrieval_case(labels=[0, 0, 1])
    m = RetrievalEvaluator(P.RetrievalParams(ks=(1, 2))).evaluate(pipe, data, CTX)
    assert m["retrieval/test/i2t@1"] == pytest.approx(1 / 3)
    assert m["retrieval/test/i2t@2"] == pytest.approx(2 / 3)
    assert m["retrieval/test/i2t_mean_rank"] == pytest.approx(2.0)
    m_pair = RetrievalEvaluator(P.RetrievalParams(ks=(1,), match="pair")).evaluate(pipe, data, CTX)
    assert m_pair["retrieval/test/i2t@1"] == 0.0


def test_retrieval_collapsed_embeddings_score_zero_not_one():
    pipe = FakePipeline([[1.0, 0.0]] * 4, {f"t{i}": [1.0, 0.0] for i in range(4)})
    src = Source([image(i) for i in range(4)], [f"t{i}" for i in range(4)], None, None)
    m = RetrievalEvaluator(P.RetrievalParams(ks=(1,))).evaluate(pipe, Data(test=src), CTX)
    assert m["retrieval/test/i2t@1"] == 0.0 and m["retrieval/test/t2i@1"] == 0.0


# -- splits too small to say anything -----------------------------------------------------------------
def _evaluate_twice(evaluator, pipe, data) -> tuple[list[dict], list[str]]:
    """Two evaluations (as a run that evaluates every epoch does) under Python's default filter, which a
    user sees: the results and the messages of the warnings shown."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        results = [evaluator.evaluate(pipe, data, CTX) for _ in range(2)]
    return results, [str(w.message) for w in caught if issubclass(w.category, EvaluationWarning)]


def test_zero_shot_skips_a_split_with_a_single_class_and_warns_once():
    pipe = FakePipeline([[1, 0], [0, 1], [1, 1]], {"a": [1, 0], "b": [0, 1]})
    src = Source([image(i) for i in range(3)], ["x"] * 3, [0, 0, 0], ["a", "b"])
    results, shown = _evaluate_twice(ZeroShotEvaluator(P.ZeroShotParams(prompts=("{}",))), pipe, Data(heldout=src))
    assert results == [{}, {}]  # top1 = 1.0 for any model: nothing goes into the model card
    assert shown == ["zero-shot: split 'heldout' has 1 candidate class ('a'): every image would be classified "
                     "right, so its scores would say nothing; skipped"]
    # with every class of class_names a candidate, the same split is a real 2-way test (top5 left out)
    with pytest.warns(EvaluationWarning, match="K = 5 not reported: with 2 candidates"):
        m = ZeroShotEvaluator(P.ZeroShotParams(prompts=("{}",), classes="all")).evaluate(pipe, Data(heldout=src), CTX)
    assert set(m) == {"zero-shot/heldout/top1", "zero-shot/heldout/balanced_top1", "zero-shot/heldout/chance"}
    assert m["zero-shot/heldout/top1"] == pytest.approx(1 / 3)  # image 1 points at "b"; image 2 ties (counts against)


def test_zero_shot_without_labels_warns_as_an_evaluation_warning():
    src = Source([image(0)], ["x"], None, None)
    with pytest.warns(EvaluationWarning, match="^zero-shot: split 'test' has no labels or class names; skipped$"):
        assert ZeroShotEvaluator(P.ZeroShotParams()).evaluate(FakePipeline([[1.0]], {}), Data(test=src), CTX) == {}


def test_retrieval_skips_a_split_where_every_item_is_correct_and_warns_once():
    pipe, data = _retrieval_case(labels=[4, 4, 4])
    results, shown = _evaluate_twice(RetrievalEvaluator(P.RetrievalParams(ks=(1,))), pipe, data)
    assert results == [{}, {}]
    assert shown == ["retrieval: split 'test' has a single label (4) and match = \"label\": every query would find "
                     "a correct item first, so its scores would say nothing; skipped"]
    # matched by pair, the same three items are a real test: i2t@1 = 0 by hand (see test_retrieval_pairs_by_hand)
    m = RetrievalEvaluator(P.RetrievalParams(ks=(1,), match="pair")).evaluate(pipe, data, CTX)
    assert m["retrieval/test/i2t@1"] == 0.0
    one = Source([image(0)], ["t0"], None, None)
    with pytest.warns(EvaluationWarning, match="split 'one' has 1 item"):
        assert RetrievalEvaluator(P.RetrievalParams()).evaluate(pipe, Data(one=one), CTX) == {}


def test_retrieval_leaves_out_every_k_not_below_the_gallery_and_warns_once():
    pipe, data = _retrieval_case(labels=None)
    results, shown = _evaluate_twice(RetrievalEvaluator(P.RetrievalParams(ks=(1, 2, 5, 10))), pipe, data)
    assert results[0] == results[1]
    assert sorted(k for k in results[0] if "@" in k) == ["retrieval/test/i2t@1", "retrieval/test/i2t@2",
                                                          "retrieval/test/t2i@1", "retrieval/test/t2i@2"]
    assert results[0]["retrieval/test/t2i@2"] == pytest.approx(2 / 3)
    assert shown == ["retrieval: split 'test': K = 5, 10 not reported: with 3 candidates to rank, any model "
                     "would score 1"]
