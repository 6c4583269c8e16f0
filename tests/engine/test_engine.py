"""LLMEngine's interface: stop conditions, streaming deltas, abort, threads, usage, chat parsing, bad input."""

from __future__ import annotations

import threading

import pytest

from qwen3.chat import accumulate, parse
from qwen3.engine import EngineConfig, LLMEngine, SamplingParams

from .conftest import make_llm, make_model, random_prompt


def greedy(**kw) -> SamplingParams:
    kw.setdefault("max_tokens", 30)
    kw.setdefault("temperature", 0.0)
    return SamplingParams(ignore_eos=True, **kw)


def reference_text(llm, prompt, max_tokens=30):
    out = llm.generate([prompt], greedy(max_tokens=max_tokens))[0].outputs[0]
    return out.text, out.token_ids


def test_stop_string_spanning_tokens_cuts_the_text(llm, tokenizer):
    prompt = random_prompt(12, seed=6)
    text, ids = reference_text(llm, prompt)
    # A stop string made of the end of token 4's text and the start of token 5's.
    left, right = tokenizer.decode(ids[:5]), tokenizer.decode(ids[5:6])
    stop = left[-2:] + right[:2]
    assert len(left) >= 2 and len(right) >= 2 and stop in text
    out = llm.generate([prompt], greedy(stop=[stop]))[0].outputs[0]
    assert out.text == text[: text.index(stop)]
    assert out.finish_reason == "stop" and out.stop_reason == stop
    kept = llm.generate([prompt], greedy(stop=stop, include_stop_str_in_output=True))[0].outputs[0]
    assert kept.text == text[: text.index(stop) + len(stop)]


def test_stop_token_ids_and_eos(llm):
    prompt = random_prompt(12, seed=6)
    _, ids = reference_text(llm, prompt)
    target = ids[7]
    first = ids.index(target)
    out = llm.generate([prompt], greedy(stop_token_ids=[target]))[0].outputs[0]
    assert out.token_ids == ids[: first + 1] and out.finish_reason == "stop" and out.stop_reason == target
    eos = sorted(llm.engine.eos_token_ids)[0]
    llm.engine.eos_token_ids = frozenset({target})  # the model's end-of-sequence ids end it too ...
    try:
        out = llm.generate([prompt], SamplingParams(temperature=0, max_tokens=30))[0].outputs[0]
        assert out.token_ids == ids[: first + 1] and out.stop_reason is None
        out = llm.generate([prompt], greedy())[0].outputs[0]  # ... unless ignore_eos
        assert out.token_ids == ids
    finally:
        llm.engine.eos_token_ids = frozenset({eos, *llm.engine.eos_token_ids} - {target})


def test_eos_ids_come_from_generation_config(tokenizer):
    model = make_model()
    model.generation_config = {"eos_token_id": 5}
    assert LLMEngine(model, tokenizer, EngineConfig(max_model_len=64)).eos_token_ids == {5}
    model.generation_config = None
    assert LLMEngine(model, tokenizer, EngineConfig(max_model_len=64)).eos_token_ids == set(
        tokenizer.eos_token_ids
    )


def test_stream_deltas_add_up_to_the_final_outputs(llm):
    prompts = [random_prompt(n, seed=n) for n in (5, 11, 17)]
    params = [greedy(stop=["e"]), greedy(max_tokens=9), greedy(logprobs=2)]
    finals = llm.generate(prompts, params)
    texts, ids, logprobs, finished = {}, {}, {}, {}
    for delta in llm.stream(prompts, params):
        key = int(delta.request_id)
        texts[key] = texts.get(key, "") + delta.text
        ids[key] = ids.get(key, []) + delta.token_ids
        logprobs[key] = logprobs.get(key, []) + (delta.logprobs or [])
        if delta.finished:
            finished[key] = delta
    keys = sorted(finished)
    for key, final in zip(keys, finals):
        out = final.outputs[0]
        assert texts[key] == out.text and ids[key] == out.token_ids
        assert finished[key].output.text == out.text and finished[key].finish_reason == out.finish_reason
        assert finished[key].usage.completion_tokens == len(out.token_ids)
    assert len(logprobs[keys[2]]) == len(finals[2].outputs[0].token_ids)


def run_engine(engine, requests, stream: bool) -> tuple[dict, dict]:
    """Final outputs and delta counts of (request id, prompt, params, chat options) run with ``stream``."""
    for request_id, prompt, params, chat in requests:
        engine.add_request(request_id, prompt, params, chat=chat, stream=stream)
    outputs, counts = {}, {}
    while engine.has_unfinished():
        for delta in engine.step():
            key = (delta.request_id, delta.index)
            counts[key] = counts.get(key, 0) + 1
            if delta.finished:
                outputs[key] = delta.output
    return outputs, counts


def test_final_only_requests_give_the_same_outputs_as_streamed_ones(tokenizer):
    """stream=False decodes the text once at the end (and skips per-step deltas): same outputs, one delta each."""
    from qwen3.engine.detokenizer import ChatOptions

    engine = make_llm().engine
    probe, _ = run_engine(engine, [("probe", random_prompt(9, seed=1), greedy(max_tokens=25), None)], True)
    stop_id = probe["probe", 0].token_ids[6]
    requests = [
        ("plain", random_prompt(9, seed=1), greedy(max_tokens=25), None),
        ("stop_id", random_prompt(9, seed=1), greedy(stop_token_ids=[stop_id], max_tokens=25), None),
        ("eos", random_prompt(9, seed=1), SamplingParams(temperature=0, max_tokens=25), None),
        ("specials", random_prompt(7, seed=2), greedy(skip_special_tokens=False, max_tokens=20), None),
        ("stop", random_prompt(5, seed=3), greedy(stop=["e", "a"], max_tokens=25), None),
        (
            "sampled",
            random_prompt(6, seed=4),
            SamplingParams(temperature=1.0, n=2, seed=3, max_tokens=15),
            None,
        ),
        ("budget", tokenizer.encode("<|im_start|>assistant\n<think>\n"), greedy(thinking_budget=3), None),
        ("chat", tokenizer.encode("<|im_start|>assistant\n"), greedy(max_tokens=30), ChatOptions()),
    ]
    streamed, stream_counts = run_engine(engine, requests, stream=True)
    final_only, counts = run_engine(engine, requests, stream=False)
    assert streamed.keys() == final_only.keys() and len(streamed) == len(requests) + 1
    assert all(count == 1 for count in counts.values())
    assert max(stream_counts.values()) > 1
    for key, output in streamed.items():
        assert final_only[key] == output, key
    assert (
        final_only["stop_id", 0].finish_reason == "stop" and final_only["stop_id", 0].stop_reason == stop_id
    )


def test_final_only_abort_gives_the_streamed_output(tokenizer):
    """An aborted final-only request reports the text and reasoning of every token it generated, as a streamed one."""
    from qwen3.engine.detokenizer import ChatOptions

    engine = make_llm().engine
    prompt = tokenizer.encode("<|im_start|>assistant\n")
    outputs = {}
    for stream in (True, False):
        engine.add_request(f"r{stream}", prompt, greedy(max_tokens=50), chat=ChatOptions(), stream=stream)
        for _ in range(6):
            engine.step()
        engine.abort(f"r{stream}")
        (delta,) = engine.step()
        assert delta.finished and delta.finish_reason == "abort" and not engine.has_unfinished()
        outputs[stream] = (delta.output, delta.usage)
    assert outputs[False] == outputs[True] and outputs[True][0].text
    assert outputs[True][1].completion_tokens == len(outputs[True][0].token_ids) > 1


def test_chat_deltas_accumulate_to_the_parse(tokenizer):
    llm = make_llm()
    messages = [{"role": "user", "content": "hello /no_think"}]
    final = llm.chat(messages, greedy(max_tokens=40))[0].outputs[0]
    deltas = [m for d in llm.chat_stream(messages, greedy(max_tokens=40)) for m in d.messages]
    expected = parse(final.text)
    assert accumulate(deltas) == expected
    assert (final.reasoning_content, final.content) == (expected.reasoning_content, expected.content)


def test_chat_defaults_to_the_recommended_preset(llm, monkeypatch):
    seen = []
    original = llm.engine.add_request

    def spy(request_id, prompt, params=None, **kw):
        seen.append(params)
        return original(request_id, prompt, params.replace(max_tokens=2), **kw)

    monkeypatch.setattr(llm.engine, "add_request", spy)
    llm.chat([{"role": "user", "content": "hi"}])
    llm.chat([{"role": "user", "content": "hi /no_think"}])
    llm.chat([{"role": "user", "content": "hi"}], enable_thinking=False)
    assert [(p.temperature, p.top_p, p.top_k) for p in seen] == [
        (0.6, 0.95, 20),
        (0.7, 0.8, 20),
        (0.7, 0.8, 20),
    ]


def test_abort_frees_the_slot_and_reports():
    llm = make_llm(max_num_seqs=1)
    engine = llm.engine
    engine.add_request("long", random_prompt(8, seed=1), greedy(max_tokens=200))
    engine.add_request("next", random_prompt(8, seed=2), greedy(max_tokens=5))
    for _ in range(3):
        engine.step()
    assert [s.request_id for s in engine.scheduler.running] == ["long"]
    engine.abort("long")
    deltas = engine.step()
    aborted = [d for d in deltas if d.request_id == "long"]
    assert aborted and aborted[0].finished and aborted[0].finish_reason == "abort"
    assert [s.request_id for s in engine.scheduler.running] == ["next"]
    while engine.has_unfinished():
        engine.step()
    assert engine.scheduler.running == []


def test_abort_in_the_middle_keeps_the_others_correct():
    llm = make_llm()
    prompts = {f"r{i}": random_prompt(5 + 3 * i, seed=i) for i in range(4)}
    expected = {rid: reference_text(llm, p, 20)[1] for rid, p in prompts.items()}
    engine = llm.engine
    for rid, p in prompts.items():
        engine.add_request(rid, p, greedy(max_tokens=20))
    got = {rid: [] for rid in prompts}
    for step in range(100):
        if step == 6:
            engine.abort("r1")  # r1 sits in slot 1: the last slot's sequence moves into its place
        for delta in engine.step():
            got[delta.request_id] += delta.token_ids
        if not engine.has_unfinished():
            break
    assert got["r1"] == expected["r1"][: len(got["r1"])] and len(got["r1"]) < 20
    for rid in ("r0", "r2", "r3"):
        assert got[rid] == expected[rid]


def test_add_request_from_another_thread_while_stepping():
    llm = make_llm()
    engine = llm.engine
    prompts = [random_prompt(6 + i, seed=i) for i in range(6)]
    expected = [reference_text(llm, p, 12)[1] for p in prompts]
    got: dict[str, list[int]] = {}
    done = threading.Event()

    def producer():
        for i, p in enumerate(prompts):
            engine.add_request(f"t{i}", p, greedy(max_tokens=12))
        done.set()

    thread = threading.Thread(target=producer)
    thread.start()
    while not done.is_set() or engine.has_unfinished():
        for delta in engine.step():
            got.setdefault(delta.request_id, []).extend(delta.token_ids)
    thread.join()
    assert [got[f"t{i}"] for i in range(6)] == expected


def test_usage_counts(llm):
    prompt = random_prompt(7, seed=3)
    out = llm.generate([prompt], greedy(max_tokens=4, n=2, temperature=1.0, seed=0))[0]
    assert out.usage.prompt_tokens == 7 and out.usage.completion_tokens == 8
    assert out.usage.to_dict()["total_tokens"] == 15


def test_context_limit_finishes_with_length():
    llm = make_llm(max_model_len=20)
    out = llm.generate([random_prompt(15, seed=1)], greedy(max_tokens=100))[0].outputs[0]
    assert len(out.token_ids) == 5 and out.finish_reason == "length"


def test_duplicate_request_id(llm):
    engine = llm.engine
    engine.add_request("same", [1, 2, 3], greedy(max_tokens=2))
    with pytest.raises(ValueError, match="already in use"):
        engine.add_request("same", [1, 2, 3], greedy(max_tokens=2))
    while engine.has_unfinished():
        engine.step()


@pytest.mark.parametrize(
    ("prompt", "params", "message"),
    [
        ("", {}, "prompt is empty"),
        ([], {}, "no token ids"),
        ([1, 2, 10_000], {}, "prompt token 2 is 10000"),
        (list(range(1, 300)), {}, "prompt has 299 tokens but the context holds max_model_len=256"),
        ([1, 2], {"stop_token_ids": [600]}, r"stop_token_ids\[0\] is 600, not a token id of the vocabulary"),
    ],
)
def test_bad_requests_fail_before_any_work(llm, prompt, params, message):
    with pytest.raises(ValueError, match=message):
        llm.generate([prompt], greedy(**params))
    assert not llm.engine.has_unfinished()


def test_one_bad_prompt_rejects_the_whole_call(llm):
    with pytest.raises(ValueError, match="prompt 1 of 3: .*prompt is empty"):
        llm.generate(["fine", "", "ok"], greedy())
    assert not llm.engine.has_unfinished()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_tokens": 0}, r"max_tokens must be >= 1, got 0"),
        ({"top_p": 0.0}, r"top_p must be in \(0.0, 1.0\], got 0.0"),
        ({"top_p": 1.5}, r"top_p must be in \(0.0, 1.0\], got 1.5"),
        ({"thinking_budget": -1}, r"thinking_budget must be >= 0, got -1"),
        ({"temperature": -0.1}, r"temperature must be in \[0.0, 10000.0\]"),
        ({"top_k": -2}, r"top_k must be >= 0"),
        ({"min_p": 2.0}, r"min_p must be in \[0.0, 1.0\]"),
        ({"presence_penalty": 3.0}, r"presence_penalty must be in \[-2.0, 2.0\]"),
        ({"repetition_penalty": 0.0}, r"repetition_penalty must be in \[0.0001, 10000.0\]"),
        ({"n": 0}, r"n must be in \[1, 1024\]"),
        ({"logprobs": 21}, r"logprobs must be in \[0, 20\]"),
        ({"stop": [""]}, r"stop\[0\] must be a non-empty string"),
        ({"stop_token_ids": [-1]}, r"stop_token_ids\[0\] must be a token id"),
        ({"max_tokens": 2.5}, r"max_tokens must be an integer"),
        ({"temperature": float("nan")}, r"temperature must be a finite number"),
        ({"seed": 2**64}, r"seed must be at most 9223372036854775807, got 1844"),
    ],
)
def test_sampling_params_validation(settings, message):
    with pytest.raises(ValueError, match=message):
        SamplingParams(**settings)


def test_presets():
    assert (
        SamplingParams.thinking().to_dict() | {}
        == SamplingParams(temperature=0.6, top_p=0.95, top_k=20, min_p=0.0).to_dict()
    )
    p = SamplingParams.non_thinking(max_tokens=5)
    assert (p.temperature, p.top_p, p.top_k, p.min_p, p.max_tokens) == (0.7, 0.8, 20, 0.0, 5)
    assert SamplingParams(top_k=-1).top_k == 0
    assert SamplingParams.from_generation_config(None).greedy
    gen = SamplingParams.from_generation_config(
        {"do_sample": True, "temperature": 0.6, "top_k": 20, "top_p": 0.95}
    )
    assert (gen.temperature, gen.top_k, gen.top_p) == (0.6, 20, 0.95)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_num_seqs": 0}, "max_num_seqs must be a positive integer"),
        ({"max_model_len": 1}, "max_model_len must be >= 2"),
        ({"kv_cache_memory_gb": -1}, "kv_cache_memory_gb must be > 0"),
        ({"weights": "fp4"}, "weights must be one of"),
    ],
)
def test_engine_config_validation(settings, message):
    with pytest.raises(ValueError, match=message):
        EngineConfig(**settings)


def test_cache_budget_too_small_for_one_sequence(tokenizer):
    with pytest.raises(ValueError, match="less than one sequence of max_model_len=4096"):
        LLMEngine(make_model(), tokenizer, EngineConfig(max_model_len=4096, kv_cache_memory_gb=1e-5))


def test_cache_slots_follow_the_budget(tokenizer):
    model = make_model()
    per_token = model.config.kv_cache_bytes_per_token(4)
    budget_gb = 3 * 100 * per_token / 1024**3
    engine = LLMEngine(model, tokenizer, EngineConfig(max_model_len=100, kv_cache_memory_gb=budget_gb))
    assert engine.resolved.num_slots == 3
    assert engine.runner.cache.nbytes == 3 * 100 * per_token


def test_padding_rows_of_the_embedding_are_never_sampled(tokenizer):
    """The released embeddings have more rows than the tokenizer has tokens; those rows must never come out."""
    from .test_thinking_budget import BiasedHead

    model = make_model(vocab_size=600, tie_word_embeddings=False)
    model.lm_head = BiasedHead(model.lm_head, 550)  # a padding row with by far the largest logit
    llm = make_llm(model=model, tokenizer=tokenizer)
    for params in (greedy(max_tokens=10), greedy(max_tokens=10, temperature=1.0, seed=0, logprobs=2)):
        out = llm.generate([random_prompt(5, seed=1)], params)[0].outputs[0]
        assert max(out.token_ids) < len(tokenizer) == 512
