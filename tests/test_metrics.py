"""Tests for awares_agent.evals.metrics: each metric on cases taken from its benchmark's documented
convention.

Sources of the conventions: lmms-eval's task code (``chartqa/utils.py`` relaxed_correctness, the DocVQA ANLS
metric, ``ocrbench/utils.py``, ``pope/utils.py``, ``vstar_bench/utils.py`` extract_answer_letter and the
RealWorldQA multiple-choice filter), the DocVQA ANLS definition (threshold 0.5) and the ChartQA paper (5 %).
"""

from __future__ import annotations

import pytest

from awares_agent.errors import ConfigError
from awares_agent.evals.metrics import (
    anls,
    choice,
    exact,
    extract_choice,
    first_yes_no,
    levenshtein,
    normalize,
    ocrbench,
    parse_number,
    parse_options,
    pope_scores,
    relaxed,
    score,
    yes_no,
)
from awares_agent.evals.schema import METRICS

VSTAR_QUESTION = (
    "What is the material of the glove?\n(A) rubber\n(B) cotton\n(C) kevlar\n(D) leather\n"
    "Answer with the option's letter from the given choices directly."
)
REALWORLDQA_QUESTION = (
    "In which direction is the front wheel of the car on the right side facing?\n\nA. Left\nB. Straight\n"
    "C. Right\n\nPlease answer directly with only the letter of the correct option and nothing else."
)

# --- exact / normalize ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("INVOICE 2024", "invoice2024"),
        ('  "Invoice  2024." ', "invoice2024"),
        ("1,234,567", "1234567"),
        ("1,5", "1,5"),  # not a thousands separator
        ("Hello, World!", "hello,world"),
        (".NET", ".net"),  # leading punctuation kept
        ("ＡＢＣ１２", "abc12"),  # NFKC folds full-width characters
        ("  ", ""),
    ],
)
def test_normalize(text: str, key: str) -> None:
    assert normalize(text) == key


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("INVOICE2024", ["INVOICE 2024"], 1.0),  # the OCR reader glues words together
        ("invoice 2024.", ["INVOICE 2024"], 1.0),
        ("1234", ["1,234"], 1.0),
        ("London", ["Paris", "london"], 1.0),
        ("invoice", ["INVOICE 2024"], 0.0),
        ("INVOICE 2025", ["INVOICE 2024"], 0.0),
        ("...", ["..."], 0.0),  # nothing left to compare
        (None, ["x"], 0.0),
        ("", ["x"], 0.0),
    ],
)
def test_exact(prediction: str | None, answers: list[str], expected: float) -> None:
    assert exact(prediction, answers) == expected


# --- ANLS (DocVQA) -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [("kitten", "sitting", 3), ("", "abc", 3), ("abc", "", 3), ("flaw", "lawn", 2), ("same", "same", 0)],
)
def test_levenshtein(a: str, b: str, distance: int) -> None:
    assert levenshtein(a, b) == distance
    assert levenshtein(b, a) == distance


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("1/8/93", ["1/8/93"], 1.0),
        ("1/8/9", ["1/8/93"], 1 - 1 / 6),  # one edit in six characters
        ("  University of   IOWA ", ["university of iowa"], 1.0),  # case and whitespace ignored
        ("ITC Limited", ["ITC", "ITC Limited"], 1.0),  # best answer wins
        ("abcd", ["abef"], 0.5),  # exactly at the threshold: kept
        ("abcde", ["abxyz"], 0.0),  # similarity 0.4 < 0.5: zero
        ("hello", ["world"], 0.0),
        (None, ["x"], 0.0),
        ("", ["x"], 0.0),
    ],
)
def test_anls(prediction: str | None, answers: list[str], expected: float) -> None:
    assert anls(prediction, answers) == pytest.approx(expected)


# --- relaxed accuracy (ChartQA) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("12", (12.0, False)),
        ("1,200", (1200.0, False)),
        ("$5.5", (5.5, False)),
        ("-3", (-3.0, False)),
        ("−3", (-3.0, False)),  # unicode minus
        ("45%", (45.0, True)),
        ("12.", (12.0, False)),
        (".5", (0.5, False)),
        ("nan", None),
        ("inf", None),
        ("12 apples", None),
        ("1,20", None),
    ],
)
def test_parse_number(text: str, parsed: tuple[float, bool] | None) -> None:
    assert parse_number(text) == parsed


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("12.5", ["12"], 1.0),  # 4.2 % off
        ("12.6", ["12"], 1.0),  # 5 % off: the boundary is inside
        ("13", ["12"], 0.0),  # 8.3 % off
        ("-5", ["-5.1"], 1.0),
        ("45%", ["45"], 1.0),  # percent sign read as 45 ...
        ("0.45", ["45%"], 1.0),  # ... or as 0.45
        ("$1,200", ["1200"], 1.0),
        ("0", ["0"], 1.0),
        ("0.01", ["0"], 0.0),  # a zero answer needs exactly zero
        ("Yes", ["yes"], 1.0),  # non-numeric: exact, case-insensitive
        ("Brazil.", ["brazil"], 1.0),
        ("Brazil", ["Argentina"], 0.0),
        ("12", ["Brazil"], 0.0),
        ("The value is 12", ["12"], 0.0),  # no number hunting inside sentences (as in lmms-eval)
        (None, ["12"], 0.0),
        (" ", ["12"], 0.0),
    ],
)
def test_relaxed(prediction: str | None, answers: list[str], expected: float) -> None:
    assert relaxed(prediction, answers) == expected


# --- OCRBench ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("The sign says HELLO world", ["hello"], 1.0),  # contained, case-insensitive
        ("helo", ["hello"], 0.0),
        ("centre", ["center", "centre"], 1.0),
        ("line one line two", ["line one\nline two"], 1.0),  # newlines read as spaces
        ("anything", ["", "  "], 0.0),  # an empty answer does not match everything
        (None, ["x"], 0.0),
    ],
)
def test_ocrbench(prediction: str | None, answers: list[str], expected: float) -> None:
    assert ocrbench(prediction, answers) == expected


def test_ocrbench_ignore_spaces_is_the_handwritten_maths_rule() -> None:
    assert ocrbench("x^{2}+1", ["x ^ { 2 } + 1"]) == 0.0
    assert ocrbench("x^{2}+1", ["x ^ { 2 } + 1"], ignore_spaces=True) == 1.0


# --- yes/no (POPE) -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "answers", "expected"),
    [
        ("Yes", ["yes"], 1.0),
        ("yes.", ["yes"], 1.0),
        ("Yes, there is a dog in the image.", ["yes"], 1.0),
        ("No.", ["yes"], 0.0),
        ("No, there is no dog.", ["no"], 1.0),
        ("There is no dog. Yes, I am sure.", ["no"], 1.0),  # the first yes/no word counts
        ("nothing", ["no"], 0.0),  # whole words only
        ("Not sure", ["no"], 0.0),
        ("I cannot tell", ["no"], 0.0),
        (None, ["yes"], 0.0),
    ],
)
def test_yes_no(prediction: str | None, answers: list[str], expected: float) -> None:
    assert yes_no(prediction, answers) == expected


def test_first_yes_no() -> None:
    assert first_yes_no("YES!") == "yes"
    assert first_yes_no("Eyes closed") is None
    assert first_yes_no(None) is None


def test_pope_scores_confusion_matrix() -> None:
    # tp: 2 (rows 0, 1); fn: 1 (row 2, said no) + 1 (row 3, said nothing); fp: 1 (row 4); tn: 1 (row 5).
    predictions = ["Yes", "yes, there is", "No", "I cannot tell", "Yes.", "no"]
    answers = ["yes", "yes", "yes", "yes", "no", ["no"]]  # a sample's answer list is accepted too
    scores = pope_scores(predictions, answers)
    precision, recall = 2 / 3, 2 / 4
    assert scores == pytest.approx(
        {
            "accuracy": 3 / 6,
            "precision": precision,
            "recall": recall,
            "f1": 2 * precision * recall / (precision + recall),
            "yes_ratio": 3 / 6,
        }
    )


def test_pope_scores_edges() -> None:
    assert pope_scores([], []) == {
        "accuracy": 0.0,
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "yes_ratio": 0.0,
    }
    assert pope_scores(["no", "no"], ["no", "no"])["accuracy"] == 1.0
    with pytest.raises(ConfigError, match="one answer per prediction"):
        pope_scores(["yes"], [])
    with pytest.raises(ConfigError, match="'yes' or 'no'"):
        pope_scores(["yes"], ["maybe"])


# --- multiple choice (RealWorldQA, V*) ---------------------------------------------------------------------


def test_parse_options() -> None:
    assert parse_options(VSTAR_QUESTION) == {"A": "rubber", "B": "cotton", "C": "kevlar", "D": "leather"}
    assert parse_options(REALWORLDQA_QUESTION) == {"A": "Left", "B": "Straight", "C": "Right"}
    assert parse_options("Pick one: (A) red (B) dark red") == {"A": "red", "B": "dark red"}
    assert parse_options("I. Introduction\nII. Methods") == {}  # letters must run from A
    assert parse_options("How many cars are there?") == {}
    assert parse_options(None) == {}


@pytest.mark.parametrize(
    ("prediction", "letter"),
    [
        ("B", "B"),
        ("b", "B"),
        ("(B)", "B"),
        ("B.", "B"),
        ("B. cotton", "B"),
        ("(B) cotton", "B"),
        ("The answer is C.", "C"),
        ("Answer: (C) kevlar", "C"),
        ("The correct option is D", "D"),
        ("I would pick (A), it looks like rubber", "A"),
        ("kevlar", "C"),  # the option's text
        ("It is made of leather.", "D"),
        ("C is right", "C"),
        ("A dog", None),  # an article, not a choice
        ("rubber or cotton", None),  # two options named
        ("E", None),  # not an option of this question
        ("", None),
    ],
)
def test_extract_choice_vstar(prediction: str, letter: str | None) -> None:
    assert extract_choice(prediction, VSTAR_QUESTION) == letter


def test_extract_choice_prefers_the_longest_option_named() -> None:
    question = "Which colour?\n(A) red\n(B) dark red\n(C) blue"
    assert extract_choice("dark red", question) == "B"
    assert extract_choice("red", question) == "A"
    assert extract_choice("red and blue", question) is None


@pytest.mark.parametrize(
    ("prediction", "answers", "question", "expected"),
    [
        ("C", ["C"], REALWORLDQA_QUESTION, 1.0),
        ("Right", ["C"], REALWORLDQA_QUESTION, 1.0),
        ("Left", ["C"], REALWORLDQA_QUESTION, 0.0),
        ("c.", ["(C)"], None, 1.0),  # answer written with parentheses
        ("(A)", ["A"], VSTAR_QUESTION, 1.0),
        ("The answer is B", ["A"], VSTAR_QUESTION, 0.0),
        ("rubber", ["rubber"], VSTAR_QUESTION, 1.0),  # an answer given as the option's text
        ("3", ["3"], "How many cars are parked? Please answer directly with a single word or number.", 1.0),
        ("three", ["3"], None, 1.0),  # RealWorldQA's open questions: number words become digits
        ("4", ["3"], None, 0.0),
        (None, ["A"], VSTAR_QUESTION, 0.0),
        ("  ", ["A"], VSTAR_QUESTION, 0.0),
    ],
)
def test_choice(prediction: str | None, answers: list[str], question: str | None, expected: float) -> None:
    assert choice(prediction, answers, question=question) == expected


# --- dispatch ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "prediction", "answers"),
    [
        ("exact", "INVOICE2024", ["INVOICE 2024"]),
        ("anls", "1/8/93", ["1/8/93"]),
        ("relaxed", "12.5", ["12"]),
        ("ocrbench", "it says hello", ["HELLO"]),
        ("yes_no", "Yes.", ["yes"]),
        ("choice", "leather", ["D"]),
    ],
)
def test_score_dispatches_every_metric(metric: str, prediction: str, answers: list[str]) -> None:
    assert score(metric, prediction, answers, question=VSTAR_QUESTION) == 1.0
    assert score(metric, "something else entirely", answers, question=VSTAR_QUESTION) == 0.0


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("prediction", [None, "", "   "])
def test_every_metric_scores_no_answer_as_zero(metric: str, prediction: str | None) -> None:
    assert score(metric, prediction, ["yes", "A", "12"]) == 0.0


def test_score_accepts_a_single_answer_string() -> None:
    assert score("exact", "paris", "Paris") == 1.0


def test_score_unknown_metric_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown metric 'bleu'; use one of exact, anls, relaxed"):
        score("bleu", "x", ["x"])
