"""Policy and engine coexist: a shared module keeps its mode, flags and storage, and rollouts after an optimizer
step reflect the new weights; an inference copy fed by load_weights gives the same tokens and logprobs."""

from __future__ import annotations

import copy

import pytest
import torch

from qwen3.engine import SamplingParams
from qwen3.engine.config import EngineConfig
from qwen3.engine.llm_engine import LLMEngine

from .conftest import make_model, random_prompt

PARAMS = SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True, token_logprobs=True)
SAMPLED = SamplingParams(temperature=0.9, max_tokens=12, ignore_eos=True, token_logprobs=True, seed=5,
                         logprobs_mode="processed")  # fmt: skip
PROMPTS = [random_prompt(8, seed=s) for s in range(3)]


def rollouts(engine: LLMEngine, params: SamplingParams) -> list[tuple[list[int], list[float]]]:
    for i, prompt in enumerate(PROMPTS):
        engine.add_request(f"r{i}", prompt, params, stream=False)
    done = {}
    while engine.has_unfinished():
        for delta in engine.step():
            if delta.finished:
                done[delta.request_id] = (delta.output.token_ids, delta.output.token_logprobs)
    return [done[f"r{i}"] for i in range(len(PROMPTS))]


def policy():
    model = make_model().train()
    model.model.gradient_checkpointing = True
    return model


def update(model: torch.nn.Module) -> None:
    """One AdamW step on a language-model loss, large enough to change greedy tokens."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)
    ids = torch.tensor(PROMPTS)
    loss = model(ids)[:, :-1].float().log_softmax(-1).gather(2, ids[:, 1:, None]).mean()
    loss.backward()  # raise the prompts' likelihood (gradient ascent on -loss would do too)
    optimizer.step()
    optimizer.zero_grad()


@pytest.mark.parametrize("weights", ["reference", "fused", "packed"])
def test_shared_module_keeps_mode_flags_and_storage_and_sees_updates(tokenizer, weights):
    model = policy()
    pointers = {name: p.data_ptr() for name, p in model.named_parameters()}
    engine = LLMEngine(model, tokenizer, EngineConfig(max_model_len=128, weights=weights), shared=True)
    assert model.training and model.model.gradient_checkpointing
    assert {name: p.data_ptr() for name, p in model.named_parameters()} == pointers
    before = rollouts(engine, PARAMS)
    update(model)
    engine.sync_weights()
    after = rollouts(engine, PARAMS)
    assert [tokens for tokens, _ in after] != [tokens for tokens, _ in before]
    fresh = LLMEngine(
        copy.deepcopy(model).eval(), tokenizer, EngineConfig(max_model_len=128, weights="reference")
    )
    expected = rollouts(fresh, PARAMS)
    assert [t for t, _ in after] == [t for t, _ in expected]
    for (_, ours), (_, theirs) in zip(after, expected):
        assert ours == pytest.approx(theirs, abs=1e-5)
    assert model.training and model.model.gradient_checkpointing
    assert {name: p.data_ptr() for name, p in model.named_parameters()} == pointers


@pytest.mark.parametrize("params", [PARAMS, SAMPLED], ids=["greedy", "sampled"])
def test_an_inference_copy_after_load_weights_matches_the_shared_engine(tokenizer, params):
    model = policy()
    copy_model = copy.deepcopy(model)
    shared = LLMEngine(model, tokenizer, EngineConfig(max_model_len=128, weights="reference"), shared=True)
    inference = LLMEngine(copy_model, tokenizer, EngineConfig(max_model_len=128, weights="packed"))
    update(model)
    stale = rollouts(inference, params)
    loaded = inference.load_weights(model.state_dict().items())
    assert loaded == len(model.state_dict())
    ours, theirs = rollouts(inference, params), rollouts(shared, params)
    assert [t for t, _ in ours] == [t for t, _ in theirs] != [t for t, _ in stale]
    for (_, a), (_, b) in zip(ours, theirs):
        assert a == pytest.approx(b, abs=1e-5)


class FakeDTensor:
    """What load_weights needs of a DTensor: ``full_tensor()`` gathering the shards."""

    def __init__(self, full: torch.Tensor):
        self.shape, self._full = full.shape, full

    def full_tensor(self) -> torch.Tensor:
        return self._full


def test_load_weights_gathers_dtensors_and_names_bad_input(tokenizer):
    model = make_model()
    engine = LLMEngine(copy.deepcopy(model), tokenizer, EngineConfig(max_model_len=64, weights="fused"))
    target = {k: v.clone() + 0.01 for k, v in model.state_dict().items()}
    engine.load_weights((k, FakeDTensor(v)) for k, v in target.items())
    for name, tensor in engine.model.state_dict().items():
        torch.testing.assert_close(tensor, target[name])
    with pytest.raises(ValueError, match="'nope' is not a parameter or buffer"):
        engine.load_weights([("nope", torch.zeros(1))])
    with pytest.raises(ValueError, match=r"'lm_head.weight' has shape \(2,\)"):
        engine.load_weights([("lm_head.weight", torch.zeros(2))])
    shared = LLMEngine(model, tokenizer, EngineConfig(max_model_len=64), shared=True)
    with pytest.raises(ValueError, match="shares the trained module; call sync_weights"):
        shared.load_weights(model.state_dict().items())
    with pytest.raises(ValueError, match="rope_scaling would change the shared"):
        LLMEngine(model, tokenizer, EngineConfig(max_model_len=64, rope_scaling={"rope_type": "yarn", "factor": 2.0,
                  "original_max_position_embeddings": 32}), shared=True)  # fmt: skip


def test_load_weights_takes_real_dtensors(tokenizer):
    """FSDP2 parameters are DTensors: a one-rank gloo mesh gives real ones, sharded on dim 0."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    model = make_model()
    engine = LLMEngine(copy.deepcopy(model), tokenizer, EngineConfig(max_model_len=64, weights="packed"))
    target = {k: v + 0.01 for k, v in model.state_dict().items()}
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        engine.load_weights((k, distribute_tensor(v, mesh, [Shard(0)])) for k, v in target.items())
    finally:
        dist.destroy_process_group()
    for name, tensor in engine.model.state_dict().items():
        torch.testing.assert_close(tensor, target[name])
