"""Training: data, the trainer loop, checkpoints, the pre-training stages, torchrun scaling (docs/train.md).

- ``qwen3.train.config``: ``TrainConfig`` (+ model/data/optim/schedule/checkpoint parts), ``load_train_config``.
- ``qwen3.train.trainer``: ``Trainer(config, rows=..., source=..., loss_fn=..., resume=...).fit()``.
- ``qwen3.train.corpus`` / ``data`` / ``sft_data``: corpora, ``DocumentStream``, ``PackedDocuments``,
  ``PackedConversations``; ``qwen3.train.batch``: ``Row``, ``Batch``, ``RowSource``.
- ``qwen3.train.loss``: ``LossOutput``, ``register_loss``, ``linear_cross_entropy``.
- ``qwen3.train.pretrain``: the S1/S2/S3 chain. ``qwen3.train.checkpoint``, ``distributed``, ``metrics``, ``plot``.

``python -m qwen3.train CONFIG [KEY=VALUE ...] [--resume]`` is the torchrun entry point.
"""
