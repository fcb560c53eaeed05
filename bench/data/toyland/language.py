"""Words of toyland: tokenisation, object phrases, number words."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def tokenize(text: str) -> list[str]:
    """Lower-case words and single punctuation marks: the rule behind vocab.txt and all `tokens` fields."""
    return _TOKEN.findall(text.lower())


def noun(desc: dict, plural: bool = False) -> str:
    """'large red circle', 'blue object', 'circles' ... (size, colour, then the shape or 'object')."""
    head = desc.get("shape", "object") + ("s" if plural else "")
    return " ".join([desc[a] for a in ("size", "colour") if a in desc] + [head])


def the(desc: dict) -> str:
    return "the " + noun(desc)


def a(desc: dict) -> str:
    phrase = noun(desc)
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def sentence(text: str) -> str:
    """Capitalise the first letter."""
    return text[:1].upper() + text[1:]
