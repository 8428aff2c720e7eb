"""Export formats, checked against their own rules."""

from __future__ import annotations

import json

from models.engine import Line, Word
from pipeline import exports

LINES = [
    Line(0.0, 2.5, "Hej och välkomna.", [Word(0.0, 0.4, "Hej")]),
    Line(3661.25, 3663.0, "Vi börjar <nu> --> direkt & snabbt."),
]


def test_txt_has_one_timed_line_each() -> None:
    text = exports.render("txt", LINES)

    assert text == (
        "[00:00:00] Hej och välkomna.\n[01:01:01] Vi börjar <nu> --> direkt & snabbt.\n"
    )


def test_srt_numbers_cues_and_uses_commas_before_milliseconds() -> None:
    text = exports.render("srt", LINES)

    assert text.startswith("1\n00:00:00,000 --> 00:00:02,500\nHej och välkomna.\n\n2\n")
    assert "01:01:01,250 --> 01:01:03,000" in text


def test_vtt_escapes_markup_and_arrows_in_the_text() -> None:
    text = exports.render("vtt", LINES)

    assert text.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:02.500\n")
    assert "Vi börjar &lt;nu> -> direkt &amp; snabbt." in text
    assert text.count("-->") == 2


def test_json_keeps_words_and_the_facts_given() -> None:
    body = json.loads(exports.render("json", LINES, {"engine": "local"}))

    assert body["engine"] == "local"
    assert body["segments"][0]["words"] == [{"start": 0.0, "end": 0.4, "text": "Hej"}]
    assert body["segments"][1]["text"].startswith("Vi börjar")
