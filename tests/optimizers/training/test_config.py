"""optimizers.training.config: the settings every trainer shares, and the compile arguments none use."""

from __future__ import annotations

import pytest

from optimizers.training import TrainingConfig, refuse_unused_compile_arguments
from persona_rag.errors import ConfigError


@pytest.mark.parametrize(
    "bad",
    [
        {"epochs": 0},
        {"learning_rate": -1e-5},
        {"learning_rate": 0.0},
        {"batch_size": 0},
        {"gradient_accumulation_steps": 0},
        {"warmup_ratio": 1.5},
        {"max_grad_norm": 0.0},
        {"weight_decay": -0.1},
        {"patience": -1},
        {"checkpoint_every": 0},
    ],
)
def test_a_setting_that_cannot_train_is_refused_at_construction_naming_the_field(bad):
    [(name, value)] = bad.items()
    with pytest.raises(ConfigError, match=f"^TrainingConfig: {name}={value!r}; expected"):
        TrainingConfig(**bad)


def test_unused_compile_arguments_are_named():
    refuse_unused_compile_arguments(object(), None, {})  # nothing to refuse
    with pytest.raises(ConfigError, match=r"^object.compile\(\) does not use max_rounds=, teacher=$"):
        refuse_unused_compile_arguments(object(), "a teacher program", {"max_rounds": 2})
