"""The inference engine: LLM, SamplingParams, scheduler, KV cache, model runner."""
