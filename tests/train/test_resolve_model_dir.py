from qwen3.engine.loading import load_model_and_tokenizer
from qwen3.model.run_dir import resolve_model_dir
from qwen3.train.config import TrainConfig
from qwen3.train.trainer import Trainer


def test_run_dir_and_checkpoint_resolve_to_the_newest_model(tmp_path):
    run = tmp_path / "run"
    config = TrainConfig.from_dict(
        {
            "run_dir": str(run),
            "steps": 4,
            "micro_batch_size": 2,
            "model": {"name": "qwen3-debug-tiny"},
            "data": {"seq_len": 32, "synthetic": "patterns", "synthetic_documents": 50},
            "checkpoint": {"every": 2, "keep_last": 3},
        }
    )
    Trainer(config).fit()
    steps = sorted((run / "checkpoints").glob("step-*"))
    assert [p.name for p in steps] == ["step-00000002", "step-00000004"]
    newest = steps[-1] / "model"
    assert resolve_model_dir(run) == newest
    assert resolve_model_dir(steps[0]) == steps[0] / "model"
    assert resolve_model_dir(newest) == newest
    assert resolve_model_dir(tmp_path / "elsewhere") == tmp_path / "elsewhere"
    model, tokenizer = load_model_and_tokenizer(str(run))
    assert model.config.vocab_size == len(tokenizer) == 512
