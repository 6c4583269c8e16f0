"""The miniature Qwen3 recipe: world data, tokenizer, pre-training S1-S3, stages 1-4, distillation, evaluation
after every stage and a report of the paper's tables (docs/recipe.md). Nothing in the package imports it."""
