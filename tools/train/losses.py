"""The distillation losses of the two training stages (``tools.train``), on L2-normalised vectors.

- :func:`squared_distance`: ``|s - t|^2`` per row, batch-averaged. For unit vectors it equals ``2 - 2 cos``, so its
  scale does not shrink with the number of dimensions (a per-component mean would, and would vanish next to the
  contrastive terms at 768 dims).
- :func:`info_nce`: cross-entropy of each query against a set of candidate vectors (its positive at a given column).
- :func:`distribution_kl`: KL(teacher || student) between the two score distributions over the same candidates;
  :func:`score_kl` is the same from the teacher's cosines as given (a fusion of two teachers' cosines, say).

Masked candidates (another query's positive that is also a positive of this query) get a large negative logit, not
``-inf``: ``-inf`` on both sides of a KL makes ``0 * (-inf - -inf)`` = NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MASKED_LOGIT = -1.0e4


def squared_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the squared L2 distance between matching rows (``2 - 2 cos`` for unit vectors)."""
    return (student - teacher).pow(2).sum(dim=-1).mean()


def mean_cosine(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean cosine of matching rows (unit vectors): a readable alignment figure for the logs."""
    return (student * teacher).sum(dim=-1).mean()


def _logits(queries: torch.Tensor, candidates: torch.Tensor, temperature: float,
            mask: torch.Tensor | None) -> torch.Tensor:
    return _scaled(queries @ candidates.T, temperature, mask)


def _scaled(scores: torch.Tensor, temperature: float, mask: torch.Tensor | None) -> torch.Tensor:
    logits = scores / temperature
    if mask is not None:
        logits = logits.masked_fill(mask, MASKED_LOGIT)
    return logits


def info_nce(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    positive_index: torch.Tensor,
    temperature: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of ``queries`` [B, d] over ``candidates`` [C, d] with the positive of row i at column
    ``positive_index[i]``. ``mask`` [B, C] (True = leave out) removes false negatives; never mask the positive."""
    return F.cross_entropy(_logits(queries, candidates, temperature, mask), positive_index)


def distribution_kl(
    student_queries: torch.Tensor,
    teacher_queries: torch.Tensor,
    candidates: torch.Tensor,
    temperature: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(teacher || student) of the softmax score distributions over ``candidates``, averaged over the batch: the
    student learns how the LLM itself ranks the candidates, not only which one is the positive."""
    return score_kl(student_queries, candidates, teacher_queries @ candidates.T, temperature, mask)


def score_kl(
    student_queries: torch.Tensor,
    candidates: torch.Tensor,
    teacher_scores: torch.Tensor,
    temperature: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(teacher || student) where the teacher's [B, C] cosines over ``candidates`` are given rather than computed
    from teacher vectors in the candidates' space: a teacher may score with vectors of its own."""
    student_log = F.log_softmax(_logits(student_queries, candidates, temperature, mask), dim=-1)
    with torch.no_grad():
        teacher_log = F.log_softmax(_scaled(teacher_scores, temperature, mask), dim=-1)
    return F.kl_div(student_log, teacher_log, log_target=True, reduction="batchmean")
