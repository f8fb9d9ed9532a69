"""A generator's LM in a saved program: written as data, read back without running code.

DSPy saves an LM with a custom engine as the engine's import path and loads it only with
``allow_unsafe_lm_state=True``, which also lets a file import any other class and keep its own
``api_base``. persona-rag programs never need that flag: the generator saves its LM as a plain
record and restores it here through a fixed list of what a file may ask for.

- ``local``: an in-process model (:class:`persona_rag.lm.LocalEngine`, the only engine a file can
  name) by path or name, with the content fingerprint of its files. Loading it loads weights only
  (:mod:`persona_rag.pretrained`: a folder that asks for its own code is refused). If the files
  changed since the save, or the record has no fingerprint (an older save, or an edited file),
  loading stops, unless the caller built the generator with that model
  (``Generator(lm=local_lm(path))``).
- ``remote``: a ``dspy.LM`` by model string and endpoint, without its API key. A file never picks
  where requests and keys go: a saved endpoint (``api_base``/``base_url``) or a model other than
  the one configured (the generator's own LM, else ``dspy.settings.lm``) is refused unless the
  caller configured exactly that LM. With no LM configured, a saved model without an endpoint is
  rebuilt as ``dspy.LM(model)``, which talks to that provider's own servers.
- ``custom``: any other LM class or engine; it is used only if the caller configured it.

Older saves (DSPy's own ``lm`` record) are read through the same rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dspy

from persona_rag.errors import DataError, StateError
from persona_rag.lm.engine import LocalEngine, local_lm
from persona_rag.lm.loading import check_dtype, resolve_model
from persona_rag.lm.registry import model_fingerprint
from persona_rag.pretrained import refuse_custom_code

__all__ = ["LM_STATE_KEY", "dump_lm", "legacy_record", "load_lm"]

LM_STATE_KEY = "persona_rag_lm"
_ENDPOINT_KEYS = ("api_base", "base_url")
_GENERATION_KEYS = (
    "temperature", "max_tokens", "max_completion_tokens", "top_p", "stop", "n", "seed",
    "presence_penalty", "frequency_penalty", "timeout",
)  # fmt: skip
# The engine's import path as DSPy's own LM records name it: where LocalEngine lived when older
# programs were saved, and where it lives now.
_LOCAL_ENGINES = frozenset(
    {"persona_rag.lm:LocalEngine", f"{LocalEngine.__module__}:{LocalEngine.__qualname__}"}
)
_DSPY_LM = "dspy.clients.lm.LM"


def _settings(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Generation settings only: never a key, a header or anything else a file should not carry."""
    return {key: kwargs[key] for key in _GENERATION_KEYS if kwargs.get(key) is not None}


def dump_lm(lm: Any) -> dict[str, Any] | None:
    """The data-only record of ``lm`` (``None``: no LM of its own, the configured one is used)."""
    if lm is None:
        return None
    engine = getattr(lm, "engine", None)
    settings = _settings(getattr(lm, "kwargs", {}))
    if isinstance(engine, LocalEngine):
        fingerprint = engine.fingerprint or model_fingerprint(engine.model, engine.dtype)
        precision = {} if engine.dtype == "float32" else {"dtype": engine.dtype}
        return {"kind": "local", "model": engine.model, "fingerprint": fingerprint, **precision, **settings}
    if type(lm) is dspy.LM and isinstance(engine, str) and "model_list" not in lm.kwargs:
        endpoint = {key: lm.kwargs[key] for key in _ENDPOINT_KEYS if lm.kwargs.get(key)}
        return {
            "kind": "remote",
            "model": lm.model,
            "model_type": lm.model_type,
            "endpoint": endpoint,
            **settings,
        }
    return {"kind": "custom", "model": getattr(lm, "model", None), "class": _class_of(lm), **settings}


def _class_of(lm: Any) -> str:
    engine = getattr(lm, "engine", None)
    owner = engine if engine is not None and not isinstance(engine, str) else lm
    return f"{type(owner).__module__}:{type(owner).__qualname__}"


def legacy_record(state: Mapping[str, Any]) -> dict[str, Any]:
    """A record from DSPy's own LM state (programs saved before persona-rag kept its own)."""
    engine = state.get("engine")
    settings = _settings(state)
    if isinstance(engine, Mapping):
        engine_class = str(engine.get("class"))
        if engine_class in _LOCAL_ENGINES and isinstance(engine.get("state"), Mapping):
            return {"kind": "local", "model": str(engine["state"].get("model")), **settings}
        return {"kind": "custom", "model": state.get("model"), "class": engine_class, **settings}
    lm_class = state.get("_dspy_lm_class", _DSPY_LM)
    if lm_class != _DSPY_LM or "model_list" in state:
        return {"kind": "custom", "model": state.get("model"), "class": str(lm_class), **settings}
    endpoint = {key: state[key] for key in _ENDPOINT_KEYS if state.get(key)}
    return {
        "kind": "remote",
        "model": state.get("model"),
        "model_type": state.get("model_type", "chat"),
        "endpoint": endpoint,
        **settings,
    }


def load_lm(record: Any, *, current: Any) -> Any:
    """The LM a generator holds after loading ``record``.

    Args:
        record: the saved record (:func:`dump_lm`, or :func:`legacy_record` of an older save).
        current: the LM the generator held before loading: the caller's explicit choice.

    Raises:
        StateError: the record asks for something a file may not choose (see the module).
    """
    if record is None:
        return current
    if not isinstance(record, Mapping) or record.get("kind") not in ("local", "remote", "custom"):
        raise StateError(f"the generator's LM record is not one persona-rag writes: {record!r}")
    if record["kind"] == "local":
        return _load_local(record, current)
    configured = current if current is not None else dspy.settings.lm
    if configured is not None and _identity(dump_lm(configured)) == _identity(record):
        return current  # the caller configured exactly this LM (with its key and settings)
    endpoint = record.get("endpoint") or {}
    if record["kind"] == "remote" and not endpoint and configured is None:
        return dspy.LM(str(record["model"]), model_type=record.get("model_type", "chat"), **_settings(record))
    saved = f"{record.get('model')!r}" + (f" at {endpoint}" if endpoint else "")
    if record["kind"] == "custom":
        saved += f" (class {record.get('class')})"
    mine = "no LM" if configured is None else repr(getattr(configured, "model", configured))
    raise StateError(
        f"the generator was saved with the LM {saved}, and this process has {mine} configured. "
        "A loaded file never chooses which code runs or where requests and API keys go: to use that LM, "
        "build it yourself and pass it before loading, e.g. "
        f"Generator(lm=dspy.LM({record.get('model')!r}, ...)) or dspy.configure(lm=...)"
    )


def _identity(record: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """What must match for a configured LM to stand for a saved one: kind, model, endpoint, class."""
    record = record or {}
    return (record.get("kind"), record.get("model"), record.get("endpoint") or {}, record.get("class"))


def _load_local(record: Mapping[str, Any], current: Any) -> Any:
    model, dtype = str(record.get("model")), str(record.get("dtype", "float32"))
    try:
        check_dtype(dtype)
    except ValueError as error:
        raise StateError(f"the generator's model precision: {error}") from error
    engine = getattr(current, "engine", None)
    if isinstance(engine, LocalEngine) and engine.model == model:
        return current  # the caller chose these weights (and precision) explicitly
    explicitly = f"pass them explicitly: Generator(lm=local_lm({model!r})) before loading"
    saved = record.get("fingerprint")
    if not isinstance(saved, str):
        raise StateError(
            f"the generator's model {model} is saved without the fingerprint of its files (an older "
            f"save, or an edited file), so nothing shows they are the weights it was saved with. To use "
            f"the weights there now, {explicitly}"
        )
    try:
        refuse_custom_code(resolve_model(model))
        now = model_fingerprint(model, dtype)
    except DataError as error:
        raise StateError(f"the generator's model: {error}") from error
    except Exception as error:  # a missing folder, or a hub name not in the local cache
        raise StateError(f"the generator's model {model!r} cannot be found ({error})") from error
    if saved != now:
        raise StateError(
            f"the model files of {model} changed since the program was saved (fingerprint "
            f"{saved[:12]} -> {now[:12]}), so it would not answer as it did. To use the weights "
            f"there now, {explicitly}"
        )
    max_tokens = record.get("max_tokens")
    return local_lm(model, dtype=dtype, **({"max_tokens": int(max_tokens)} if max_tokens is not None else {}))
