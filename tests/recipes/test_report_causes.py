"""A missed target's cause is stated from its own numbers: a decrease is a decrease, a shortfall against a margin
is a shortfall (not a "decrease"), and a difference within two standard errors of the bar is unresolved."""

from qwen3.recipes.report import compare, miss_cause


def test_a_gain_short_of_the_margin_is_not_called_a_decrease():
    target = compare("gap", "Table 22", after=(0.067, 0.046), before=(0.10, 0.056), margin=0.20)
    assert not target["pass"]
    assert target["cause"] == "the difference (-3.3) is 23.3 points short of the 20.0-point bar"


def test_each_kind_of_miss_names_itself():
    assert miss_cause(-0.175, 0.056, [0.19, 0.36]) == "measured decrease of 17.5 points"
    assert miss_cause(0.0, 0.0, [0.0, 0.0]).startswith("every score is 0")
    assert "within 2 standard errors" in miss_cause(0.02, 0.05, [0.10, 0.08])
