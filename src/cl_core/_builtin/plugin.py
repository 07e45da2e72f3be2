"""Registration of the built-in ``core.*`` components (imports no torch: factories are lazy)."""

from __future__ import annotations

from ..hookspecs import hookimpl
from ..registry import ComponentInfo
from ..spec.model import AdamWParams
from . import composition_params as cp
from . import params as p

_B = "cl_core._builtin."


@hookimpl
def cl_scorers():
    yield ComponentInfo(name="core.cosine", params=p.CosineParams, factory=_B + "scorers:build_cosine",
                        summary="Cosine similarity times a (learnable, clamped) logit scale.")
    yield ComponentInfo(name="core.dot", params=p.DotParams, factory=_B + "scorers:build_dot",
                        summary="Dot product q . k (optional temperature).")
    yield ComponentInfo(name="core.neg-l1", params=p.NegL1Params, factory=_B + "scorers:build_neg_l1",
                        summary="Negative Manhattan distance -||q - k||_1.")
    yield ComponentInfo(name="core.neg-l2", params=p.NegL2Params, factory=_B + "scorers:build_neg_l2",
                        summary="Negative Euclidean distance -||q - k||_2 (finite gradient at 0).")
    yield ComponentInfo(name="core.neg-sq-l2", params=p.NegSqL2Params, factory=_B + "scorers:build_neg_sq_l2",
                        summary="Negative squared Euclidean distance -||q - k||^2.")
    yield ComponentInfo(name="core.bilinear", params=p.BilinearParams, factory=_B + "scorers:build_bilinear",
                        summary="Bilinear q^T A k with a learnable (optionally low-rank) A.")


@hookimpl
def cl_losses():
    yield ComponentInfo(name="core.clip", params=p.ClipLossParams, factory=_B + "losses:build_clip",
                        summary="CLIP symmetric cross-entropy over in-batch pairs.")
    yield ComponentInfo(name="core.info-nce", params=p.InfoNCEParams, factory=_B + "losses:build_info_nce",
                        summary="InfoNCE with in-batch (and hard-negative) candidates, one direction or symmetric.")
    yield ComponentInfo(name="core.siglip", params=p.SigLIPParams, factory=_B + "siglip:build_siglip",
                        summary="SigLIP pairwise sigmoid loss with a learnable bias.")
    yield ComponentInfo(name="core.supcon", params=p.SupConParams, factory=_B + "supcon:build_supcon",
                        summary="Supervised contrastive loss, L_out or L_in (NT-Xent without labels).")
    yield ComponentInfo(name="core.nt-xent", params=p.NTXentParams, factory=_B + "supcon:build_nt_xent",
                        summary="SimCLR's NT-Xent: each of 2B views against the others, its other view positive.")
    yield ComponentInfo(name="core.contrastive", params=p.ContrastiveParams, factory=_B + "margin:build_contrastive",
                        summary="Hadsell et al. pair loss: d^2 for positives, max(0, m - d)^2 for negatives.")
    yield ComponentInfo(name="core.contrastive-hinge", params=p.ContrastiveHingeParams,
                        factory=_B + "margin:build_contrastive_hinge",
                        summary="Pair loss with separate positive and negative hinge margins.")
    yield ComponentInfo(name="core.triplet", params=p.TripletParams, factory=_B + "margin:build_triplet",
                        summary="Triplet margin loss with batch-all, batch-hard or semi-hard mining.")
    yield ComponentInfo(name="core.nce", params=p.NCEParams, factory=_B + "nce:build_nce",
                        summary="Noise-contrastive estimation with the log(k * p_noise) correction.")
    yield ComponentInfo(name="core.negative-sampling", params=p.NegativeSamplingParams,
                        factory=_B + "nce:build_negative_sampling",
                        summary="word2vec negative sampling: -log s(S+) - sum log s(-S-).")
    yield ComponentInfo(name="core.memory-queue", params=p.MemoryQueueParams,
                        factory=_B + "memory_queue:build_memory_queue",
                        summary="InfoNCE with a MoCo-style FIFO queue of past candidates as extra negatives.")


@hookimpl
def cl_samplers():
    yield ComponentInfo(name="core.in-batch", params=p.InBatchParams, factory=_B + "samplers:build_in_batch",
                        summary="Shuffled batches of pairs; other rows are negatives.")
    yield ComponentInfo(name="core.m-per-class", params=p.MPerClassParams,
                        factory=_B + "class_sampler:build_m_per_class",
                        summary="Batches of batch_size/m labels with m examples each.")
    yield ComponentInfo(name="core.hard-negatives", params=p.HardNegativesParams,
                        factory=_B + "hard_negatives:build_hard_negatives",
                        summary="In-batch pairs plus hard negatives mined with a scorer.")


@hookimpl
def cl_trainers():
    yield ComponentInfo(name="core.adamw", params=AdamWParams, factory="cl_core.trainer:build_adamw",
                        summary="AdamW with warmup + cosine decay, accumulation, autocast, gradient caching, DDP.")


@hookimpl
def cl_encoders():
    yield ComponentInfo(name="core.shared", params=p.SharedEncoderParams, factory=_B + "shared:build_shared",
                        summary="The encoder of an earlier role, reused (one set of weights for both sides).")
    yield ComponentInfo(name="core.from-run", params=cp.FromRunParams, factory=_B + "from_run:build_from_run",
                        summary="An encoder taken from a saved run or Hub id, frozen by default, saved with the run.")


@hookimpl
def cl_objectives():
    yield ComponentInfo(name="core.contrastive", params=cp.ContrastiveObjectiveParams,
                        factory=_B + "objectives:build_contrastive",
                        summary="A catalogue loss over the scores of two roles (the default objective).")
    yield ComponentInfo(name="core.caption", params=cp.CaptionObjectiveParams, factory=_B + "objectives:build_caption",
                        summary="Teacher-forced caption cross-entropy of the spec's decoder.")
