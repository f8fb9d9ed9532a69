"""optimizers.feedback.config: the settings of the trainers that learn from feedback."""

from __future__ import annotations

import pytest

from optimizers.feedback import FeedbackTrainingConfig
from persona_rag.errors import ConfigError


@pytest.mark.parametrize("bad", [{"max_examples": 0}, {"max_val_examples": 0}, {"signal": "eval"}])
def test_feedback_training_settings_are_checked_at_construction(bad):
    [name] = bad
    with pytest.raises(ConfigError, match=f"^FeedbackTrainingConfig: {name}="):
        FeedbackTrainingConfig(**bad)
