"""Which process of a launch answers which missing feedback prompts, and how their answers meet.

Under ``torchrun`` or ``accelerate launch`` (:mod:`optimizers.distributed`) every process holds
the same prompts; each answers every ``world``-th one the cache lacks into a shard file of its own
(one writer per SQLite file), and the main process merges the shards into the cache. The main
process first merges what an earlier, interrupted launch of any size left in shards, so a resume
(with any process count) computes only what no process committed. One process writes straight
into the cache.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from optimizers import distributed
from optimizers.feedback.cache import FeedbackCache

__all__ = ["answer_missing"]

logger = logging.getLogger(__name__)

Job = TypeVar("Job")


def answer_missing(
    cache: FeedbackCache,
    jobs: Mapping[str, Job],
    answer: Callable[[list[Job]], dict[str, Any]],
    *,
    batch_size: int,
    progress: bool,
) -> tuple[dict[str, Any], int]:
    """Every job's answer by its cache key (``jobs``' keys): from the cache, or from ``answer``
    over this process's share of the missing jobs, ``batch_size`` at a time, each batch committed
    at once so an interrupted run repeats at most one batch.

    Returns the answers and the number of jobs the whole launch computed (not cached).
    """
    from tqdm.auto import tqdm

    world, me = distributed.world_size(), distributed.rank()
    if distributed.is_main():
        cache.merge_shards()
    distributed.barrier()
    cached = cache.get_many(list(jobs))
    missing = [key for key in jobs if key not in cached]
    mine = missing[me::world]
    logger.info(
        "feedback: %d prompts, %d cached, %d to compute (%d by process %d of %d)",
        len(jobs), len(cached), len(missing), len(mine), me, world,
    )  # fmt: skip
    writer = cache if world == 1 else FeedbackCache(cache.shard(me))
    shown = progress and distributed.is_main()
    try:
        with tqdm(total=len(mine), desc="feedback", unit="prompt", disable=not shown) as bar:
            for start in range(0, len(mine), batch_size):
                chunk = [jobs[key] for key in mine[start : start + batch_size]]
                rows = answer(chunk)
                writer.put_many(rows)
                cached.update(rows)
                bar.update(len(chunk))
    finally:
        if writer is not cache:
            writer.close()
    computed = int(distributed.all_sum([len(mine)])[0])  # by the whole launch
    if world > 1:
        distributed.barrier()  # every shard is complete and closed
        if distributed.is_main():
            cache.merge_shards()
        distributed.barrier()
        cached.update(cache.get_many(missing))
    return cached, computed
