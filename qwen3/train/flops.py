"""Compute accounting: tokens and FLOPs of training, rollouts and teachers, so that distillation and RL compare
at equal cost (report section 4.5, Table 21 puts GPU hours beside the scores).

The usual dense-transformer estimate (Kaplan et al. 2020, arXiv 2001.08361, section 2.1): a forward pass costs
2N FLOPs per token and a forward + backward 6N, where N counts the parameters that take part in a matrix
multiplication for that token:

- every attention and MLP projection, the q/k and layer norms (negligible but counted), the final norm and the
  LM head (a matmul over the vocabulary, so it counts even when tied to the embedding);
- NOT the input embedding table: a lookup, no multiplication (tied models count the shared matrix once, as the
  head);
- MoE layers: the router and only the ``num_experts_per_tok`` experts a token is routed to (active parameters).

The attention-score term (2 x layers x context x width per token) is left out, as in the 6N rule; at the
sequence lengths of our debug runs it is a few percent.

Which tokens: a trained token is any position of a training forward (the backward runs over every position, not
only the targets); a forward token is a position of an inference forward: rollout generation (prompt prefill
and each generated token, one forward each thanks to the KV cache) or a teacher / reference model scoring.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from qwen3.model.config import Qwen3Config

TRAIN_FLOPS_PER_PARAM = 6  # forward 2 + backward 4
FORWARD_FLOPS_PER_PARAM = 2


def matmul_params(config: Qwen3Config) -> int:
    """N of the 6N rule for one token: the active, non-embedding parameters of ``config`` (module docstring)."""
    hidden, head_dim = config.hidden_size, config.head_dim
    attention = hidden * head_dim * (2 * config.num_attention_heads + 2 * config.num_key_value_heads)
    norms = 2 * head_dim + 2 * hidden  # q_norm, k_norm, input and post-attention layer norms
    total = 0
    for layer in range(config.num_hidden_layers):
        if config.is_moe and config.layer_is_sparse(layer):
            mlp = hidden * config.num_experts  # router
            mlp += config.num_experts_per_tok * 3 * hidden * config.moe_intermediate_size
        else:
            mlp = 3 * hidden * config.intermediate_size
        total += attention + norms + mlp
    return total + hidden + hidden * config.vocab_size  # final norm + LM head


@dataclass
class ComputeCounter:
    """Running totals of tokens and FLOPs for the named models of a run (``{"student": N, "teacher": N}``).

    ``train(model, tokens)`` adds forward+backward tokens (6N each), ``forward(model, tokens)`` inference tokens
    (2N each). ``totals()`` is a flat dict of numbers, e.g. ``student_train_tokens``, ``teacher_forward_tokens``,
    ``student_flops``, ``flops`` (all models), ready to log with each step."""

    params: Mapping[str, int]
    train_tokens: dict[str, int] = field(default_factory=dict)
    forward_tokens: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, count in self.params.items():
            if count <= 0:
                raise ValueError(
                    f"compute counter: model {name!r} needs a positive parameter count, got {count}"
                )

    @classmethod
    def for_models(cls, **configs: Qwen3Config) -> ComputeCounter:
        return cls({name: matmul_params(config) for name, config in configs.items()})

    def train(self, model: str, tokens: int) -> None:
        self._add(self.train_tokens, model, tokens)

    def forward(self, model: str, tokens: int) -> None:
        self._add(self.forward_tokens, model, tokens)

    def _add(self, table: dict[str, int], model: str, tokens: int) -> None:
        if model not in self.params:
            raise KeyError(f"compute counter: unknown model {model!r}; models: {', '.join(self.params)}")
        if tokens < 0:
            raise ValueError(f"compute counter: token count must be >= 0, got {tokens}")
        table[model] = table.get(model, 0) + tokens

    def flops(self, model: str) -> int:
        n = self.params[model]
        return n * (
            TRAIN_FLOPS_PER_PARAM * self.train_tokens.get(model, 0)
            + FORWARD_FLOPS_PER_PARAM * self.forward_tokens.get(model, 0)
        )

    def totals(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for model in self.params:
            out[f"{model}_train_tokens"] = self.train_tokens.get(model, 0)
            out[f"{model}_forward_tokens"] = self.forward_tokens.get(model, 0)
            out[f"{model}_flops"] = self.flops(model)
        out["flops"] = sum(self.flops(model) for model in self.params)
        return out

    def state_dict(self) -> dict[str, dict[str, int]]:
        return {"train_tokens": dict(self.train_tokens), "forward_tokens": dict(self.forward_tokens)}

    def load_state_dict(self, state: Mapping[str, Mapping[str, int]]) -> None:
        self.train_tokens = dict(state["train_tokens"])
        self.forward_tokens = dict(state["forward_tokens"])
