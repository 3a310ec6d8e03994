"""Which process this is when `torchrun` or `accelerate launch` starts several, and the few collective steps that
training needs: decide on the main process, stop together, gather predictions.

Both launchers say it in the environment (RANK, WORLD_SIZE, LOCAL_RANK). Without them this is world size 1, and
every function here is a plain local call: nothing imports or initialises torch.distributed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from headcls.errors import HeadclsError

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """The process that reads first, writes every file and logs the run."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def ranks() -> Ranks:
    """This process's place in the job, from the launcher's environment."""
    env = os.environ
    try:
        return Ranks(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))
    except ValueError:
        raise HeadclsError(f"RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers, got RANK={env.get('RANK')!r} "
                           f"WORLD_SIZE={env.get('WORLD_SIZE')!r} LOCAL_RANK={env.get('LOCAL_RANK')!r}") from None


def init(use_cpu: bool) -> Ranks:
    """Join the launcher's process group (gloo on CPU, nccl on GPU, as the Trainer would) before any work, so the
    processes can agree on what to do from the first step. A no-op in a single process."""
    here = ranks()
    if here.distributed:
        import torch.distributed as dist
        from accelerate import PartialState

        if not dist.is_initialized():
            PartialState(cpu=use_cpu)  # the Trainer's own set-up: backend and device from the environment
        logger.info("Process %d of %d (local rank %d), backend %s", here.rank, here.world_size, here.local_rank,
                    dist.get_backend())
    return here


class FollowsMain(HeadclsError):
    """The main process refused the run; the others stop with it, silently (the main process says why)."""


def on_main(here: Ranks, work: Callable[[], T]) -> T:
    """Run `work` on the main process only and hand its result to every process. If it raises a user error, every
    process raises it, so the whole job stops at once with the main process's one line."""
    if not here.distributed:
        return work()
    import torch.distributed as dist

    box: list[Any] = [None]
    error: HeadclsError | None = None
    if here.is_main:
        try:
            box[0] = ("ok", work())
        except HeadclsError as e:
            error, box[0] = e, ("error", str(e))
        except BaseException as e:  # a bug or Ctrl-C: still tell the others, then raise it here
            box[0] = ("error", f"the main process failed ({type(e).__name__})")
            dist.broadcast_object_list(box, src=0)
            raise
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        if error is not None:
            raise error
        raise FollowsMain(value)
    return value


def barrier(here: Ranks) -> None:
    """Wait until every process gets here (accelerate's wait_for_everyone: on nccl it names this GPU)."""
    if here.distributed:
        from accelerate import PartialState

        PartialState().wait_for_everyone()


def any_rank(here: Ranks, flag: bool) -> bool:
    """True on every process when `flag` is true on any (a stop asked of one process stops them all)."""
    if not here.distributed:
        return flag
    import torch
    import torch.distributed as dist

    device = f"cuda:{here.local_rank}" if dist.get_backend() == "nccl" else "cpu"
    value = torch.tensor([int(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather_to_main(here: Ranks, item: T) -> list[T] | None:
    """Every process's `item`, in rank order, on the main process; None on the others."""
    if not here.distributed:
        return [item]
    from accelerate.utils import gather_object

    items = gather_object([item])  # an all_gather to every process (nccl has no gather_object); joins the lists
    return items if here.is_main else None


def shard(count: int, here: Ranks) -> range:
    """The rows this process handles of `count`: every world_size-th row from its rank (an equal share within one)."""
    return range(here.rank, count, here.world_size)


def main_first(here: Ranks, work: Callable[[], T]) -> T:
    """Run `work` on the main process first (it reads, downloads and checks: its user errors stop every process),
    then on the others, which find what it fetched in the caches."""
    if not here.distributed:
        return work()
    done: list[T] = []
    on_main(here, lambda: done.append(work()))
    return done[0] if here.is_main else work()
