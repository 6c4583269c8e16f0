"""Distillation: the divergences, the top-k store, teacher compatibility, and both modes reducing the KL."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from qwen3.model.checkpoint import init_model, load_model
from qwen3.model.presets import get_preset
from qwen3.tokenizer.train import tokenizer_for_vocab
from qwen3.train.batch import IGNORE, Row, collate
from qwen3.train.distill import (
    IncompatibleTeacher,
    check_compatible,
    distill_on_policy,
    linear_divergence,
    mean_divergence,
    prompt_row,
    run_distill,
    synthetic_prompts,
    token_divergence,
    topk_forward_kl,
    with_mode,
)
from qwen3.train.topk_store import TopKStore, build_topk_store, unpack_topk


def logits(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_divergences_by_hand():
    s, t = logits([0.0, 0.0]), logits([math.log(3.0), 0.0])  # student (1/2, 1/2), teacher (3/4, 1/4)
    forward = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    reverse = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert token_divergence(s, t, "forward").item() == pytest.approx(forward)
    assert token_divergence(s, t, "reverse").item() == pytest.approx(reverse)
    m = [0.625, 0.375]
    jsd = 0.5 * (0.75 * math.log(0.75 / m[0]) + 0.25 * math.log(0.25 / m[1])) + 0.5 * (
        0.5 * math.log(0.5 / m[0]) + 0.5 * math.log(0.5 / m[1])
    )
    assert token_divergence(s, t, "jsd", beta=0.5).item() == pytest.approx(jsd)
    # Temperature softens both: at a high temperature the two are nearly equal.
    assert token_divergence(s, t, "forward", temperature=100.0).item() < 1e-4


def test_divergences_vanish_on_equal_distributions_and_jsd_is_bounded():
    torch.manual_seed(0)
    a, b = torch.randn(5, 7), torch.randn(5, 7) * 4
    for kind in ("forward", "reverse", "jsd"):
        assert token_divergence(a, a, kind).abs().max() < 1e-6
        assert (token_divergence(a, b, kind) > 0).all()
    assert (token_divergence(a, b, "jsd") <= math.log(2) + 1e-6).all()
    assert torch.allclose(token_divergence(a, b, "jsd", 0.5), token_divergence(b, a, "jsd", 0.5), atol=1e-6)
    with pytest.raises(ValueError, match="divergence must be one of"):
        token_divergence(a, b, "tv")
    with pytest.raises(ValueError, match="differ"):
        token_divergence(a, b[:, :3])


def test_topk_kl_equals_the_full_kl_when_k_is_the_vocabulary():
    torch.manual_seed(1)
    s, t = torch.randn(4, 6), torch.randn(4, 6)
    values, ids = torch.log_softmax(t, -1).topk(6, dim=-1)
    assert torch.allclose(topk_forward_kl(s, ids, values, 1.0), token_divergence(s, t), atol=1e-5)


@pytest.mark.parametrize("kind", ["forward", "reverse", "jsd"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_the_fused_divergence_equals_the_reference_in_value_and_gradients(kind, temperature):
    torch.manual_seed(3)
    hidden = torch.randn(10, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(13, 8, dtype=torch.float64, requires_grad=True)
    teacher_hidden, teacher_weight = (
        torch.randn(10, 6, dtype=torch.float64),
        torch.randn(13, 6, dtype=torch.float64),
    )
    fused = linear_divergence(
        hidden, weight, teacher_hidden, teacher_weight, kind, 0.3, temperature, chunk_size=4
    )
    (fused * 1.5).backward()
    grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    reference = token_divergence(hidden @ weight.T, teacher_hidden @ teacher_weight.T, kind, 0.3, temperature)
    (reference.sum() * 1.5).backward()
    assert fused.item() == pytest.approx(reference.sum().item(), rel=1e-6)
    assert torch.allclose(grads[0], hidden.grad, atol=1e-6) and torch.allclose(
        grads[1], weight.grad, atol=1e-6
    )


def test_the_on_policy_loss_fused_and_plain_agree_under_bf16_autocast():
    torch.manual_seed(4)
    student = init_model(get_preset("qwen3-debug-tiny"), seed=0)
    teacher = init_model(get_preset("qwen3-debug-tiny"), seed=1).to(torch.bfloat16)
    rows = rows_for(tokenizer_for_vocab(512), count=3)
    batch = collate(rows, pad_id=0)
    results = []
    for chunk in (0, 16):
        with torch.autocast("cpu", torch.bfloat16):
            out = distill_on_policy(teacher, "jsd", chunk_size=chunk)(student, batch)
        out.loss_sum.backward()
        results.append((out.loss_sum.item(), student.lm_head.weight.grad.clone()))
        student.zero_grad()
    (plain, plain_grad), (fused, fused_grad) = results
    assert fused == pytest.approx(plain, rel=2e-2)
    assert torch.nn.functional.cosine_similarity(plain_grad.flatten(), fused_grad.flatten(), dim=0) > 0.99


def rows_for(tokenizer, count=4, completion=12):
    torch.manual_seed(2)
    from qwen3.chat import render

    rows = []
    for prompt in synthetic_prompts(count, seed=5):
        ids = tokenizer.encode(render(with_mode(prompt, "think"), add_generation_prompt=True))
        rows.append(prompt_row(ids, torch.randint(0, 400, (completion,)).tolist()))
    return rows


def test_topk_store_round_trips(tmp_path):
    teacher = init_model(get_preset("qwen3-debug-tiny"), seed=1)
    rows = rows_for(tokenizer_for_vocab(512), count=3)
    built = build_topk_store(teacher, rows, tmp_path / "s.safetensors", k=5, temperature=2.0, teacher_name="t",
                             batch_size=2)  # fmt: skip
    store = TopKStore.load(tmp_path / "s.safetensors")
    assert (store.k, store.temperature, store.teacher, len(store)) == (5, 2.0, "t", 3)
    assert [p.name for p in tmp_path.iterdir()] == ["s.safetensors"]  # no temporary left behind
    for a, b, row in zip(built.sequences, store.sequences, rows):
        assert b.input_ids == row.input_ids and b.labels == row.labels
        assert torch.equal(a.topk_ids, b.topk_ids) and torch.equal(a.topk_logprobs, b.topk_logprobs)
        assert b.topk_ids.dtype == torch.int32 and b.topk_logprobs.dtype == torch.float16
    # The stored values are the teacher's top-5 log-probabilities at temperature 2 at each target position.
    with torch.no_grad():
        full = torch.log_softmax(teacher(torch.tensor([rows[0].input_ids])).float()[0] / 2.0, -1)
    target = [i for i, label in enumerate(rows[0].labels) if label != IGNORE][0]
    expected_values, expected_ids = full[target].topk(5)
    assert store[0].topk_ids[target].tolist() == expected_ids.tolist()
    assert torch.allclose(store[0].topk_logprobs[target].float(), expected_values, atol=2e-3)
    assert not store[0].topk_ids[0].any()  # a prompt position stores nothing
    # Through a row and the trainer's collate the top-k comes back as [B, T, k].
    batch = collate([s.to_row() for s in store.sequences], pad_id=0)
    ids, values = unpack_topk(batch.extras)
    assert ids.shape == (3, batch.input_ids.shape[1], 5) and torch.equal(ids[0, target], expected_ids)
    with pytest.raises(ValueError, match="not a top-k store"):
        from safetensors.torch import save_file

        save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
        TopKStore.load(tmp_path / "other.safetensors")


def test_a_teacher_with_another_vocabulary_or_template_is_refused():
    small, big = tokenizer_for_vocab(512), tokenizer_for_vocab(1024)
    with pytest.raises(
        IncompatibleTeacher, match="teacher big-teacher has another vocabulary .* student tiny"
    ):
        check_compatible(small, big, "tiny", "big-teacher")
    other = copy.copy(tokenizer_for_vocab(512))  # the factory caches: never mutate its tokenizer
    other.chat_template = "{{ messages }}"
    with pytest.raises(IncompatibleTeacher, match="another chat template than student tiny"):
        check_compatible(small, other, "tiny", "t2")
    check_compatible(small, tokenizer_for_vocab(512), "tiny", "same")


def distill_table(run_dir, mode, steps=24, **distill):
    return {
        "run_dir": str(run_dir), "stage": "distill", "steps": steps, "micro_batch_size": 8, "log_every": 1000,
        "model": {"name": "qwen3-debug-tiny"}, "data": {"kind": "sft", "synthetic": "chat", "seq_len": 128},
        "optim": {"lr": 3e-3, "weight_decay": 0.0}, "schedule": {"kind": "constant"}, "checkpoint": {"every": 0},
        "distill": {"mode": mode, "teacher": "qwen3-debug-tiny", "teacher_seed": 1, "prompts": 16,
                    "max_new_tokens": 16, **distill},
    }  # fmt: skip


def teacher_rows(teacher, tokenizer):
    from qwen3.engine.llm import LLM
    from qwen3.train.distill import example_rows, teacher_examples

    llm = LLM(teacher, tokenizer=tokenizer, max_model_len=128, max_num_seqs=8)
    examples = teacher_examples(llm, synthetic_prompts(4, seed=99), max_tokens=16, temperature=1.0, seed=7)
    return example_rows(examples, tokenizer, 128)


def confident_teacher(directory):
    """A random qwen3-debug-tiny whose logits are 5x sharper: a teacher with opinions, as a trained one has."""
    from qwen3.model.checkpoint import init_checkpoint, save_model

    init_checkpoint("qwen3-debug-tiny", directory, seed=1)
    model = load_model(directory)
    with torch.no_grad():
        model.model.norm.weight.mul_(5.0)
    return save_model(model, directory)


def trained_student(result):
    from qwen3.train.checkpoint import model_dir

    return load_model(model_dir(result.checkpoint))


@pytest.mark.parametrize(
    ("mode", "extra"),
    [("on_policy", {}), ("on_policy", {"divergence": "reverse"}), ("off_policy_logits", {"top_k": 16})],
)
def test_distillation_reduces_the_kl_to_the_teacher(tmp_path, mode, extra):
    tokenizer = tokenizer_for_vocab(512)
    teacher_dir = confident_teacher(tmp_path / "teacher")
    teacher = load_model(teacher_dir)
    before = init_model(get_preset("qwen3-debug-tiny"), seed=0)  # the trainer's initial student
    result = run_distill(
        distill_table(tmp_path / "run", mode, teacher=str(teacher_dir), **extra), progress=False
    )
    after = trained_student(result)
    # On-policy learns on the student's own samples, off-policy on the teacher's: each is measured on fresh rows
    # of its own kind (random completions stand for a student's early samples).
    held_out = rows_for(tokenizer) if mode == "on_policy" else teacher_rows(teacher, tokenizer)
    kl_before = mean_divergence(before, teacher, held_out, pad_id=tokenizer.pad_token_id)
    kl_after = mean_divergence(after, teacher, held_out, pad_id=tokenizer.pad_token_id)
    assert kl_after < 0.8 * kl_before
    metrics = [
        line for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"flops"' in line
    ]
    assert metrics, "the compute counters are logged with each step"


def test_on_policy_counts_rollouts_training_and_teacher_tokens(tmp_path):
    import json

    run_distill(distill_table(tmp_path, "on_policy", steps=2), progress=False)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    last = records[-1]
    # Each step logs its own share and the run's running total; the shares add up to the total.
    for key in ("flops", "student_flops", "teacher_flops"):
        assert all(r[f"step_{key}"] > 0 for r in records)
        assert sum(r[f"step_{key}"] for r in records) == last[key]
    assert last["student_train_tokens"] == last["teacher_forward_tokens"] > 0  # the teacher scores every row
    assert last["student_forward_tokens"] > last["student_train_tokens"]  # rollouts: prompt + completion
    n_student = 106_880
    assert last["student_flops"] == n_student * (
        6 * last["student_train_tokens"] + 2 * last["student_forward_tokens"]
    )


def test_row_trains_on_the_completion_only():
    row = prompt_row([1, 2, 3], [7, 8, 9])
    assert row.input_ids == [1, 2, 3, 7, 8] and row.labels == [IGNORE, IGNORE, 7, 8, 9]
    assert Row(row.input_ids, row.labels).num_targets == 3


def test_a_bigger_teacher_with_the_same_tokenizer_teaches_and_is_counted_at_its_size(tmp_path):
    import json

    from qwen3.model.checkpoint import default_generation_config, save_model
    from qwen3.train.flops import matmul_params

    tokenizer = tokenizer_for_vocab(512)
    config = get_preset("qwen3-debug-tiny").replace(
        hidden_size=96,
        num_hidden_layers=3,
        bos_token_id=tokenizer.endoftext_id,
        eos_token_id=tokenizer.im_end_id,
    )
    teacher = init_model(config, seed=1)
    teacher.generation_config = default_generation_config(config, tokenizer)
    directory = save_model(teacher, tmp_path / "teacher", tokenizer=tokenizer)
    run_distill(distill_table(tmp_path / "run", "on_policy", steps=2, teacher=str(directory)), progress=False)
    last = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["teacher_flops"] == 2 * matmul_params(config) * last["teacher_forward_tokens"] > 0
    assert math.isfinite(last["loss"]) and last["loss"] > 0


def test_the_teacher_answers_every_prompt_in_both_modes():
    from qwen3.engine.llm import LLM
    from qwen3.train.distill import teacher_examples

    teacher = init_model(get_preset("qwen3-debug-tiny"), seed=1)
    llm = LLM(teacher, tokenizer=tokenizer_for_vocab(512), max_model_len=128, max_num_seqs=4)
    examples = teacher_examples(llm, synthetic_prompts(2, seed=3), max_tokens=4, seed=5)
    asked = [e["messages"][-2]["content"].rsplit(" ", 1)[-1] for e in examples]
    assert asked == ["/think", "/think", "/no_think", "/no_think"]
    assert all(e["messages"][-1]["role"] == "assistant" for e in examples)


def test_under_torchrun_a_rank_samples_only_its_share_and_receives_every_rank_s_rows(monkeypatch):
    import qwen3.train.distill as distill
    from qwen3.train.distributed import DistEnv
    from qwen3.train.flops import ComputeCounter

    class Engine:
        def __init__(self):
            self.seeds = []

        def chat(self, conversations, params, progress=False):
            from types import SimpleNamespace

            self.seeds += [p.seed for p in params]
            return [SimpleNamespace(prompt_token_ids=[1, 2], outputs=[SimpleNamespace(token_ids=[p.seed])])
                    for p in params]  # fmt: skip

    def other_ranks(values, env):  # rank 0 sampled serials 0-3 (seeds 100-103); this is rank 1
        return [([1, 2], [100 + i]) for i in range(4)] + values

    monkeypatch.setattr(distill, "gather", other_ranks)
    counter = ComputeCounter({"student": 1})
    settings = distill.RolloutSettings(rows=8, seed=100)
    rollouts = distill.OnPolicyRollouts(synthetic_prompts(3), None, settings, counter)
    rollouts.attach(torch.nn.Linear(1, 1), DistEnv(rank=1, world_size=2))
    rollouts.llm = engine = Engine()
    monkeypatch.setattr(rollouts, "_engine", lambda: engine)
    rows = [rollouts.next_row() for _ in range(8)]
    assert engine.seeds == [104, 105, 106, 107]  # its share only, seeded by the batch-wide serial
    assert [row.labels[-1] for row in rows] == list(range(100, 108))  # every rank's rows, in rank order
    assert counter.forward_tokens["student"] == 8 * 3  # all 8 rollouts counted on every rank


def test_a_bf16_engine_copy_of_the_student_keeps_its_rotary_buffers_in_fp32():
    # The engine's copy is GRPO's ``inference_copy`` loaded with the student's weights: parameters in bf16, but
    # RoPE's inv_freq stays fp32 (a cast copy would round the frequencies and misplace every position).
    from qwen3.train.distill import OnPolicyRollouts, RolloutSettings
    from qwen3.train.flops import ComputeCounter
    from qwen3.train.grpo import inference_copy

    student = init_model(get_preset("qwen3-debug-tiny"), seed=0)
    settings = RolloutSettings(rows=2, dtype=torch.bfloat16)
    rollouts = OnPolicyRollouts(synthetic_prompts(1), tokenizer_for_vocab(512), settings,
                                ComputeCounter({"student": 1}), {"max_model_len": 64, "max_num_seqs": 2})  # fmt: skip
    rollouts.attach(student)
    engine_model = rollouts._engine().model
    expected = inference_copy(student, torch.device("cpu"), torch.bfloat16)
    buffers = dict(expected.named_buffers())
    assert {n: b.dtype for n, b in engine_model.named_buffers()} == {n: b.dtype for n, b in buffers.items()}
    assert engine_model.model.rotary_emb.inv_freq.dtype == torch.float32
    assert torch.equal(engine_model.model.rotary_emb.inv_freq, student.model.rotary_emb.inv_freq)
    for name, weight in student.state_dict().items():
        assert torch.equal(engine_model.state_dict()[name], weight.to(torch.bfloat16)), name
