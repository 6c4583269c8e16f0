"""Answer equivalence for the reasoning family: numbers, fractions and expressions (sympy).

``answers_equal("0.5", "1/2")`` and ``answers_equal("2*(x+1)", "2x+2")`` are True. Model text is never given to
sympy as it is: ``parse_expr`` evaluates Python, so only short strings made of digits, operators, brackets,
single-letter variables and a few named functions reach it (anything else is compared as normalised text).
"""

from __future__ import annotations

import re
from fractions import Fraction

# Longest text handed to sympy; longer answers are compared as text (simplify can be slow on big expressions).
MAX_SYMBOLIC_CHARS = 120
_FUNCTIONS = {"sqrt", "pi", "exp", "log", "ln", "sin", "cos", "tan", "abs"}
_SAFE_CHARS = re.compile(r"^[0-9A-Za-z+\-*/^().\s]+$")
_WORD = re.compile(r"[A-Za-z]+")
_NUMBER_GROUPS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def normalize_answer(text: str) -> str:
    """Strip what does not change a short answer: ``$`` and ``\\boxed{}``, a trailing period, thousands
    separators, ``\\frac{a}{b}``, surrounding whitespace."""
    text = re.sub(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", r"(\1)/(\2)", text.strip())
    boxed = _BOXED.findall(text)
    if boxed:
        text = boxed[-1]
    text = text.replace("$", "").replace("\\left", "").replace("\\right", "").strip()
    text = text.replace("\\cdot", "*").replace("\\times", "*")
    text = _NUMBER_GROUPS.sub("", text)
    return text.rstrip(".").strip()


def parse_number(text: str) -> Fraction | None:
    """An exact rational from an integer, decimal, ``a/b`` or percentage-free scientific notation; else None."""
    text = text.replace(" ", "")
    try:
        if text.count("/") == 1:
            num, den = text.split("/")
            return Fraction(num.strip("()")) / Fraction(den.strip("()"))
        return Fraction(text)
    except (ValueError, ZeroDivisionError):
        return None


def answers_equal(predicted: str, reference: str) -> bool:
    """True when ``predicted`` states the same answer as ``reference``: equal as normalised text
    (case-insensitive), as exact rationals, or as sympy expressions whose difference simplifies to 0."""
    if not isinstance(predicted, str) or not isinstance(reference, str):
        raise TypeError("answers_equal compares two strings")
    left, right = normalize_answer(predicted), normalize_answer(reference)
    if not left or not right:
        return False
    if left.casefold() == right.casefold():
        return True
    a, b = parse_number(left), parse_number(right)
    if a is not None and b is not None:
        return a == b
    return _symbolic_equal(left, right)


def _sympy_safe(text: str) -> bool:
    if len(text) > MAX_SYMBOLIC_CHARS or not _SAFE_CHARS.match(text) or "__" in text:
        return False
    return all(len(word) == 1 or word in _FUNCTIONS for word in _WORD.findall(text))


def _symbolic_equal(left: str, right: str) -> bool:
    if not (_sympy_safe(left) and _sympy_safe(right)):
        return False
    import sympy
    from sympy.parsing.sympy_parser import (
        convert_xor,
        implicit_multiplication_application,
        parse_expr,
        standard_transformations,
    )

    transformations = (*standard_transformations, implicit_multiplication_application, convert_xor)
    names = {"ln": sympy.log, "abs": sympy.Abs}
    try:
        a = parse_expr(left.replace("ln", "log"), local_dict=names, transformations=transformations)
        b = parse_expr(right.replace("ln", "log"), local_dict=names, transformations=transformations)
        return bool(sympy.simplify(a - b) == 0)
    except (
        Exception
    ):  # sympy raises many kinds (SyntaxError, TypeError, TokenError...) on text that is no math
        return False
