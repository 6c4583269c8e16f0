"""Data-parallel training with PyTorch's own stack: ``torchrun`` environment, DDP or FSDP2, full state dicts.

- ``init_distributed`` reads torchrun's RANK/WORLD_SIZE/LOCAL_RANK and starts the process group: NCCL on CUDA
  (one GPU per local rank), gloo on the CPU. Without torchrun it is a world of one and nothing is started.
- ``wrap`` applies DDP, or FSDP2 (``fully_shard`` on every decoder layer, then on the root): parameters, gradients
  and optimizer state sharded across ranks.
- Checkpoints hold FULL state dicts with parameter names as keys (``model_state``/``optimizer_state`` gather them;
  ``load_optimizer_state`` shards them again), so a checkpoint written with any world size and strategy loads with
  any other.
- Only rank 0 logs and writes files.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistEnv:
    """The process's place in a torchrun job (a world of one without torchrun) and its device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device = 'cuda' but torch.cuda.is_available() is False")
    target = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(target)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if use_cuda else "gloo",
            timeout=datetime.timedelta(minutes=int(os.environ.get("QWEN3_DIST_TIMEOUT_MIN", "30"))),
            device_id=target if use_cuda else None,
        )
    return DistEnv(rank, world_size, local_rank, target)


def shutdown(env: DistEnv, synchronize: bool = True) -> None:
    """Leave the process group cleanly: the trainer must be gone by now. Collecting its cycles first frees any
    gloo/FSDP work objects while the interpreter is alive (freed during interpreter teardown they can abort)."""
    if env.distributed and dist.is_initialized():
        import gc

        gc.collect()
        if synchronize:
            dist.barrier()
        dist.destroy_process_group()


def wrap(module: nn.Module, strategy: str, env: DistEnv, layers: list[nn.Module], is_moe: bool) -> nn.Module:
    """DDP or FSDP2 around ``module`` (the train step holding the model); unchanged in a world of one."""
    if not env.distributed:
        return module
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        # Experts that received no token in a micro-batch take no part in its graph (the "loop" kernel).
        return DistributedDataParallel(
            module,
            device_ids=[env.device.index] if env.device.type == "cuda" else None,
            find_unused_parameters=is_moe,
        )
    from torch.distributed.fsdp import fully_shard

    for layer in layers:
        fully_shard(layer)
    fully_shard(module)
    return module


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if hasattr(module, "no_sync") and hasattr(module, "module") else module


@contextlib.contextmanager
def gradient_sync(module: nn.Module, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulation."""
    if enabled:
        yield
    elif hasattr(module, "no_sync"):  # DDP
        with module.no_sync():
            yield
    elif hasattr(module, "set_requires_gradient_sync"):  # FSDP2
        module.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            module.set_requires_gradient_sync(True)
    else:
        yield


def all_reduce_sum(values: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.distributed:
        dist.all_reduce(values)
    return values


def broadcast_object(obj: Any, env: DistEnv) -> Any:
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(values: Sequence[Any], env: DistEnv | None) -> list[Any]:
    """This rank's contiguous share of ``values`` (all of them in a world of one; shares differ by at most one
    when the count does not divide): the ranks' shares in rank order are ``values``, so work split with
    ``shard`` and joined with ``gather`` is the single-process list."""
    values = list(values)
    if env is None or env.world_size == 1:
        return values
    world = env.world_size
    return values[len(values) * env.rank // world : len(values) * (env.rank + 1) // world]


def gather(values: list[Any], env: DistEnv | None) -> list[Any]:
    """Every rank's list, concatenated in rank order: the single-process list of the same work."""
    if env is None or env.world_size == 1:
        return values
    boxes: list[Any] = [None] * env.world_size
    dist.all_gather_object(boxes, values)
    return [value for box in boxes for value in box]


def _is_sharded(module: nn.Module) -> bool:
    return any(type(p).__name__ == "DTensor" for p in module.parameters())


def _full_options(**kwargs: Any):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kwargs)


def model_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Full, unsharded parameters by name (on CPU). Collective under FSDP: every rank must call it."""
    if _is_sharded(module):
        from torch.distributed.checkpoint.state_dict import get_model_state_dict

        return get_model_state_dict(module, options=_full_options(cpu_offload=True))
    return {name: tensor.detach().cpu() for name, tensor in unwrap(module).state_dict().items()}


def optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Full optimizer state keyed by parameter name. Collective under FSDP (rank 0 receives it)."""
    if _is_sharded(module):
        from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

        return get_optimizer_state_dict(module, optimizer, options=_full_options(cpu_offload=True))
    names = {param: name for name, param in unwrap(module).named_parameters()}
    order = [names[param] for group in optimizer.param_groups for param in group["params"]]
    state = optimizer.state_dict()
    return {
        "state": {order[index]: value for index, value in state["state"].items()},
        "param_groups": [{**g, "params": [order[i] for i in g["params"]]} for g in state["param_groups"]],
    }


def load_optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Inverse of ``optimizer_state`` for any world size and strategy (all ranks pass the full state). The
    moments and step counts are loaded; the hyperparameters stay those the optimizer was built with."""
    settings = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    _load_named_optimizer_state(module, optimizer, state)
    for group, kept in zip(optimizer.param_groups, settings):
        group.update(kept)


def _load_named_optimizer_state(
    module: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    if _is_sharded(module):
        from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

        set_optimizer_state_dict(module, optimizer, state, options=_full_options())
        return
    names = {param: name for name, param in unwrap(module).named_parameters()}
    index = {
        names[param]: i for i, param in enumerate(p for g in optimizer.param_groups for p in g["params"])
    }
    unknown = sorted(set(state["state"]) - set(index))
    if unknown:
        raise ValueError(f"optimizer state names parameters the model lacks: {', '.join(unknown[:5])}")
    optimizer.load_state_dict(
        {
            "state": {index[name]: value for name, value in state["state"].items()},
            "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in state["param_groups"]],
        }
    )


def assemble_model(model: nn.Module, weights: dict[str, torch.Tensor], prefix: str = "model.") -> nn.Module:
    """A plain copy of ``model`` (a Qwen3ForCausalLM whose live parameters are sharded) holding the gathered
    ``weights`` of the train step (names under ``prefix``), for saving."""
    from qwen3.model.model import Qwen3ForCausalLM

    state = {name[len(prefix) :]: tensor for name, tensor in weights.items() if name.startswith(prefix)}
    with torch.device("meta"):
        full = Qwen3ForCausalLM(model.config)
    full.load_state_dict(state, assign=True)
    if model.config.tie_word_embeddings:
        full.lm_head.weight = full.model.embed_tokens.weight
    full.generation_config = model.generation_config
    return full
