"""The command-line options and what they build, shared by every ``persona-rag`` command.

The types that check each value as it is parsed live in :mod:`persona_rag.cli_types`.

``persona_rag.cli`` (evaluate, index) and the commands other packages add through the
``persona_rag.commands`` entry points (the demo and the training commands of ``optimizers``) read
the same model options, argument types and program builder from here, so an option means the
same in every command. Heavy modules are imported inside the functions, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from persona_rag.cli_types import (
    encoder_name,
    lm_string,
    local_model_name,
    positive_float,
    positive_int,
    retry_count,
    server_url,
)
from persona_rag.config_flags import ConfigFlags, option
from persona_rag.defaults import (
    ANSWER_EXTRACTIONS,
    DEFAULT_ENCODER,
    DEFAULT_LABEL_NORMALIZATION,
    DEFAULT_LM,
    DTYPE_CHOICES,
    LABEL_NORMALIZATIONS,
    AnswerExtraction,
    LabelNormalization,
)
from persona_rag.errors import require_one_of, require_positive
from persona_rag.server import DEFAULT_CONCURRENCY, DEFAULT_RETRIES

__all__ = [
    "MODEL_FLAGS",
    "ModelOptions",
    "add_model_options",
    "build_generator",
    "build_program",
    "load_selector",
    "make_console",
    "model_options",
    "named_retriever",
    "task_for",
]


def make_console() -> Any:
    """Where commands print their tables and messages."""
    from rich.console import Console

    return Console()


_API_KEY_VARIABLES = ("PERSONA_RAG_API_KEY", "OPENAI_API_KEY")


def _api_key(args: ModelOptions) -> str | None:
    """The key for ``--lm``: ``--api-key-file``, else ``--api-key`` (``main`` warns about it),
    else ``$PERSONA_RAG_API_KEY``, else ``$OPENAI_API_KEY``. It is handed to the ``dspy.LM``
    only: never logged, never saved (saved programs and results hold no key)."""
    from persona_rag.errors import DataError

    if args.api_key_file:
        try:
            key = Path(args.api_key_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise DataError(
                f"cannot read the API key file ({error.strerror})", file=str(args.api_key_file)
            ) from error
        if not key:
            raise DataError("the API key file is empty", file=str(args.api_key_file))
        return key
    if args.api_key:
        return args.api_key
    return next((os.environ[name] for name in _API_KEY_VARIABLES if os.environ.get(name)), None)


def build_generator(args: argparse.Namespace) -> Any:
    """The generator the model options describe: a server ``dspy.LM`` (``--lm``) or the in-process
    model (``--model``), with the answer-reading options."""
    from persona_rag.generator import Generator
    from persona_rag.lm import local_lm
    from persona_rag.lm.loading import resolve_dtype
    from persona_rag.server import server_lm

    options = model_options(args)
    if options.lm:
        lm = server_lm(
            options.lm,
            api_base=options.api_base,
            api_key=_api_key(options),
            max_tokens=options.max_new_tokens,
            timeout=options.timeout,
            num_retries=options.retries,
        )
    else:
        lm = local_lm(options.model, max_tokens=options.max_new_tokens, dtype=resolve_dtype(options.dtype))
    return Generator(
        lm=lm,
        max_new_tokens=options.max_new_tokens,
        batch_size=options.batch_size,
        label_scoring=not options.free_generation,
        calibrate=options.calibrate,
        label_decision=options.label_decision,
        label_normalization=options.label_normalization,
        answer_extraction=options.answer_extraction,
        concurrency=options.concurrency,
    )


def named_retriever(spec: str, encoder: str) -> Any:
    """A retriever from a command-line spec: a kind (``bm25``; ``dense`` uses ``encoder``) or
    ``name=DIR``, a dense retriever over a trained encoder checkpoint (e.g. ROPG's ``best``)."""
    from persona_rag.retrievers import DenseRetriever, make_retriever

    if "=" in spec:
        return DenseRetriever(encoder=spec.split("=", 1)[1])
    return make_retriever(spec, **({"encoder": encoder} if spec == "dense" else {}))


def task_for(args: argparse.Namespace, task: Any) -> Any:
    """The task (name or spec) reading answers as the options say: LaMP's evaluation, or the
    lenient reading with ``--lenient-parsing``."""
    import dataclasses

    from persona_rag.tasks import get_task

    spec = get_task(task)
    return dataclasses.replace(spec, parsing="lenient") if getattr(args, "lenient_parsing", False) else spec


def build_program(args: argparse.Namespace, task: Any, kind: str, store: Any = None) -> Any:
    """A single-retriever program over the generator the options describe (``kind``: a spec)."""
    from persona_rag.program import PersonalizedRAG

    return PersonalizedRAG(
        task=task_for(args, task),
        retriever=named_retriever(kind, args.encoder),
        generator=build_generator(args),
        k=args.k,
        store=store,
        max_input_tokens=args.max_input_tokens,
    )


def load_selector(path: Path) -> Any:
    """A trained selector from its ``selector.json`` (written by ``persona-rag select``/``report``),
    its checkpoints found beside it wherever its folder was moved (:mod:`persona_rag.portable`)."""
    from persona_rag.errors import DataError, PersonaRAGError
    from persona_rag.portable import read_portable_json
    from persona_rag.selector import Selector

    state = read_portable_json(path)
    try:
        return Selector(pool=["none", "bm25"]).load_state(state)
    except PersonaRAGError:
        raise  # says itself what is wrong and where (a model folder that asks to run code)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{path}: not a selector state file ({error})") from error


@dataclass(kw_only=True)
class ModelOptions:
    """The options that choose and set up the generator, the retriever's encoder and the prompt.

    Every command that answers questions takes them, so they mean the same everywhere; each field's
    name, type, default and help make its flag (:mod:`persona_rag.config_flags`), so a new reader
    setting is one field here and ``--help`` shows the default the code uses. A flag's type checks
    its value as it is parsed, before any model loads.
    """

    model: str = field(
        default=DEFAULT_LM,
        metadata=option("in-process Hugging Face model name or path", type=local_model_name),
    )
    dtype: Literal["auto", "float32", "bfloat16"] = field(
        default="float32",
        metadata=option(
            "precision of the in-process model's answers and scores: bfloat16 is about 2.8x faster on "
            "CPUs with AVX-512 BF16 and on GPUs; auto picks it where the hardware has it (training "
            "always runs in float32)"
        ),
    )
    lm: str | None = field(
        default=None,
        metadata=option(
            "a dspy.LM model string instead, e.g. openai/meta-llama/Llama-3.1-8B", type=lm_string
        ),
    )
    api_base: str | None = field(
        default=None,
        metadata=option("OpenAI-compatible server URL for --lm (vLLM, SGLang, Ollama)", type=server_url),
    )
    api_key_file: Path | None = field(
        default=None,
        metadata=option(
            "file holding the API key for --lm (default: $PERSONA_RAG_API_KEY, else $OPENAI_API_KEY)"
        ),
    )
    api_key: str | None = field(
        default=None, metadata=option("API key for --lm; avoid: it shows in ps and the shell history")
    )
    timeout: float = field(default=60.0, metadata=option("seconds per --lm request", type=positive_float))
    retries: int = field(
        default=DEFAULT_RETRIES,
        metadata=option(
            "retries (0 to 10) of an --lm request after a 429, 5xx, timeout or refused connection "
            "(exponential backoff: 1, 2, 4 ... s)",
            type=retry_count,
        ),
    )
    concurrency: int = field(
        default=DEFAULT_CONCURRENCY, metadata=option("--lm requests in flight", type=positive_int)
    )
    encoder: str = field(
        default=DEFAULT_ENCODER, metadata=option("dense retriever encoder", type=encoder_name)
    )
    k: int = field(default=4, metadata=option("profile items per prompt", type=positive_int))
    max_input_tokens: int = field(
        default=512, metadata=option("prompt budget; profile text gives way first", type=positive_int)
    )
    max_new_tokens: int = field(default=32, metadata=option("longest generated answer", type=positive_int))
    batch_size: int = field(
        default=16, metadata=option("prompts per forward pass or request batch", type=positive_int)
    )
    free_generation: bool = field(
        default=False,
        metadata=option(
            "generate answers instead of scoring the label set (a server model, --lm, always "
            "generates; its answer is read as a label)"
        ),
    )
    calibrate: bool = field(default=False, metadata=option("calibrate label scores on a content-free input"))
    label_decision: Literal["argmax", "mean"] = field(
        default="argmax", metadata=option("rating tasks: best label, or probability-weighted mean rating")
    )
    lenient_parsing: bool = field(
        default=False,
        metadata=option(
            "find the label or number inside chatty answers and stem ROUGE, instead of LaMP's "
            "evaluation (the whole answer is the label); figures are then not comparable with LaMP's"
        ),
    )
    label_normalization: LabelNormalization = field(
        default=DEFAULT_LABEL_NORMALIZATION,
        metadata=option(
            "label scoring of multi-token labels (in-process models): sum of token log-probabilities, "
            "or their mean per token"
        ),
    )
    answer_extraction: AnswerExtraction = field(
        default="first-line",
        metadata=option(
            "free-text tasks: the answer alone out of the reply (first-line), or the whole reply (none)"
        ),
    )

    def __post_init__(self) -> None:
        require_positive(
            self, "timeout", "concurrency", "k", "max_input_tokens", "max_new_tokens", "batch_size"
        )
        require_one_of(self, "dtype", DTYPE_CHOICES)
        require_one_of(self, "label_normalization", LABEL_NORMALIZATIONS)
        require_one_of(self, "answer_extraction", ANSWER_EXTRACTIONS)


MODEL_FLAGS = ConfigFlags(ModelOptions)
"""The model options as flags: every answering command adds them (:func:`add_model_options`)."""


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Add the model options (:class:`ModelOptions`) to a command, as one help group."""
    MODEL_FLAGS.add_to(parser.add_argument_group("models"))


def model_options(args: argparse.Namespace) -> ModelOptions:
    """The model options a command was given."""
    return ModelOptions(**MODEL_FLAGS.values(ModelOptions, args))
