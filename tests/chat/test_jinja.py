from datetime import datetime
from pathlib import Path

import jinja2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen3.chat import qwen3_template, render, render_jinja
from tests.chat.strategies import conversation, for_official_template, official_template, tools

OFFICIAL = official_template()
OURS = qwen3_template()


def test_tojson_keeps_unicode_and_accepts_the_transformers_options():
    template = (
        "{{ x | tojson }}|{{ x | tojson(indent=1) }}|{{ x | tojson(separators=(',', ':'), sort_keys=true) }}"
    )
    out = render_jinja(template, [], x={"b": "é<>&", "a": 1})
    assert out == '{"b": "é<>&", "a": 1}|{\n "b": "é<>&",\n "a": 1\n}|{"a":1,"b":"é<>&"}'


def test_trim_and_lstrip_blocks_and_loop_controls():
    template = (
        "  {% for m in messages %}\n{% if loop.index > 1 %}{% break %}{% endif %}{{ m.role }}\n  {% endfor %}"
    )
    assert render_jinja(template, [{"role": "user"}, {"role": "assistant"}]) == "user\n"


def test_globals_raise_exception_strftime_now_dict_namespace():
    with pytest.raises(jinja2.exceptions.TemplateError, match="bad input"):
        render_jinja("{{ raise_exception('bad input') }}", [])
    year = render_jinja("{{ strftime_now('%Y') }}", [])
    assert year in {str(datetime.now().year), str(datetime.now().year - 1)}
    assert render_jinja("{{ dict(a=1) | tojson }}", []) == '{"a": 1}'
    assert render_jinja("{% set ns = namespace(n=1) %}{% set ns.n = ns.n + 1 %}{{ ns.n }}", []) == "2"
    with pytest.raises(jinja2.exceptions.SecurityError):
        render_jinja("{% set ns = namespace(_x=1) %}", [])


def test_the_sandbox_blocks_attribute_escapes():
    with pytest.raises(jinja2.exceptions.SecurityError):
        render_jinja("{{ messages.__class__.__mro__ }}", [])
    with pytest.raises(jinja2.exceptions.SecurityError):
        render_jinja("{{ messages.append(1) }}", [])  # immutable sandbox


def test_messages_are_prepared_like_apply_chat_template():
    # None-valued keys are dropped (so "is defined" is false), and reasoning aliases fill reasoning_content.
    template = "{% for m in messages %}{{ m.content is defined }},{{ m.reasoning_content }};{% endfor %}"
    messages = [{"role": "user", "content": None}, {"role": "assistant", "content": "a", "reasoning": "r"}]
    assert render_jinja(template, messages) == "False,;True,r;"


def test_generation_tags_render_their_body():
    # TRL's training variant of the Qwen3 template marks assistant output with {% generation %}.
    import trl

    training = (Path(trl.__file__).parent / "chat_templates" / "qwen3_training.jinja").read_text(
        encoding="utf-8"
    )
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a", "reasoning_content": "r"},
    ]
    assert render_jinja(training, messages) == render(messages)


def test_our_template_is_our_own_text_and_renders_no_stray_whitespace():
    ours, official = OURS, OFFICIAL
    assert ours != official
    assert "prefix_preserving" in ours
    # No stray whitespace from the template text (trim_blocks/lstrip_blocks and "-" markers leave none).
    assert render_jinja(ours, [{"role": "user", "content": "x"}]) == "<|im_start|>user\nx<|im_end|>\n"


@settings(max_examples=100, deadline=None)
@given(
    messages=conversation(), tools=tools, add_generation_prompt=st.booleans(), enable_thinking=st.booleans()
)
def test_transformers_renders_both_templates_as_we_do(
    messages, tools, add_generation_prompt, enable_thinking
):
    from transformers.utils.chat_template_utils import render_jinja_template

    kwargs = {
        "tools": tools,
        "add_generation_prompt": add_generation_prompt,
        "enable_thinking": enable_thinking,
    }
    expected = render(messages, **kwargs)
    for template, conversation_for_it in ((OFFICIAL, for_official_template(messages)), (OURS, messages)):
        rendered, _ = render_jinja_template([conversation_for_it], chat_template=template, **kwargs)
        assert rendered[0] == expected
        assert render_jinja(template, conversation_for_it, **kwargs) == expected
