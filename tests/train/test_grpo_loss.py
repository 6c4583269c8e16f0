"""GRPO's objective against numbers worked out by hand on a two-sequence batch, the advantages, the trainer
normalisation each loss_type declares, and GRPOConfig's validation."""

from __future__ import annotations

import math

import pytest
import torch

from qwen3.train.batch import IGNORE, Row
from qwen3.train.grpo import GRPOConfig, group_advantages, grpo_loss, grpo_normalization, split_table
from qwen3.train.loss import Normalization
from qwen3.train.settings import SettingsError

# Sequence 0 has two completion tokens (advantage +1), sequence 1 one token and one padding slot (advantage -2).
LOGP = [[-1.0, -2.0], [-0.5, 0.0]]
OLD = [[-1.0, -2.3], [-0.7, 0.0]]
MASK = [[1.0, 1.0], [1.0, 0.0]]
ADV = [1.0, -2.0]
# By hand, epsilon 0.2: ratios 1, e^0.3 = 1.3499 (> 1.2 with A > 0: clipped to 1.2), e^0.2 = 1.2214 (A < 0:
# the unclipped branch is the smaller one, so it stays).
L00, L01, L10 = -1.0, -1.2, 2.0 * math.exp(0.2)


def t(values):
    return torch.tensor(values, dtype=torch.float64)


def loss(loss_type, **kwargs):
    return grpo_loss(t(LOGP), t(OLD), t(ADV), t(MASK), loss_type=loss_type, max_new_tokens=4, **kwargs)


def test_grpo_averages_each_sequence_then_the_sequences():
    assert float(loss("grpo").loss) == pytest.approx(((L00 + L01) / 2 + L10) / 2, abs=1e-12)


def test_dr_grpo_divides_the_token_sum_by_sequences_times_the_max_length():
    assert float(loss("dr_grpo").loss) == pytest.approx((L00 + L01 + L10) / (2 * 4), abs=1e-12)


def test_dapo_averages_all_tokens_and_clip_higher_widens_the_upper_bound():
    assert float(loss("dapo").loss) == pytest.approx((L00 + L01 + L10) / 3, abs=1e-12)
    wide = loss("dapo", epsilon_high=0.4)  # e^0.3 = 1.35 < 1.4: no longer clipped
    assert float(wide.loss) == pytest.approx((L00 - math.exp(0.3) + L10) / 3, abs=1e-12)
    assert wide.clipped.sum() == 0


def test_clip_fraction_counts_the_tokens_whose_clip_bound_is_active():
    assert loss("grpo").clipped.tolist() == [[False, True], [False, False]]


def test_kl_is_the_k3_estimator_and_beta_adds_it_per_token():
    ref = t([[-1.5, -2.0], [-0.5, 0.0]])
    result = loss("dapo", ref_logprobs=ref, beta=0.1)
    k3 = math.exp(-0.5) - (-0.5) - 1  # only the first token differs from the reference
    assert float(result.kl[0, 0]) == pytest.approx(k3, abs=1e-12)
    assert float(result.kl.sum()) == pytest.approx(k3, abs=1e-12)
    assert float(result.loss) == pytest.approx((L00 + 0.1 * k3 + L01 + L10) / 3, abs=1e-12)


def test_entropy_bonus_and_importance_weights():
    entropy = t([[2.0, 1.0], [3.0, 9.0]])  # the padding slot's 9 must not count
    weights = t([[0.5, 1.0], [2.0, 7.0]])
    result = loss("dapo", entropy=entropy, entropy_coef=0.01, is_weights=weights)
    expected = (0.5 * L00 - 0.02) + (L01 - 0.01) + (2.0 * L10 - 0.03)
    assert float(result.loss) == pytest.approx(expected / 3, abs=1e-12)


def test_on_policy_gradient_is_minus_the_advantage_times_the_coefficient():
    logp = t(LOGP).requires_grad_(True)
    result = grpo_loss(logp, logp.detach(), t(ADV), t(MASK), loss_type="grpo")
    result.loss.backward()
    assert logp.grad.flatten().tolist() == pytest.approx([-0.25, -0.25, 1.0, 0.0])


def test_each_loss_type_declares_the_trainer_normalisation():
    assert grpo_normalization("grpo") == Normalization("sequences", allow_empty=True)
    assert grpo_normalization("dr_grpo", 4) == Normalization("constant", 4, allow_empty=True)
    assert grpo_normalization("dapo") == Normalization("tokens", allow_empty=True)
    with pytest.raises(ValueError, match="loss_type 'ppo'"):
        grpo_normalization("ppo")
    with pytest.raises(ValueError, match="needs max_new_tokens"):
        grpo_normalization("dr_grpo")


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_the_global_batch_split_in_two_gives_the_loss_of_the_whole(loss_type):
    # The trainer's path: each half's loss_sum over the whole batch's denominator (the rows' own counts).
    whole = loss(loss_type)
    halves = [
        grpo_loss(t(LOGP)[i : i + 1], t(OLD)[i : i + 1], t(ADV)[i : i + 1], t(MASK)[i : i + 1],
                  loss_type=loss_type, max_new_tokens=4).loss_sum
        for i in range(2)
    ]  # fmt: skip
    rows = [Row([0, 0], [1 if m else IGNORE for m in mask]) for mask in MASK]
    denominator = grpo_normalization(loss_type, 4).denominator(rows)
    assert float(sum(halves)) / denominator == pytest.approx(float(whole.loss), abs=1e-12)


def test_a_sequence_without_targets_drops_out_of_the_counts():
    # A third, fully masked sequence (mask_truncated): every loss_type gives the result of the two others, as if
    # the masked rollout had never been sampled.
    logp, old, mask = (t(v + [[0.0, 0.0]]) for v in (LOGP, OLD, MASK))
    for loss_type in ("grpo", "dr_grpo", "dapo"):
        three = grpo_loss(logp, old, t(ADV + [5.0]), mask, loss_type=loss_type, max_new_tokens=4)
        assert float(three.loss) == pytest.approx(float(loss(loss_type).loss), abs=1e-12)
    empty = grpo_loss(t(LOGP), t(OLD), t(ADV), torch.zeros(2, 2), loss_type="grpo")
    assert float(empty.loss) == 0.0


def test_group_advantages_normalise_within_each_group():
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0])
    advantages = group_advantages(rewards, 4, eps=0.0 + 1e-12)
    std = math.sqrt((0.75**2 + 3 * 0.25**2) / 3)  # unbiased
    assert advantages[:4].tolist() == pytest.approx([0.75 / std, -0.25 / std, -0.25 / std, -0.25 / std])
    assert advantages[4:].tolist() == [0.0] * 4  # a flat group carries no signal
    assert group_advantages(rewards, 4, scale=False)[:4].tolist() == pytest.approx(
        [0.75, -0.25, -0.25, -0.25]
    )
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(rewards, 3)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"loss_type": "ppo"}, "grpo.loss_type"),
        ({"num_generations": 1}, "at least 2 rollouts"),
        ({"epsilon": 0.0}, "grpo.epsilon"),
        ({"temperature": 0.0}, "grpo.temperature"),
        ({"tis_cap": 0.5}, "grpo.tis_cap"),
        ({"rewards": ["nope"]}, "unknown reward function 'nope'"),
        ({"rewards": ["digits_only"], "reward_weights": [1.0, 2.0]}, "2 weights for 1 rewards"),
        ({"overlong_buffer": 200}, "grpo.overlong_buffer"),
        ({"task": "chess"}, "grpo.task"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(table, message):
    with pytest.raises(SettingsError, match=message):
        split_table({"grpo": table})


def test_the_global_batch_is_one_generation_batch():
    grpo, rest = split_table({"grpo": {"prompts_per_step": 4, "num_generations": 3}})
    assert rest["global_batch_size"] == 12 == grpo.rollouts_per_step and rest["stage"] == "grpo"
    with pytest.raises(SettingsError, match="must equal grpo.prompts_per_step"):
        split_table({"global_batch_size": 8, "grpo": {"prompts_per_step": 4, "num_generations": 3}})
    assert GRPOConfig(epsilon=0.2).clip_high == 0.2 and GRPOConfig(epsilon_high=0.28).clip_high == 0.28
