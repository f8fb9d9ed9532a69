"""Selector: for each input, pick the retriever of a pool whose prompt (RSPG-Pre) or whose
generated answer (RSPG-Post) is most likely to be the best (docs/method.md, Eq. 5-7).

No single retriever wins everywhere: recency helps a user with a stable taste, BM25 a question
whose words appear in the profile, no profile at all a user whose history misleads. The selector
scores each pool member's candidate with a text encoder and a linear head,
S_ω(R_i, x) ∈ ℝ, and :class:`~persona_rag.program.PersonalizedRAG` keeps the highest. It is
trained by :class:`optimizers.RSPG` to match the distribution of the LLM's metric over the pool.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dspy
import numpy as np
import torch
from dspy.predict.parameter import Parameter

from persona_rag.encoders import DEFAULT_ENCODER, default_device, mean_pool, resolve_encoder
from persona_rag.errors import ConfigError
from persona_rag.io import atomic_directory
from persona_rag.pretrained import load_pretrained, refuse_custom_code
from persona_rag.retrievers import Retriever, make_retriever
from persona_rag.tasks.truncation import clip

__all__ = ["DEFAULT_POOL", "Selection", "Selector", "SelectorNet"]

Mode = Literal["pre", "post"]

DEFAULT_POOL = ("none", "recency", "bm25", "dense")
"""The untrained part of the paper's pool; add tuned retrievers as ``{"ropg-kd": DenseRetriever(...)}``."""

# Encoder families whose frozen lower layers :meth:`SelectorNet.freeze_below` can run once per
# candidate and cache: embeddings, then a list of layers that take (hidden, mask) and nothing else
# (MPNet, for one, adds a position bias inside its encoder, so it gets eval mode but no cache).
_CACHEABLE_ENCODERS = frozenset({"bert"})

_HEAD_FILE = "selector_head.safetensors"
_CONFIG_FILE = "selector.json"


@dataclass(frozen=True)
class Selection:
    """The selector's decision for one input.

    Attributes:
        chosen: the name of the chosen pool member.
        scores: the selector's score per pool member (softmax of these is P_S of Eq. 7).
    """

    chosen: str
    scores: dict[str, float]


class SelectorNet(torch.nn.Module):
    """A Hugging Face encoder, mean pooling and a linear head: one scalar per candidate.

    Long prompts lose their beginning, not their end: LaMP prompts put the retrieved items first
    and the input last, and the input is what tells one question from another. Post-mode
    candidates are encoded as the pair (answer, prompt) with only the prompt truncated, so a long
    prompt can never cut away the answer the selector is meant to judge.

    Args:
        model: an encoder name or path, or a checkpoint written by :meth:`save` (then its head too).
        max_length: tokens per candidate (MiniLM's limit is 512; 256 keeps training affordable).
        device: ``cpu``/``cuda``; default: CUDA when available.
    """

    def __init__(
        self, model: str = DEFAULT_ENCODER, *, max_length: int = 256, device: str | None = None
    ) -> None:
        super().__init__()
        from safetensors.torch import load_file
        from transformers import AutoModel, AutoTokenizer

        path = resolve_encoder(model)
        self.max_length = max_length
        self._frozen_layers = 0  # set by freeze_below
        self._frozen_cache: dict[tuple[str, str | None], torch.Tensor] | None = None
        self.tokenizer = load_pretrained(AutoTokenizer, path, truncation_side="left")
        self.encoder = load_pretrained(AutoModel, path)
        self.head = torch.nn.Linear(self.encoder.config.hidden_size, 1)
        head_file = Path(path) / _HEAD_FILE
        if head_file.exists():
            self.head.load_state_dict(load_file(str(head_file)))
        else:  # an untrained head scores every candidate alike: P_S starts uniform
            torch.nn.init.zeros_(self.head.weight)
            torch.nn.init.zeros_(self.head.bias)
        self.to(device or default_device())

    @property
    def device(self) -> torch.device:
        return self.head.weight.device

    @property
    def _layers(self) -> Any:
        """The encoder's list of transformer layers, or None for an architecture without one."""
        return getattr(getattr(self.encoder, "encoder", None), "layer", None)

    def freeze_below(self, trainable_layers: int, *, cache: bool = False) -> None:
        """Train only the encoder's last ``trainable_layers`` layers and the head.

        The embeddings and lower layers then need no gradients, so autograd keeps none of their
        activations and the backward pass stops at the first trainable layer. They also stay in
        eval mode (see :meth:`train`), which makes their output a fixed function of the candidate;
        with ``cache=True`` that output is computed once per candidate text and kept, so a
        training step, and every validation after the first, runs only the trainable layers. The
        cache holds tokens x hidden size floats per distinct candidate (256 x 384 x 4 bytes =
        0.4 MB for MiniLM), and is kept only for encoders whose layers take nothing but the
        hidden states and the mask (BERT's family); others get the eval mode without the cache.
        """
        layers = self._layers
        if layers is None or not 1 <= trainable_layers <= len(layers):
            found = "no list of layers" if layers is None else f"{len(layers)} layers"
            raise ConfigError(f"trainable_layers={trainable_layers}: the selector's encoder has {found}")
        self.encoder.requires_grad_(False)
        for layer in layers[len(layers) - trainable_layers :]:
            layer.requires_grad_(True)
        self._frozen_layers = len(layers) - trainable_layers
        cacheable = cache and self._frozen_layers and self.encoder.config.model_type in _CACHEABLE_ENCODERS
        self._frozen_cache = {} if cacheable else None
        self.train(self.training)

    def train(self, mode: bool = True) -> SelectorNet:
        """Set the training mode, keeping frozen layers (:meth:`freeze_below`) in eval mode.

        Dropout in weights that never learn only adds noise to the features the trainable layers
        read, and it is what would make those features differ from one step to the next.
        """
        super().train(mode)
        if self._frozen_layers:
            self.encoder.eval()
            for layer in self._layers[self._frozen_layers :]:
                layer.train(mode)
        return self

    def forward(self, prompts: Sequence[str], outputs: Sequence[str] | None = None) -> torch.Tensor:
        """Scores (with gradients) for candidates given by their prompts, and answers in Post mode."""
        # Cut to what the tokenizer keeps before it sees them: the prompts' ends, the answers' starts.
        prompts = [clip(prompt, self.max_length, keep="end") for prompt in prompts]
        if outputs is None:
            batch = self.tokenizer(
                prompts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
        else:
            outputs = [clip(o, self.max_length) or "(empty answer)" for o in outputs]
            batch = self.tokenizer(
                outputs,
                prompts,
                padding=True,
                truncation="only_second",
                max_length=self.max_length,
                return_tensors="pt",
            )
        batch = batch.to(self.device)
        if self._frozen_cache is None:
            hidden = self.encoder(**batch).last_hidden_state
        else:
            keys = list(zip(prompts, outputs or [None] * len(prompts)))
            hidden = self._frozen_hidden(keys, batch)
            hidden = self._run_layers(hidden, batch["attention_mask"], self._layers[self._frozen_layers :])
        return self.head(mean_pool(hidden, batch["attention_mask"])).squeeze(-1)

    def _frozen_hidden(
        self, keys: list[tuple[str, str | None]], batch: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        """The frozen layers' output for a batch, from the cache or computed (then cached, once for a
        candidate the batch repeats) for those it lacks; padding is zeros, which the mask hides."""
        cache = self._frozen_cache
        assert cache is not None
        mask = batch["attention_mask"].bool()
        missing = list({key: i for i, key in reversed(list(enumerate(keys))) if key not in cache}.values())
        if missing:
            # Normal tensors even under inference mode (validation), so a cached entry can feed
            # a training step's graph later.
            with torch.inference_mode(False), torch.no_grad():
                rows = torch.tensor(missing, device=self.device)
                sub = {name: tensor.index_select(0, rows) for name, tensor in batch.items()}
                embedded = self.encoder.embeddings(
                    input_ids=sub["input_ids"], token_type_ids=sub.get("token_type_ids")
                )
                computed = self._run_layers(
                    embedded, sub["attention_mask"], self._layers[: self._frozen_layers]
                )
                for j, i in enumerate(missing):
                    cache[keys[i]] = computed[j][mask[i]].clone()
        hidden = torch.zeros(
            *mask.shape, self.encoder.config.hidden_size, dtype=self.head.weight.dtype, device=self.device
        )
        for i, key in enumerate(keys):
            hidden[i, mask[i]] = cache[key]
        return hidden

    def _run_layers(
        self, hidden: torch.Tensor, attention_mask: torch.Tensor, layers: Sequence[Any]
    ) -> torch.Tensor:
        """``layers`` applied in turn, with the attention mask built as the encoder builds it."""
        from transformers.masking_utils import create_bidirectional_mask

        mask = create_bidirectional_mask(
            config=self.encoder.config, inputs_embeds=hidden, attention_mask=attention_mask
        )
        for layer in layers:
            hidden = layer(hidden, mask)
        return hidden

    def save(self, path: str | Path) -> Path:
        """Write encoder, tokenizer and head atomically; ``SelectorNet(path)`` loads it back."""
        from safetensors.torch import save_file

        with atomic_directory(path) as temporary:
            self.encoder.save_pretrained(temporary)
            self.tokenizer.save_pretrained(temporary)
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()},
                str(temporary / _HEAD_FILE),
            )
            (temporary / _CONFIG_FILE).write_text(json.dumps({"max_length": self.max_length}))
        return Path(path)


def _pool(pool: Mapping[str, Retriever | str] | Sequence[Retriever | str]) -> dict[str, Retriever]:
    """Named retrievers from a mapping or a list of retrievers / retriever names."""
    items = pool.items() if isinstance(pool, Mapping) else ((None, member) for member in pool)
    named: dict[str, Retriever] = {}
    for name, member in items:
        retriever = make_retriever(member) if isinstance(member, str) else member
        name = name or (member if isinstance(member, str) else retriever.kind)
        if name in named:
            raise ConfigError(f"pool member {name!r} appears twice; name them with a dict")
        named[name] = retriever
    if len(named) < 2:
        raise ConfigError(f"a selector needs a pool of at least two retrievers, got {list(named)}")
    return named


def _mode(mode: Any) -> Mode:
    """``mode`` itself if it is one (given to the constructor, or read from a saved file)."""
    if mode not in ("pre", "post"):
        raise ConfigError(f"mode must be 'pre' or 'post', got {mode!r}")
    return mode


class Selector(dspy.Module, Parameter):
    """Chooses, per input, one retriever of a pool (RSPG-Pre) or one generated answer (RSPG-Post).

    Give it to :class:`~persona_rag.program.PersonalizedRAG` as ``selector=``; the program then
    retrieves with every pool member, and returns the chosen member's answer with the choice and
    the scores. An untrained selector scores all members alike and so picks the first: train it
    with :class:`optimizers.RSPG`.

    Args:
        pool: retrievers by name (``{"bm25": BM25Retriever(), "ropg-kd": DenseRetriever(...)}``) or
            a list of retrievers / retriever names; default none, recency, BM25, dense.
        mode: ``pre`` scores the prompt each member's items make; ``post`` scores prompt plus the
            generator's answer to it (every member's prompt is answered, as one batch).
        model: the selector's encoder: a Hugging Face encoder or a trained checkpoint directory.
        max_length: tokens per scored candidate.
        name_members: the network reads each member's name after its prompt
            (:meth:`candidate_texts`), so it can learn how far to trust each retriever as well as
            what its items say. Without it, prompts from retrievers that all return profile items
            look alike, and a member that is better on most inputs (a tuned retriever) cannot be
            told apart from an untuned one. Saved selectors trained without names load without.

    Example (it loads or trains a model, so it is shown here and not run as a doctest)::

        from persona_rag import PersonalizedRAG, Selector
        program = PersonalizedRAG(task="LaMP-3", selector=Selector(mode="post"))
        prediction = program(input=question, profile=profile)
        prediction.retriever, prediction.selection_scores
        # ('recency', {'none': 0.1, 'recency': 0.7, 'bm25': 0.3, 'dense': 0.2})
    """

    def __init__(
        self,
        *,
        pool: Mapping[str, Retriever | str] | Sequence[Retriever | str] = DEFAULT_POOL,
        mode: Mode = "pre",
        model: str = DEFAULT_ENCODER,
        max_length: int = 256,
        name_members: bool = True,
    ) -> None:
        super().__init__()
        self.pool = _pool(pool)
        self.mode: Mode = _mode(mode)
        self.model = model
        self.max_length = max_length
        self.name_members = name_members
        self._net: SelectorNet | None = None
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        return list(self.pool)

    @property
    def net(self) -> SelectorNet:
        """The scoring network, loaded on first use."""
        with self._lock:
            if self._net is None:
                self._net = SelectorNet(self.model, max_length=self.max_length).eval()
            return self._net

    def use(self, net: SelectorNet, model: str | Path) -> None:
        """Adopt trained weights; ``model`` is the checkpoint they are saved in (what save() records)."""
        self._net, self.model = net.eval(), str(model)

    def candidate_texts(self, prompts: Sequence[str]) -> list[str]:
        """What the network reads of one input's member prompts (given in pool order): each prompt,
        with the member's name after it when :attr:`name_members` (after, because a long prompt
        loses its beginning, never its end)."""
        if not self.name_members:
            return list(prompts)
        return [f"{prompt}\nretriever: {name}" for prompt, name in zip(prompts, self.names, strict=True)]

    def score(
        self, prompts: Sequence[str], outputs: Sequence[str] | None = None, *, batch_size: int = 32
    ) -> np.ndarray:
        """Scores of candidates (any number, e.g. every pool member of many inputs), no gradients."""
        net = self.net
        out = []
        with self._lock, torch.inference_mode():
            for start in range(0, len(prompts), batch_size):
                chunk = slice(start, start + batch_size)
                out.append(
                    net(prompts[chunk], None if outputs is None else outputs[chunk]).float().cpu().numpy()
                )
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def batch_select(
        self, prompts: Sequence[Sequence[str]], outputs: Sequence[Sequence[str]] | None = None
    ) -> list[Selection]:
        """One selection per input from its pool members' prompts (and answers, in Post mode).

        Args:
            prompts: per input, one prompt per pool member, in pool order.
            outputs: per input, the answer to each of those prompts (required in Post mode).
        """
        names = self.names
        if any(len(row) != len(names) for row in prompts):
            raise ConfigError(f"each input needs one prompt per pool member ({len(names)})")
        if self.mode == "post" and outputs is None:
            raise ConfigError("a Post selector scores answers: pass the pool's outputs")
        flat_prompts = [text for row in prompts for text in self.candidate_texts(row)]
        flat_outputs = None if self.mode == "pre" else [o for row in outputs for o in row]  # type: ignore[union-attr]
        scores = self.score(flat_prompts, flat_outputs).reshape(len(prompts), len(names))
        # Ties (an untrained head) go to the first member: argmax keeps the earliest maximum.
        return [
            Selection(names[int(np.argmax(row))], {n: float(v) for n, v in zip(names, row)}) for row in scores
        ]

    # ---------------------------------------------------------------- dspy Parameter protocol
    def dump_state(self, json_mode: bool = True) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "model": self.model,
            "max_length": self.max_length,
            "name_members": self.name_members,
            "pool": {name: retriever.dump_state() for name, retriever in self.pool.items()},
        }

    def load_state(self, state: Mapping[str, Any], **kwargs: Any) -> Selector:
        pool = {}
        for name, member in state["pool"].items():
            pool[name] = make_retriever(member["retriever"]).load_state(member)
        self.pool = _pool(pool)
        self.mode = _mode(state["mode"])
        self.max_length = int(state.get("max_length", self.max_length))
        self.name_members = bool(state.get("name_members", False))  # saved before names were read
        if state["model"] != self.model:
            # The network loads on first use, after the pool's answers: a folder that asks to run
            # its own code is refused now, before that work.
            refuse_custom_code(resolve_encoder(state["model"]))
            self.model, self._net = state["model"], None
        return self

    def reset(self) -> None:
        """``reset_copy()`` keeps the pool and the trained weights: they are not demos."""

    def __deepcopy__(self, memo: dict[int, Any]) -> Selector:
        """Copies share the (read-only at inference) network; the pool is copied."""
        import copy

        clone = Selector.__new__(Selector)
        clone.__dict__.update(self.__dict__)
        clone.pool = {name: copy.deepcopy(r, memo) for name, r in self.pool.items()}
        clone._lock = threading.Lock()
        return clone

    def __repr__(self) -> str:
        return (
            f"Selector(mode={self.mode!r}, pool={self.names}, model={self.model!r}, "
            f"name_members={self.name_members})"
        )
