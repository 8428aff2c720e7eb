"""Word alignment and its figures, checked against jiwer's independent counts."""

from __future__ import annotations

import random

import jiwer
import pytest

from pipeline import alignment

# jiwer's own normalisation, the same rules as ours: lower case, no punctuation.
JIWER_WORDS = jiwer.Compose(
    [
        jiwer.ToLowerCase(),
        jiwer.RemovePunctuation(),
        jiwer.RemoveMultipleSpaces(),
        jiwer.Strip(),
        jiwer.ReduceToListOfListOfWords(),
    ]
)
VOCABULARY = "och att det som en på är av för med inte läsa elev lärare".split()


def ours(reference: str, hypothesis: str) -> alignment.Score:
    steps = alignment.align(alignment.words(reference), alignment.words(hypothesis))
    return alignment.score(steps)


def theirs(reference: str, hypothesis: str) -> jiwer.WordOutput:
    return jiwer.process_words(
        reference,
        hypothesis,
        reference_transform=JIWER_WORDS,
        hypothesis_transform=JIWER_WORDS,
    )


def random_text(rng: random.Random, length: int) -> str:
    words = [rng.choice(VOCABULARY) for _ in range(length)]
    # Punctuation and case that normalisation must see through.
    return " ".join(w.capitalize() + "," if rng.random() < 0.1 else w for w in words)


def test_identical_texts_agree_completely() -> None:
    score = ours("Vi pratade om läsning.", "Vi pratade om läsning.")

    assert (score.wer, score.agreement, score.errors) == (0.0, 1.0, 0)


def test_case_and_punctuation_are_not_differences() -> None:
    score = ours("Hej, världen! Det är – bra.", "hej världen det är bra")

    assert score.errors == 0
    assert score.ref_words == 5  # the lone dash is not a word


def test_one_changed_word_of_four_is_a_quarter() -> None:
    score = ours("Vi pratade om läsning.", "vi pratar om läsning")

    assert score.substitutions == 1 and score.errors == 1
    assert score.wer == pytest.approx(0.25)
    assert score.agreement == pytest.approx(0.75)


def test_random_pairs_give_the_same_error_counts_as_jiwer() -> None:
    rng = random.Random(20240501)
    for _ in range(300):
        reference = random_text(rng, rng.randint(1, 30))
        hypothesis = random_text(rng, rng.randint(1, 30))

        score, expected = ours(reference, hypothesis), theirs(reference, hypothesis)
        jiwer_errors = expected.substitutions + expected.deletions + expected.insertions

        assert score.errors == jiwer_errors, (reference, hypothesis)
        assert score.wer == pytest.approx(expected.wer)
        longer = max(len(JIWER_WORDS(t)[0]) for t in (reference, hypothesis))
        assert score.agreement == pytest.approx(1 - jiwer_errors / longer)


def test_the_alignment_walks_both_texts_in_order() -> None:
    ref = alignment.words("a b c d e f")
    hyp = alignment.words("a x c e f g")

    steps = alignment.align(ref, hyp)

    assert [s.ref for s in steps if s.ref is not None] == list(range(len(ref)))
    assert [s.hyp for s in steps if s.hyp is not None] == list(range(len(hyp)))
    assert [s.op for s in steps] == [
        "equal",
        "substitute",
        "equal",
        "delete",
        "equal",
        "equal",
        "insert",
    ]


def test_an_empty_other_side_is_all_deletions_and_no_agreement() -> None:
    score = ours("tre små ord", "")

    assert (score.deletions, score.wer, score.agreement) == (3, 1.0, 0.0)


def test_an_empty_reference_has_no_word_error_rate() -> None:
    score = ours("", "något sades")

    assert score.wer is None
    assert (score.insertions, score.agreement) == (2, 0.0)
    assert ours("", "").agreement is None


def test_scores_of_windows_add_up_like_jiwer_over_a_list() -> None:
    pairs = [("ett två tre", "ett tre"), ("fyra fem", "fyra sex sju"), ("åtta", "")]

    total = sum((ours(r, h) for r, h in pairs), alignment.Score())
    expected = jiwer.process_words(
        [r for r, _ in pairs],
        [h for _, h in pairs],
        reference_transform=JIWER_WORDS,
        hypothesis_transform=JIWER_WORDS,
    )

    assert total.wer == pytest.approx(expected.wer)
    assert total.longer_words == 3 + 3 + 1
