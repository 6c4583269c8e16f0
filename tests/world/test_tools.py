import json

import pytest

from qwen3.world import generate
from qwen3.world.fiction import build_world
from qwen3.world.tools import TOOLS, execute, schemas


def result(name, arguments, **kwargs):
    return json.loads(execute(name, arguments, **kwargs))


def test_calculator_evaluates_arithmetic_and_accepts_json_arguments():
    assert result("calculator", {"expression": "(12 + 7) * 3"}) == {"result": 57}
    assert result("calculator", '{"expression": "sqrt(16) + 2**3 - 7 / 2"}') == {"result": 8.5}
    assert result("calculator", {"expression": "10 // 3 + 10 % 3 + 2^2"}) == {"result": 8}


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('echo hi')", "unsupported syntax"),
        ("open('/etc/passwd')", "unsupported syntax"),
        ("(1).__class__", "unsupported syntax"),
        ("1 / 0", "cannot evaluate"),
        ("2 ** 100000", "exponent"),
        ("10 ** 60 * 10 ** 60", "out of range"),
        ("sqrt(-1)", "cannot evaluate"),
        ("1 +", "not an arithmetic expression"),
    ],
)
def test_calculator_refuses_code_and_reports_errors_as_results(expression, message):
    answer = result("calculator", {"expression": expression})
    assert set(answer) == {"error"} and message in answer["error"]


def test_bad_calls_become_error_results():
    assert "unknown tool 'weather'" in result("weather", {})["error"]
    assert "not JSON" in result("calculator", "{oops")["error"]
    assert "expression is required" in result("calculator", {})["error"]
    assert "not a parameter" in result("calculator", {"expression": "1", "x": 2})["error"]
    assert (
        "must be number"
        in result("unit_convert", {"value": "ten", "from_unit": "m", "to_unit": "ft"})["error"]
    )


def test_world_lookup_reads_the_world():
    world = build_world(0)
    person = world.people[5]
    assert result("world_lookup", {"entity": person.upper(), "attribute": "born_in"}) == {
        "result": world.get(person, "born_in")
    }
    assert (
        "unknown entity"
        in result("world_lookup", {"entity": "Nobody Atall", "attribute": "born_in"})["error"]
    )
    assert (
        "has no attribute 'river'"
        in result("world_lookup", {"entity": person, "attribute": "river"})["error"]
    )
    other = build_world(1).people[5]
    assert result("world_lookup", {"entity": other, "attribute": "profession"}, world_seed=1)["result"]


def test_unit_and_date_tools():
    assert result("unit_convert", {"value": 1, "from_unit": "mi", "to_unit": "km"}) == {"result": 1.609344}
    assert result("unit_convert", {"value": 212, "from_unit": "F", "to_unit": "C"}) == {"result": 100}
    assert (
        "different quantities"
        in result("unit_convert", {"value": 1, "from_unit": "kg", "to_unit": "m"})["error"]
    )
    assert (
        "unknown unit 'parsec'"
        in result("unit_convert", {"value": 1, "from_unit": "parsec", "to_unit": "m"})["error"]
    )
    assert result("days_between", {"start": "2024-02-28", "end": "2024-03-01"}) == {"result": 2}
    assert result("add_days", {"date": "2024-12-30", "days": 3}) == {"result": "2025-01-02"}
    assert "YYYY-MM-DD" in result("add_days", {"date": "30/12/2024", "days": 3})["error"]


def test_schemas_are_openai_tool_definitions():
    defs = schemas()
    assert [d["function"]["name"] for d in defs] == list(TOOLS)
    assert all(d["type"] == "function" and d["function"]["parameters"]["type"] == "object" for d in defs)
    with pytest.raises(ValueError, match="unknown tool 'nope'"):
        schemas(["calculator", "nope"])


def test_tooluse_references_agree_with_executing_the_tools():
    items = generate("tooluse", "train", 80)
    shapes = {item.meta["shape"] for item in items}
    assert shapes == {"single", "parallel", "multistep", "none"}
    for item in items:
        calls, results = item.reference["calls"], item.reference["results"]
        assert [len(r) for r in results] == [len(c) for c in calls]
        for round_calls, round_results in zip(calls, results):
            for call, expected in zip(round_calls, round_results):
                assert execute(call["name"], call["arguments"]) == expected
                assert "error" not in json.loads(expected)
        if item.meta["shape"] == "none":
            assert calls == [] and item.reference["answer"] is None
            continue
        assert item.direct.endswith(f"Answer: {item.reference['answer']}")
        assert len(item.meta["thoughts"]) == len(calls) + 1
        if item.meta["shape"] == "parallel":
            assert len(calls) == 1 and len(calls[0]) == 2
        if item.meta["shape"] == "multistep":
            assert len(calls) >= 2
            # each round after the first uses the previous round's result in its arguments
            for previous, current in zip(results, calls[1:]):
                value = str(json.loads(previous[0])["result"])
                assert any(value in json.dumps(call["arguments"]) for call in current)
        if item.meta["shape"] == "single":
            assert str(json.loads(results[-1][0])["result"]) == item.reference["answer"]
