"""optimizers.feedback.records: which rows carry a preference, and a row's identity."""

from __future__ import annotations

from optimizers.feedback import CandidateFeedback
from persona_rag.retrievers import RetrievalResult
from persona_rag.retrievers.base import Hit
from persona_rag.tasks import Document


def test_rows_whose_scores_all_tie_are_what_skip_uniform_drops_for_ropg_kd_and_rspg():
    from optimizers import ROPG_KD, ROPG_RL, ROPGKDConfig
    from optimizers.feedback import CandidateFeedback, PoolFeedback, carries_preference
    from persona_rag.retrievers import RetrievalResult
    from persona_rag.retrievers.base import Hit
    from persona_rag.tasks import Document

    hits = tuple(Hit(i, str(i), 0.0, Document(i, str(i), "text", None, {})) for i in range(2))

    def row(*scores):
        return CandidateFeedback("q", "query", RetrievalResult(hits), ("a", "b"), scores)

    tied, preferring = row(0.5, 0.5), row(0.5, 0.75)
    assert not carries_preference(tied) and carries_preference(preferring)
    assert carries_preference(PoolFeedback("q", ("x", "y"), ("p", "p"), ("a", "b"), (0.0, 1.0)))
    assert not ROPG_KD(config=ROPGKDConfig()).keep(tied)  # skip_uniform is on by default
    assert ROPG_KD(config=ROPGKDConfig(skip_uniform=False)).keep(tied)
    assert ROPG_RL().keep(tied)  # RL learns from rewards relative to the baseline, ties included
    assert ROPG_KD().keep(preferring)


def _row(scores: tuple[float, ...], ids: tuple[str, ...] = ("a", "b")) -> CandidateFeedback:
    hits = tuple(
        Hit(i, item_id, score, Document(index=i, id=item_id, text=f"text {item_id}", date=None, item={}))
        for i, (item_id, score) in enumerate(zip(ids, scores))
    )
    return CandidateFeedback("q1", "query", RetrievalResult(hits), ("1", "2"), (0.5, 0.25))


def test_a_row_identity_ignores_retrieval_score_noise_but_not_the_candidates():
    """A resumed run re-retrieves its candidates; scores that moved in their last bits (another
    thread count) must not make it look like another run."""
    assert _row((0.91, 0.52)).identity() == _row((0.91 + 1e-7, 0.52 - 1e-7)).identity()
    assert _row((0.91, 0.52)).identity() != _row((0.91, 0.52), ids=("b", "a")).identity()
