"""``Qwen3Config``: one dataclass for the dense and the MoE Qwen3 models, with the Hugging Face field names.

``from_dict``/``from_json_file``/``from_pretrained`` read a ``config.json`` as transformers would (the v4
``rope_theta``/``rope_scaling`` keys and the v5 ``rope_parameters``/``num_local_experts``/``dtype`` spellings);
``to_dict``/``save_pretrained`` write what the released checkpoints contain. Keys we do not model are kept in
``extra`` and written back, so a load/save round trip loses nothing. Every inconsistency is a ``ConfigError`` that
names the file and the field.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwen3.model.validation import MODEL_TYPES, ConfigError, validate
from qwen3.utils.atomic import atomic_write_json

# Keys derived from the fields on writing, or read into a field under another name.
_CONSUMED_KEYS = {
    "architectures",
    "model_type",
    "rope_parameters",
    "num_local_experts",
    "dtype",
    "layer_types",
}
_MOE_FIELDS = (
    "num_experts",
    "num_experts_per_tok",
    "moe_intermediate_size",
    "norm_topk_prob",
    "decoder_sparse_step",
    "mlp_only_layers",
    "router_aux_loss_coef",
    "output_router_logits",
)


@dataclass
class Qwen3Config:
    """Architecture of a Qwen3 model (report §2, Tables 1-2; the released checkpoints' config.json). Field names and meanings are transformers'.

    ``model_type`` is "qwen3" (dense) or "qwen3_moe"; when left None it follows ``num_experts``. A MoE layer is
    used where ``layer_is_sparse(i)`` (transformers' rule); other layers use the dense SwiGLU MLP of width
    ``intermediate_size``. Defaults of optional fields are transformers' class defaults, used only when a
    config.json omits the key (the released configs set every one of them).
    """

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int = 0
    num_key_value_heads: int | None = None  # None: same as num_attention_heads (MHA)
    head_dim: int | None = None  # None: 128 for "qwen3", hidden_size // heads for "qwen3_moe" (transformers)
    model_type: str | None = None
    hidden_act: str = "silu"
    max_position_embeddings: int = 32768
    initializer_range: float = 0.02
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None  # None or {"rope_type": "yarn", "factor": 4.0, ...}
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    attention_dropout: float = 0.0
    use_sliding_window: bool = False
    sliding_window: int | None = None
    max_window_layers: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    torch_dtype: str | None = None
    use_cache: bool = True
    # MoE (model_type "qwen3_moe")
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    norm_topk_prob: bool = False
    decoder_sparse_step: int = 1
    mlp_only_layers: list[int] = field(default_factory=list)
    router_aux_loss_coef: float = 0.001
    output_router_logits: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # unknown config.json keys, written back unchanged

    def __post_init__(self) -> None:
        if self.model_type is None:
            self.model_type = "qwen3_moe" if self.num_experts else "qwen3"
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None and self.model_type == "qwen3":
            self.head_dim = 128
        if (
            self.head_dim is None
            and isinstance(self.num_attention_heads, int)
            and self.num_attention_heads > 0
        ):
            self.head_dim = self.hidden_size // self.num_attention_heads
        self.rope_scaling = _normalise_rope_scaling(self.rope_scaling)
        self.mlp_only_layers = list(self.mlp_only_layers)
        validate(self)

    # ----- derived properties -----
    @property
    def is_moe(self) -> bool:
        return self.model_type == "qwen3_moe"

    def layer_is_sparse(self, layer_idx: int) -> bool:
        """transformers' rule (Qwen3MoeDecoderLayer): MoE unless listed in mlp_only_layers or off the step."""
        return (
            self.is_moe
            and layer_idx not in self.mlp_only_layers
            and self.num_experts > 0
            and (layer_idx + 1) % self.decoder_sparse_step == 0
        )

    @property
    def sparse_layers(self) -> list[int]:
        return [i for i in range(self.num_hidden_layers) if self.layer_is_sparse(i)]

    def kv_cache_bytes_per_token(self, bytes_per_element: int = 2) -> int:
        return 2 * self.num_hidden_layers * self.num_key_value_heads * self.head_dim * bytes_per_element

    def replace(self, **changes: Any) -> Qwen3Config:
        """A validated copy with some fields changed (``dataclasses.replace`` plus a deep copy of the rest)."""
        return dataclasses.replace(copy.deepcopy(self), **changes)

    # ----- reading -----
    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> Qwen3Config:
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(raw).__name__}")
        d = dict(raw)
        model_type = d.get("model_type")
        if model_type is None:
            raise ConfigError(
                f"{source}: missing required field 'model_type' (expected one of {sorted(MODEL_TYPES)})"
            )
        if not isinstance(model_type, str) or model_type not in MODEL_TYPES:
            raise ConfigError(
                f"{source}: model_type {model_type!r} is not supported (expected one of {sorted(MODEL_TYPES)})"
            )
        _merge_alias(d, "num_local_experts", "num_experts", source)
        _merge_alias(d, "dtype", "torch_dtype", source)
        _merge_rope_parameters(d, source)
        _check_layer_types(d, source)
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in d.items() if k in names}
        extra = {k: v for k, v in d.items() if k not in names and k not in _CONSUMED_KEYS}
        for name in _required_fields(kwargs):
            if name not in kwargs:
                raise ConfigError(f"{source}: missing required field {name!r} (model_type {model_type!r})")
        try:
            return cls(**kwargs, extra=extra)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None

    @classmethod
    def from_json_file(cls, path: str | Path) -> Qwen3Config:
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: file not found") from None
        except json.JSONDecodeError as err:
            raise ConfigError(
                f"{path}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}"
            ) from None
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> Qwen3Config:
        return cls.from_json_file(Path(directory) / "config.json")

    # ----- writing -----
    def to_dict(self) -> dict[str, Any]:
        """The config.json object, in the released checkpoints' (transformers 4.51) spelling."""
        out: dict[str, Any] = dict(self.extra)
        out["architectures"] = [MODEL_TYPES[self.model_type]]
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            skip = f.name == "extra" or (f.name in _MOE_FIELDS and not self.is_moe)
            # transformers' strict config classes reject null for most fields; the released configs have
            # null only for these two.
            if skip or (value is None and f.name not in ("rope_scaling", "sliding_window")):
                continue
            out[f.name] = copy.deepcopy(value)
        return dict(sorted(out.items()))

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save_pretrained(self, directory: str | Path) -> None:
        atomic_write_json(Path(directory) / "config.json", self.to_dict())


def _required_fields(kwargs: dict[str, Any]) -> list[str]:
    required = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads"]
    if kwargs.get("model_type") == "qwen3_moe":
        required += ["num_experts", "num_experts_per_tok", "moe_intermediate_size"]
        if kwargs.get("mlp_only_layers") or kwargs.get("decoder_sparse_step", 1) != 1:
            required.append("intermediate_size")
    else:
        required.append("intermediate_size")
    return required


def _merge_alias(d: dict[str, Any], alias: str, name: str, source: str) -> None:
    if alias not in d:
        return
    value = d.pop(alias)
    if name in d and d[name] != value:
        raise ConfigError(f"{source}: {alias} ({value!r}) contradicts {name} ({d[name]!r})")
    d[name] = value


def _merge_rope_parameters(d: dict[str, Any], source: str) -> None:
    """transformers v5 writes ``rope_parameters`` (theta inside, rope_type "default" for plain RoPE)."""
    params = d.pop("rope_parameters", None)
    if params is None:
        return
    if not isinstance(params, dict):
        raise ConfigError(f"{source}: rope_parameters must be an object, got {params!r}")
    params = dict(params)
    if "rope_theta" in params:
        theta = params.pop("rope_theta")
        if "rope_theta" in d and d["rope_theta"] != theta:
            raise ConfigError(
                f"{source}: rope_parameters.rope_theta ({theta!r}) contradicts rope_theta ({d['rope_theta']!r})"
            )
        d["rope_theta"] = theta
    scaling = _normalise_rope_scaling(params)
    if "rope_scaling" in d and _normalise_rope_scaling(d["rope_scaling"]) != scaling:
        raise ConfigError(
            f"{source}: rope_parameters ({params!r}) contradicts rope_scaling ({d['rope_scaling']!r})"
        )
    d["rope_scaling"] = scaling


def _check_layer_types(d: dict[str, Any], source: str) -> None:
    """transformers v5 dense configs list an attention type per layer; Qwen3 uses full attention everywhere.
    The list is derived, so it is not kept (it would go stale if num_hidden_layers changed)."""
    layer_types = d.get("layer_types")
    if layer_types is not None and set(layer_types) - {"full_attention"}:
        raise ConfigError(
            f"{source}: layer_types {sorted(set(layer_types))} is not supported (only full_attention)"
        )


def _normalise_rope_scaling(scaling: Any) -> dict[str, Any] | None:
    """Accept the old ``type`` key; plain RoPE ("default") is represented as None."""
    if not isinstance(scaling, dict):
        return scaling
    scaling = dict(scaling)
    if "type" in scaling:
        scaling.setdefault("rope_type", scaling.pop("type"))
    scaling.pop("rope_theta", None)
    if scaling.get("rope_type", "default") == "default" and set(scaling) <= {"rope_type"}:
        return None
    return scaling
