"""persona_rag.lm.local: one shared LocalLM per model and precision, and its fingerprint."""

import numpy as np
import torch

from persona_rag.lm import shared_local_lm


def test_bfloat16_is_a_separate_copy_with_its_own_fingerprint_and_nearly_the_same_scores(
    tiny_checkpoint, tmp_path
):
    model = str(tiny_checkpoint(tmp_path / "tiny", seed=0))
    full, half = shared_local_lm(model), shared_local_lm(model, "bfloat16")
    assert half is not full and half is shared_local_lm(model, "bfloat16")
    assert next(half.model.parameters()).dtype == torch.bfloat16 and half.dtype == "bfloat16"
    # float32 adds nothing to the fingerprint (caches from before the option stay valid); bfloat16 does.
    assert "dtype" not in full.fingerprint() and half.fingerprint()["dtype"] == "bfloat16"
    conversations = [[{"role": "user", "content": "Rate it from 1 to 5."}]]
    labels = [["1", "2", "3", "4", "5"]]
    np.testing.assert_allclose(
        half.score(conversations, labels)[0], full.score(conversations, labels)[0], atol=0.1
    )
