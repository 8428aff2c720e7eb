"""Word error rate after one normalisation shared by every system measured.

Reference and hypothesis both go through ``normalise``: lower case, numbers
spelled out in words, hyphens and slashes split, apostrophes dropped and all
other punctuation removed. ``number_words`` is also what the corpus uses to
spell numbers before they are spoken, so a "10" heard as "ten" is no error.
"""

from __future__ import annotations

import re

import jiwer

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve"
    " thirteen fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((1_000_000_000, "billion"), (1_000_000, "million"), (1_000, "thousand"))

_DIGITS = re.compile(r"\d+(?:[.,]\d+)*")
_SPLITTERS = re.compile(r"[-/–—_]")
_APOSTROPHES = re.compile(r"['’`]")
_NON_WORD = re.compile(r"[^a-z0-9 ]+")


def number_words(n: int) -> str:
    """An integer below a trillion in English words, without "and"."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        head = f"{_ONES[hundreds]} hundred"
        return head + (f" {number_words(rest)}" if rest else "")
    for scale, name in _SCALES:
        if n >= scale:
            high, rest = divmod(n, scale)
            head = f"{number_words(high)} {name}"
            return head + (f" {number_words(rest)}" if rest else "")
    raise ValueError(n)


def spell_numbers(text: str) -> str:
    """Replace every run of digits ("10", "1,000", "3.5") by words."""
    return _DIGITS.sub(_spell_match, text)


def _spell_match(match: re.Match[str]) -> str:
    token = match.group(0)
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+", token):
        return f" {number_words(int(token.replace(',', '')))} "
    whole, _, fraction = token.partition(".")
    words = number_words(int(whole.replace(",", ""))) if len(whole) < 13 else whole
    if fraction:
        words += " point " + " ".join(_ONES[int(d)] for d in fraction if d.isdigit())
    return f" {words} "


def normalise(text: str) -> str:
    """The comparable form of a transcript: lower-case words, single spaces."""
    text = text.lower()
    text = _SPLITTERS.sub(" ", text)
    text = _APOSTROPHES.sub("", text)
    text = spell_numbers(text)
    text = _NON_WORD.sub(" ", text)
    return " ".join(text.split())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER in percent of the normalised reference's words."""
    ref = normalise(reference)
    hyp = normalise(hypothesis)
    if not ref:
        raise ValueError("the reference text is empty")
    return 100.0 * jiwer.wer(ref, hyp or "<empty>")
