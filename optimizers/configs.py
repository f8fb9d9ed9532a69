"""The settings of each optimizer: the reader's fine-tune, ROPG, Set-PL and RSPG.

They sit apart from the optimizers that read them, which load torch and dspy: the training
commands build their flags from these classes (:mod:`persona_rag.config_flags`), and
``persona-rag --help`` must answer at once. Each optimizer's module re-exports its config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, get_args

from optimizers.feedback.config import FeedbackTrainingConfig
from optimizers.feedback.signals import SIGNALS
from optimizers.training.config import TrainingConfig
from persona_rag.cli_types import non_negative_float, positive_float, positive_int
from persona_rag.config_flags import option
from persona_rag.errors import (
    ConfigError,
    require_at_least,
    require_fraction,
    require_one_of,
    require_positive,
)

__all__ = [
    "ANCHOR_HELP",
    "BASELINES",
    "FREE_TIES_HELP",
    "OBJECTIVES",
    "OBJECTIVE_HELP",
    "SELECTOR_LAYERS_HELP",
    "Objective",
    "PolicyConfig",
    "ROPGConfig",
    "ROPGKDConfig",
    "ROPGRLConfig",
    "RSPGConfig",
    "ReaderFinetuneConfig",
    "SetPLConfig",
]

# Help texts of settings that ``report`` also offers, for the ROPG-KD and RSPG it trains.
FREE_TIES_HELP = (
    "distil only how groups of equal score compare, leaving the order of tied candidates to the "
    "retriever; off, the paper's Eq. 4 also pulls tied candidates to one score"
)
ANCHOR_HELP = (
    "ROPG-KD: weight λ in [0, 1) of the untuned retriever's own policy in the target, (1 - λ) teacher + "
    "λ start: slows the drift away from the start's ranking where the LLM's preferences are noise "
    "(0: the paper's Eq. 4)"
)
SELECTOR_LAYERS_HELP = (
    "train only the selector encoder's last N layers, about half the step time of every weight with "
    "activation checkpointing (default: every weight)"
)


@dataclass(kw_only=True)
class ReaderFinetuneConfig(TrainingConfig):
    """Reader fine-tuning settings (see :class:`~optimizers.training.TrainingConfig` for the rest).

    Attributes:
        max_length: a cap on tokens of prompt plus answer (``None``: no cap). The training prompts
            are built exactly as at inference, within the program's ``max_input_tokens`` budget,
            so by default the reader trains on what it will read; a cap cuts longer prompts from
            their beginning (the chat template and the first profile entries), with a warning.
        max_examples: training examples used (a CPU step of 8 x 128 tokens takes ~7 s).
        max_val_examples: validation examples scored after each epoch.
        k: profile items per training prompt (``None``: the program's ``k``).
        trainable_layers: train only the last this many decoder layers and the final norm
            (``None``: every weight). The token embeddings (tied to the LM head in SmolLM2) and
            the lower layers stay frozen, so their gradients and Adam's two moments (three times
            their size) are never allocated and the backward pass stops early: the demo trains
            12 of SmolLM2-135M's 30 layers to stay under 3 GiB.
    """

    output_dir: str | Path = "runs/reader"
    learning_rate: float = 5e-5
    epochs: int = 2
    gradient_accumulation_steps: int = 1
    patience: int | None = 1
    max_length: int | None = field(
        default=None,
        metadata=option(
            "cap on prompt + answer tokens (default: none; prompts already fit --max-input-tokens, "
            "as at inference)",
            type=positive_int,
        ),
    )
    max_examples: int | None = field(
        default=512, metadata=option("first N training questions (None: all)", type=positive_int)
    )
    max_val_examples: int | None = field(
        default=100, metadata=option("validation questions scored", type=positive_int)
    )
    k: int | None = None  # not a flag: finetune passes the model options' --k, the program's k
    trainable_layers: int | None = field(
        default=None,
        metadata=option(
            "train only the last N decoder layers and the final norm, embeddings frozen: less memory "
            "and faster steps (default: every weight)",
            type=positive_int,
        ),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        require_at_least(self, 1, "max_length", "max_examples", "max_val_examples", "k", "trainable_layers")


@dataclass(kw_only=True)
class PolicyConfig(FeedbackTrainingConfig):
    """What every optimizer of the dense retrieval policy shares (ROPG, Set-PL).

    Attributes:
        candidates: ``l``, candidates per example from the initial retriever.
        policy_temperature: τ_π of the policy softmax(q·d / τ_π). ``None``: 0.05 for an
            L2-normalised encoder (cosine logits then span [-20, 20]; measured on the key-item
            task, see benchmarks/README.md) and 1 for an unnormalised one (Contriever's dot
            products already have that range).

    Validation examples are scored end to end after every epoch; that score picks the checkpoint.
    """

    candidates: int = field(default=16, metadata=option("l, candidates per example", type=positive_int))
    policy_temperature: float | None = field(
        default=None,
        metadata=option(
            "τ of the retrieval policy softmax(q·d/τ) (default: 0.05 for a normalised encoder, else 1)",
            type=positive_float,
        ),
    )


@dataclass(kw_only=True)
class ROPGConfig(PolicyConfig):
    """ROPG settings; the defaults are the paper's (l = 16, Adam lr 1e-5, 5% warm-up, clipping 1.0,
    effective batch 64 = 8 x 8 accumulation, 10 epochs) plus early stopping on the valset.

    Attributes:
        validation_feedback: also collect the LLM's feedback on the validation examples, to
            record per epoch the policy's entropy, its held-out KL to the teacher and how often its
            top-1 candidate is the teacher's (costs ``l`` scoring passes per validation example).
    """

    output_dir: str | Path = "runs/ropg"
    validation_feedback: bool = field(
        default=True,
        metadata=option(
            "ROPG: also score the validation questions' candidates, to record per epoch the policy's "
            "entropy, its held-out KL to the teacher and how often its top-1 is the teacher's (l scoring "
            "passes per validation question)"
        ),
    )

    # The diagnostics are recorded beside the validation score but never choose the checkpoint.
    run_only: ClassVar[frozenset[str]] = FeedbackTrainingConfig.run_only | {"validation_feedback"}

    def __post_init__(self) -> None:
        super().__post_init__()
        require_at_least(self, 2, "candidates")  # one candidate carries no preference
        require_positive(self, "policy_temperature")


@dataclass(kw_only=True)
class ROPGRLConfig(ROPGConfig):
    """RL adds how the reward's expectation over the candidates is taken.

    Attributes:
        exact: the gradient of the expected reward over all ``l`` candidates, whose scores the
            feedback holds already (:func:`~optimizers.losses.expected_reward_loss`), instead of
            the paper's one document sampled per example (Eq. 1-3): the same gradient in
            expectation, without the sampling noise, and no extra LLM call.
    """

    output_dir: str | Path = "runs/ropg-rl"
    exact: bool = field(
        default=False,
        metadata=option(
            "ROPG-RL: the exact gradient of the expected reward over all candidates (their scores are "
            "already known) instead of one sampled document (the paper's Eq. 1-3)"
        ),
    )


@dataclass(kw_only=True)
class ROPGKDConfig(ROPGConfig):
    """KD adds the target temperature τ and what to do with rows that carry no preference.

    Attributes:
        temperature: τ of the target p_t = softmax(score / τ) (not stated in the paper).
        skip_uniform: drop examples whose candidates all score the same. They carry no preference,
            and with them KD would pull the retriever towards a uniform ranking.
        free_ties: distil only how the LLM's score groups compare, leaving the order of candidates
            with equal scores to the student (:func:`~optimizers.losses.distillation_kl`); ``False``
            is the paper's Eq. 4, which also pulls tied candidates to one score.
        anchor: λ, the weight of the untuned retriever's own policy in the target, (1 − λ) p_t +
            λ π_0 (:func:`~optimizers.losses.distillation_kl`): a trust region in the target that
            slows the drift from the start's ranking where the LLM's per-candidate preferences do
            not generalise (it halved the policy's flattening on numpy_commit_subjects). 0 is Eq. 4.
    """

    output_dir: str | Path = "runs/ropg-kd"
    temperature: float = field(default=0.1, metadata=option("KD target temperature", type=positive_float))
    skip_uniform: bool = field(
        default=True,
        metadata=option("ROPG-KD: drop questions whose candidates all score the same: no preference"),
    )
    free_ties: bool = field(default=False, metadata=option(FREE_TIES_HELP))
    anchor: float = field(default=0.0, metadata=option(ANCHOR_HELP, type=non_negative_float))

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self, "temperature")
        require_fraction(self, "anchor")
        if self.anchor and self.free_ties:
            raise ConfigError(
                "ROPGKDConfig.anchor and free_ties do not combine: the anchored target is not uniform "
                "inside a group of tied candidates; choose one"
            )


Objective = Literal["distill", "expected"]
OBJECTIVES: tuple[str, ...] = get_args(Objective)
OBJECTIVE_HELP = (
    "distill: KL to softmax(score / temperature) over the members (the paper's Eq. 7); expected: "
    "maximise the expected score of the member the selector picks, whose optimum when the input "
    "predicts nothing is the member best on average"
)

Baseline = Literal["others", "greedy"]
BASELINES: tuple[str, ...] = get_args(Baseline)


@dataclass(kw_only=True)
class SetPLConfig(PolicyConfig):
    """Set-PL settings. The set size is the program's ``k`` (the items its prompt holds), so the
    tuned retriever is trained for exactly the prompt it will fill.

    Attributes:
        samples: ordered sets sampled per question and step (S); each new set costs one reader call.
        baseline: what a set's reward is compared with. ``others``: the mean reward of the
            question's other S - 1 samples (leave-one-out, no extra reader call). ``greedy``: the
            reward of the policy's own top-k set (one more reader call per question and step).
            ``others`` is the default because it asks the reader nothing beyond the samples; the
            comparison of the two on the validation questions of the two-item synthetic task
            (``tests/optimizers/pair_task.py``) has not finished yet, so that choice is not yet
            backed by a measurement (docs/set_pl.md).
        entropy_weight: β of the entropy bonus on the policy's first draw (0: none).
    """

    output_dir: str | Path = "runs/set-pl"
    samples: int = field(
        default=4, metadata=option("Set-PL: ordered sets sampled per question and step", type=positive_int)
    )
    baseline: Baseline = field(
        default="others",
        metadata=option(
            "Set-PL: a set's reward is compared with the mean of the question's other samples, or "
            "with the reward of the policy's top-k set (one more reader call per question and step)"
        ),
    )
    entropy_weight: float = field(
        default=0.01,
        metadata=option(
            "Set-PL: weight of the entropy bonus that keeps the policy from collapsing",
            type=non_negative_float,
        ),
    )

    def __post_init__(self) -> None:
        if self.baseline not in BASELINES:
            raise ConfigError(
                f"SetPLConfig.baseline must be one of {', '.join(BASELINES)}; got {self.baseline!r}"
            )
        least = 2 if self.baseline == "others" else 1
        if self.samples < least:
            raise ConfigError(
                f"SetPLConfig.samples must be at least {least} with baseline {self.baseline!r} "
                f"(the leave-one-out mean needs another sample); got {self.samples}"
            )
        if self.candidates < 2:
            raise ConfigError(f"SetPLConfig.candidates must be at least 2; got {self.candidates}")
        if self.entropy_weight < 0:
            raise ConfigError(f"SetPLConfig.entropy_weight must be 0 or more; got {self.entropy_weight}")
        if self.signal not in SIGNALS:
            raise ConfigError(f"SetPLConfig.signal must be one of {', '.join(SIGNALS)}; got {self.signal!r}")


@dataclass(kw_only=True)
class RSPGConfig(FeedbackTrainingConfig):
    """RSPG settings; the defaults are the paper's for selectors (Adam lr 1e-5, 5% warm-up,
    clipping 1.0, effective batch 64 = 8 x 8 accumulation, 20 epochs) plus early stopping.

    Attributes:
        objective: ``distill`` is the paper's Eq. 7, KL to the target below. ``expected`` maximises
            the expected score of the picked member, Σ_m π(m) · score(m)
            (:func:`~optimizers.losses.expected_reward_loss`): where the input tells the members
            apart it learns to pick the better one, and where it does not, its optimum is the member
            that scores best on average, while Eq. 7's is the average target, which can pick a worse
            member (on numpy_commit_subjects the distilled RSPG-Post never reached the best single
            member's validation score, benchmarks/README.md).
        temperature: τ of the target P_TS = softmax(Eval / τ) (not stated in the paper; Eval lies
            in [0, 1], so τ = 1 leaves the target close to uniform); ``distill`` only.
        skip_uniform: drop examples on which every pool member scores the same: they carry no
            preference and would only teach the selector to be undecided.
        gradient_checkpointing: recompute the selector encoder's activations in the backward pass
            instead of keeping them. A step scores every pool member's prompt (8 questions x 6
            members x 256 tokens), and the kept activations were most of RSPG's memory: on two
            idle cores, 6.61 -> 2.92 GiB peak RSS for 1.70x the encoder's step time
            (``benchmarks/selector_memory.py``). Turn it off when memory is plentiful. The
            gradients are the same (dropout's random state is replayed), so it is left out of the
            run's fingerprint.
        trainable_layers: train only the selector encoder's last this many layers (and the head);
            ``None``: every weight. Frozen lower layers keep no activations and need no backward
            pass (``benchmarks/selector_memory.py`` measures the step).
        cache_frozen_layers: with ``trainable_layers``, compute the frozen layers' output once
            per candidate and keep it (:meth:`~persona_rag.selector.SelectorNet.freeze_below`), so
            a step runs only the trainable layers. It costs memory (tokens x hidden size floats per
            candidate: 0.4 MB for MiniLM at 256 tokens, 1.6 GB for 4,000 candidates); the
            gradients are those without the cache up to float rounding, so it is left out of the
            run's fingerprint.

    Validation examples' pool answers are computed once and reused by every epoch.
    """

    output_dir: str | Path = "runs/rspg"
    epochs: int = 20
    objective: Objective = field(default="distill", metadata=option(OBJECTIVE_HELP))
    temperature: float = field(default=0.1, metadata=option("target temperature", type=positive_float))
    skip_uniform: bool = field(
        default=True,
        metadata=option("drop questions on which every pool member scores the same: no preference"),
    )
    gradient_checkpointing: bool = True  # not a flag: select turns it off with --trainable-layers
    trainable_layers: int | None = field(
        default=None, metadata=option(SELECTOR_LAYERS_HELP, type=positive_int)
    )
    cache_frozen_layers: bool = field(
        default=True,
        metadata=option(
            "with --trainable-layers, run the frozen layers once per candidate and keep their output "
            "(memory: 0.4 MB per candidate for MiniLM at 256 tokens)"
        ),
    )

    run_only: ClassVar[frozenset[str]] = FeedbackTrainingConfig.run_only | {
        "gradient_checkpointing",
        "cache_frozen_layers",
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        require_one_of(self, "objective", OBJECTIVES)
        require_positive(self, "temperature")
        require_at_least(self, 1, "trainable_layers")
