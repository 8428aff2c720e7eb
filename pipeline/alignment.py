"""Word-level alignment of two texts and the figures a comparison shows.

Words are compared after normalisation: each whitespace-separated token is put
in Unicode NFC form, case-folded, and stripped of every punctuation character
(Unicode category P: ``.,!?;:"'()-–…`` and the like). A token that is left
empty, such as a lone dash, is not a word. Digits and symbols such as ``%``
stay as they are, so ``tio`` and ``10`` are different words.

The alignment is a word-level Levenshtein alignment: substitutions, deletions
and insertions all cost one. Two figures come from the edit distance *d*:

- the word error rate of the other text against the reference,
  *d / words in the reference* (it can exceed 100 %);
- the agreement, *1 - d / words in the longer text*: the share of words the
  two agree on, between 0 and 100 %, the same whichever text is the reference.

Both depend only on *d*, which is unique even where several alignments are
equally short.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Op = Literal["equal", "substitute", "delete", "insert"]


@dataclass(frozen=True)
class Step:
    """One step of an alignment; ``ref``/``hyp`` index the two word lists."""

    op: Op
    ref: int | None
    hyp: int | None


@dataclass(frozen=True)
class Score:
    """Edit counts of one or more aligned stretches, summed."""

    ref_words: int = 0
    hyp_words: int = 0
    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    #: Words in the longer of the two texts, summed stretch by stretch.
    longer_words: int = 0

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def hits(self) -> int:
        return self.ref_words - self.substitutions - self.deletions

    @property
    def wer(self) -> float | None:
        """Word error rate against the reference; None when it has no words."""
        if self.ref_words == 0:
            return None
        return self.errors / self.ref_words

    @property
    def agreement(self) -> float | None:
        """Share of words the texts agree on; None when both are empty."""
        if self.longer_words == 0:
            return None
        return 1.0 - self.errors / self.longer_words

    def __add__(self, other: Score) -> Score:
        return Score(
            self.ref_words + other.ref_words,
            self.hyp_words + other.hyp_words,
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.longer_words + other.longer_words,
        )


def normalise(token: str) -> str:
    """The form of one token that comparisons use; empty when it is no word."""
    folded = unicodedata.normalize("NFC", token).casefold()
    return "".join(c for c in folded if not unicodedata.category(c).startswith("P"))


def words(text: str) -> list[str]:
    """The normalised words of ``text``, in order."""
    return [word for word in map(normalise, text.split()) if word]


def align(ref: Sequence[str], hyp: Sequence[str]) -> list[Step]:
    """A shortest edit script turning ``ref`` into ``hyp``, in text order."""
    table = _distances(ref, hyp)

    steps: list[Step] = []
    i, j = len(ref), len(hyp)
    while i > 0 or j > 0:
        # Prefer the diagonal, so that a changed word reads as a substitution.
        if (
            i > 0
            and j > 0
            and table[i][j] == table[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1])
        ):
            op: Op = "equal" if ref[i - 1] == hyp[j - 1] else "substitute"
            steps.append(Step(op, i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i > 0 and table[i][j] == table[i - 1][j] + 1:
            steps.append(Step("delete", i - 1, None))
            i -= 1
        else:
            steps.append(Step("insert", None, j - 1))
            j -= 1
    steps.reverse()

    return steps


def score(steps: Sequence[Step]) -> Score:
    """The counts of one alignment."""
    ref_words = sum(1 for s in steps if s.ref is not None)
    hyp_words = sum(1 for s in steps if s.hyp is not None)
    return Score(
        ref_words=ref_words,
        hyp_words=hyp_words,
        substitutions=sum(1 for s in steps if s.op == "substitute"),
        deletions=sum(1 for s in steps if s.op == "delete"),
        insertions=sum(1 for s in steps if s.op == "insert"),
        longer_words=max(ref_words, hyp_words),
    )


def _distances(ref: Sequence[str], hyp: Sequence[str]) -> list[list[int]]:
    """The full Levenshtein table: ``table[i][j]`` aligns ``ref[:i]``, ``hyp[:j]``."""
    table = [list(range(len(hyp) + 1))]
    for i, word in enumerate(ref, start=1):
        above = table[-1]
        row = [i]
        for j, other in enumerate(hyp, start=1):
            row.append(
                min(above[j] + 1, row[j - 1] + 1, above[j - 1] + (word != other))
            )
        table.append(row)
    return table
