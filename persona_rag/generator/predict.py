"""The generator's ``dspy.Predict``, saved and loaded without trusting the file."""

from __future__ import annotations

import copy
from typing import Any

import dspy

from persona_rag.errors import StateError
from persona_rag.lm.state import LM_STATE_KEY, dump_lm, legacy_record, load_lm

__all__ = ["SafePredict"]


class SafePredict(dspy.Predict):
    """``dspy.Predict`` whose LM is saved as data and loaded through an allow-list.

    The LM goes under its own key as a record of :mod:`persona_rag.lm.state` (model path and
    fingerprint, or model string and endpoint; never a key or a class to import), and DSPy's own
    ``lm`` entry stays empty, so a saved program loads without ``allow_unsafe_lm_state``.
    """

    def dump_state(self, json_mode: bool = True) -> dict[str, Any]:
        bare = copy.copy(self)
        bare.lm = None
        state = dspy.Predict.dump_state(bare, json_mode=json_mode)
        state[LM_STATE_KEY] = dump_lm(self.lm)
        return state

    def load_state(self, state: dict[str, Any], *, allow_unsafe_lm_state: bool = False) -> SafePredict:
        """Load demos, signature and the LM record.

        ``allow_unsafe_lm_state`` is accepted for DSPy's interface and has no effect here: the LM is
        always restored through :func:`persona_rag.lm.state.load_lm`, so no file can make this
        load import a class or redirect requests, whatever the caller passes.
        """
        state = dict(state)
        record = state.pop(LM_STATE_KEY, None)
        legacy = state.pop("lm", None)
        if record is None and legacy is not None:
            if not isinstance(legacy, dict):
                raise StateError(f"the generator's lm entry is not an LM record: {legacy!r}")
            record = legacy_record(legacy)
        lm = load_lm(record, current=self.lm)
        super().load_state({**state, "lm": None})
        self.lm = lm
        return self
