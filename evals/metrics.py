"""The benchmarks' standard answer metrics: pure functions of a prediction and the accepted answers.

Every metric has the signature ``(prediction: str | None, answers: Sequence[str]) -> float`` and returns a
score in ``[0, 1]``; a ``None`` or empty prediction scores 0. :func:`score` dispatches on the metric names of
:data:`awares_agent.evals.schema.METRICS`:

* ``exact``: exact match after :func:`normalize` (case, spaces, trailing punctuation and thousands separators
  ignored). Used for the synthetic benchmark and custom data.
* ``anls``: DocVQA's Average Normalized Levenshtein Similarity, threshold 0.5.
* ``relaxed``: ChartQA's relaxed accuracy: numbers within 5 % of the answer, anything else exact
  (case-insensitive).
* ``ocrbench``: OCRBench's rule: the lower-cased answer is contained in the lower-cased prediction.
* ``yes_no``: POPE: the prediction's first "yes"/"no" word against the answer; :func:`pope_scores` gives the
  benchmark's accuracy, precision, recall, F1 and yes-ratio over a whole run.
* ``choice``: multiple choice (RealWorldQA, V*): the option letter read from the prediction (see
  :func:`extract_choice`) against the answer letter.

The rules follow lmms-eval's task code for each benchmark; where this module deliberately differs (more
lenient parsing of "45%" in ChartQA, POPE's yes-ratio over predictions), the function's docstring says so.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence

from awares_agent.errors import ConfigError
from awares_agent.evals.schema import METRICS

__all__ = [
    "anls",
    "choice",
    "exact",
    "extract_choice",
    "first_yes_no",
    "levenshtein",
    "normalize",
    "ocrbench",
    "parse_number",
    "parse_options",
    "pope_scores",
    "relaxed",
    "score",
    "yes_no",
]

# --- exact match -------------------------------------------------------------------------------------------

_TRAILING = " \t\r\n.,;:!?"
_QUOTES = "\"'`“”‘’«»"
# A comma between digits followed by exactly three digits: a thousands separator ("1,234,567").
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_WHITESPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Normalise an answer for :func:`exact`: compare content, not formatting.

    Unicode is NFKC-normalised and lower-cased; surrounding whitespace and quotes and trailing punctuation
    (``. , ; : ! ?``) are stripped; thousands separators inside numbers are removed (``"1,234"`` ->
    ``"1234"``); and **all whitespace is removed**. Spaces are dropped, not just collapsed, because the
    offline OCR reader glues words together on mid-size text: ``"INVOICE 2024"`` and ``"INVOICE2024"`` must
    match. The price is that answers differing only in word breaks (``"no thing"``/``"nothing"``) match too.

    Args:
        text: an answer or a prediction.

    Returns:
        The comparison key (possibly empty).
    """
    text = unicodedata.normalize("NFKC", text).lower().strip()
    text = text.lstrip(_QUOTES).rstrip(_TRAILING + _QUOTES)
    text = _THOUSANDS.sub("", text)
    return _WHITESPACE.sub("", text)


def exact(prediction: str | None, answers: Sequence[str]) -> float:
    """Exact match after :func:`normalize` against any accepted answer.

    Args:
        prediction: the model's answer (``None`` or empty scores 0).
        answers: the accepted answers.

    Returns:
        1.0 if the normalised prediction equals a normalised answer, else 0.0.
    """
    if not prediction:
        return 0.0
    key = normalize(prediction)
    if not key:
        return 0.0
    return 1.0 if any(key == normalize(answer) for answer in answers) else 0.0


# --- ANLS (DocVQA) -----------------------------------------------------------------------------------------


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions and substitutions each cost 1) between two strings.

    Args:
        a: one string.
        b: the other string.

    Returns:
        The minimum number of single-character edits that turn ``a`` into ``b``.
    """
    if a == b:
        return 0
    if len(a) < len(b):
        a, b = b, a  # keep the row (over b) the shorter one
    if not b:
        return len(a)
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def _anls_text(text: str) -> str:
    return " ".join(text.strip().lower().split())


def anls(prediction: str | None, answers: Sequence[str], *, threshold: float = 0.5) -> float:
    """DocVQA's Average Normalized Levenshtein Similarity for one question.

    Both strings are lower-cased and their whitespace collapsed; the similarity to each answer is
    ``1 - levenshtein / max(len)``; the best similarity over the answers is returned, or 0 if it is below
    ``threshold`` (a similarity of exactly 0.5 counts, as in lmms-eval and the official DocVQA script).

    Args:
        prediction: the model's answer (``None`` or empty scores 0).
        answers: the accepted answers.
        threshold: similarities below this score 0 (DocVQA: 0.5).

    Returns:
        The thresholded best similarity, in ``[0, 1]``.
    """
    if not prediction:
        return 0.0
    predicted = _anls_text(prediction)
    if not predicted:
        return 0.0
    best = 0.0
    for answer in answers:
        expected = _anls_text(answer)
        if not expected:
            continue
        similarity = 1.0 - levenshtein(predicted, expected) / max(len(predicted), len(expected))
        best = max(best, similarity)
    return best if best >= threshold else 0.0


# --- relaxed accuracy (ChartQA) ----------------------------------------------------------------------------

_NUMBER = re.compile(
    r"^(?P<sign>[-+]?)[$€£¥]?(?P<number>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d*\.?\d+)(?P<percent>%?)$"
)


def parse_number(text: str) -> tuple[float, bool] | None:
    """Read a number the way chart answers write it: ``"1,200"``, ``"$5.5"``, ``"-3"``, ``"45%"``, ``"12."``.

    Args:
        text: a whole answer or prediction (no surrounding words).

    Returns:
        ``(value, is_percent)`` with the percent sign dropped (``"45%"`` -> ``(45.0, True)``), or ``None``
        if ``text`` is not a single number.
    """
    compact = unicodedata.normalize("NFKC", text).replace("−", "-")
    compact = _WHITESPACE.sub("", compact).rstrip(".")
    match = _NUMBER.match(compact)
    if match is None:
        return None
    value = float(match["number"].replace(",", ""))
    if match["sign"] == "-":
        value = -value
    return value, bool(match["percent"])


def _number_readings(text: str) -> list[float] | None:
    parsed = parse_number(text)
    if parsed is None:
        return None
    value, is_percent = parsed
    # "45%" may be meant as 45 or as 0.45; accept either reading.
    return [value, value / 100.0] if is_percent else [value]


def relaxed(prediction: str | None, answers: Sequence[str], *, tolerance: float = 0.05) -> float:
    """ChartQA's relaxed accuracy: a numeric answer may be off by ``tolerance`` relative to the answer.

    If both the prediction and an answer are numbers (see :func:`parse_number`), they match when
    ``|prediction - answer| <= tolerance * |answer|`` (an answer of 0 needs exactly 0). Otherwise the two
    must be equal ignoring case, surrounding whitespace and a trailing period. Unlike lmms-eval (which reads
    ``"45%"`` only as 0.45), a number with a percent sign is accepted under either reading, 45 or 0.45,
    because ChartQA's answers are written both ways.

    Args:
        prediction: the model's answer (``None`` or empty scores 0).
        answers: the accepted answers (ChartQA has one).
        tolerance: the relative tolerance (ChartQA: 5 %).

    Returns:
        1.0 if any answer matches, else 0.0.
    """
    if not prediction or not prediction.strip():
        return 0.0
    predicted_numbers = _number_readings(prediction)
    predicted_text = " ".join(prediction.lower().split()).rstrip(".")
    for answer in answers:
        expected_numbers = _number_readings(answer)
        if predicted_numbers is not None and expected_numbers is not None:
            for expected in expected_numbers:
                for predicted in predicted_numbers:
                    if expected == 0:
                        if predicted == 0:
                            return 1.0
                    elif abs(predicted - expected) <= tolerance * abs(expected):
                        return 1.0
        elif predicted_text == " ".join(answer.lower().split()).rstrip("."):
            return 1.0
    return 0.0


# --- OCRBench ----------------------------------------------------------------------------------------------


def ocrbench(prediction: str | None, answers: Sequence[str], *, ignore_spaces: bool = False) -> float:
    """OCRBench's rule: an answer, lower-cased and stripped, is contained in the lower-cased prediction.

    Args:
        prediction: the model's answer (``None`` or empty scores 0).
        answers: the accepted answers.
        ignore_spaces: also remove every space from both sides first. OCRBench applies this only to its
            handwritten-maths category (HME100k, LaTeX answers); :func:`score` does not set it.

    Returns:
        1.0 if any non-empty answer occurs in the prediction, else 0.0.
    """
    if not prediction:
        return 0.0
    predicted = prediction.lower().strip().replace("\n", " ")
    if ignore_spaces:
        predicted = predicted.replace(" ", "")
    for answer in answers:
        expected = answer.lower().strip().replace("\n", " ")
        if ignore_spaces:
            expected = expected.replace(" ", "")
        if expected and expected in predicted:
            return 1.0
    return 0.0


# --- yes/no (POPE) -----------------------------------------------------------------------------------------

_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def first_yes_no(prediction: str | None) -> str | None:
    """The first word "yes" or "no" in a prediction (any case), lower-cased; ``None`` if there is none."""
    if not prediction:
        return None
    match = _YES_NO.search(prediction)
    return match[1].lower() if match else None


def yes_no(prediction: str | None, answers: Sequence[str]) -> float:
    """POPE: the prediction's first yes/no word equals the answer (``"yes"`` or ``"no"``).

    ``"Yes, there is a dog."`` reads as yes; ``"nothing"`` and ``"not sure"`` read as neither and score 0.

    Args:
        prediction: the model's answer (``None`` or empty scores 0).
        answers: the accepted answers (POPE has one, ``"yes"`` or ``"no"``).

    Returns:
        1.0 on a match, else 0.0.
    """
    said = first_yes_no(prediction)
    if said is None:
        return 0.0
    return 1.0 if any(said == answer.strip().lower() for answer in answers) else 0.0


def pope_scores(
    predictions: Sequence[str | None], answers: Sequence[str | Sequence[str]]
) -> dict[str, float]:
    """POPE's summary over a run, with "yes" as the positive class.

    A prediction with no yes/no word counts as a negative ("no") prediction for precision and recall, and as
    wrong for accuracy. ``yes_ratio`` is the share of predictions that say yes (the original POPE definition;
    lmms-eval's aggregate reports the share of *answers* that are yes instead).

    Args:
        predictions: the model's answers, one per sample.
        answers: the answer of each sample: ``"yes"``/``"no"``, or a sample's answer list (first entry used).

    Returns:
        ``{"accuracy", "precision", "recall", "f1", "yes_ratio"}``, each in ``[0, 1]`` (0 when undefined).

    Raises:
        ConfigError: the two sequences differ in length, or an answer is not yes/no.
    """
    if len(predictions) != len(answers):
        raise ConfigError(
            f"pope_scores needs one answer per prediction: got {len(predictions)} predictions and "
            f"{len(answers)} answers"
        )
    tp = fp = fn = tn = correct = said_yes = 0
    for index, (prediction, answer) in enumerate(zip(predictions, answers, strict=True)):
        expected = (answer if isinstance(answer, str) else (answer[0] if answer else "")).strip().lower()
        if expected not in ("yes", "no"):
            raise ConfigError(f"POPE answers must be 'yes' or 'no'; sample {index} has {answer!r}")
        said = first_yes_no(prediction)
        correct += said == expected
        if said == "yes":
            said_yes += 1
            if expected == "yes":
                tp += 1
            else:
                fp += 1
        elif expected == "yes":
            fn += 1
        else:
            tn += 1
    total = len(predictions)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "accuracy": correct / total if total else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "yes_ratio": said_yes / total if total else 0.0,
    }


# --- multiple choice (RealWorldQA, V*) ---------------------------------------------------------------------

# "(A) red" anywhere (V*'s own layout, also inline: "(A) red (B) blue").
_PAREN_OPTION = re.compile(r"\(([A-Z])\)[ \t]*([^\n(]+?)[ \t]*(?=\([A-Z]\)|\n|$)")
# "A. red", "A) red", "A: red" at the start of a line (RealWorldQA, lmms-eval's V* prompt).
_LINE_OPTION = re.compile(r"^[ \t]*([A-Z])[.):][ \t]+(.+?)[ \t]*$", re.MULTILINE)
_WHOLE_LETTER = re.compile(r"^\(?([A-Za-z])\)?[.)]?$")
_LEADING_LETTER = re.compile(r"^(?:\(([A-Z])\)|([A-Z])[.):\]](?=\s|$))")
_KEYWORD_LETTER = re.compile(r"(?i:answer|option|choice)(?:\s+(?i:is))?\s*[:：]?\s*\(?([A-Z])\b")
_PAREN_LETTER = re.compile(r"\(([A-Z])\)")
_STANDALONE_LETTER = re.compile(r"(?<![\w'’])([A-Z])(?![\w'’])")
_NUMBER_WORDS = {
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}


def _consecutive_from_a(letters: list[str]) -> bool:
    return len(letters) >= 2 and letters == [chr(ord("A") + i) for i in range(len(letters))]


def parse_options(question: str | None) -> dict[str, str]:
    """The lettered options a multiple-choice question lists, as ``{"A": "red", "B": "blue", ...}``.

    Understands ``(A) red`` (V*, also several on one line) and ``A. red`` / ``A) red`` / ``A: red`` at the
    start of a line (RealWorldQA). The letters must run A, B, C... from A, so a stray ``I.`` is not taken
    for a list.

    Args:
        question: the question text (``None`` gives no options).

    Returns:
        The options in order, or ``{}`` if the question lists none.
    """
    if not question:
        return {}
    for pattern in (_LINE_OPTION, _PAREN_OPTION):
        found = [(letter, text.strip()) for letter, text in pattern.findall(question)]
        if _consecutive_from_a([letter for letter, _ in found]):
            return dict(found)
    return {}


def _option_text_key(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", unicodedata.normalize("NFKC", text).lower()).split())


def _option_by_text(prediction: str, options: dict[str, str]) -> str | None:
    """The one option whose text the prediction names (the longest when one option contains another)."""
    said = f" {_option_text_key(prediction)} "
    named = {
        letter: key
        for letter, text in options.items()
        if (key := _option_text_key(text)) and f" {key} " in said
    }
    if not named:
        return None
    longest = max(named.values(), key=len)
    # "dark red" names both "red" and "dark red": keep the longest if it contains every other match.
    if all(key in longest for key in named.values()):
        return next(letter for letter, key in named.items() if key == longest)
    return None


def extract_choice(prediction: str | None, question: str | None = None) -> str | None:
    """Read the chosen option letter from a prediction.

    Tried in order: the whole prediction is a letter (``"B"``, ``"(b)"``, ``"B."``); it starts with one
    (``"B. cotton"``, ``"(B) cotton"``); a phrase such as ``"The answer is B"``, ``"Answer: (C)"``,
    ``"option D"``; one letter in parentheses anywhere; then, when ``question`` lists options, the text of
    exactly one option (``"leather"``); finally a lone capital letter in a short reply (``"B is right"``).

    Args:
        prediction: the model's answer.
        question: the question, to learn the valid letters and the options' texts (optional).

    Returns:
        The upper-case letter, or ``None`` if no single choice can be read.
    """
    if not prediction:
        return None
    text = prediction.strip()
    options = parse_options(question)
    valid = set(options) if options else {chr(c) for c in range(ord("A"), ord("Z") + 1)}

    def accept(letter: str | None) -> str | None:
        return letter if letter is not None and letter in valid else None

    if (match := _WHOLE_LETTER.match(text)) and (letter := accept(match[1].upper())):
        return letter
    if (match := _LEADING_LETTER.match(text)) and (letter := accept(match[1] or match[2])):
        return letter
    for match in _KEYWORD_LETTER.finditer(text):
        if letter := accept(match[1]):
            return letter
    in_parens = {letter for letter in _PAREN_LETTER.findall(text) if letter in valid}
    if len(in_parens) == 1:
        return in_parens.pop()
    if options:
        if letter := _option_by_text(text, options):
            return letter
        if len(text.split()) <= 4:
            # "A" and "I" followed by a lower-case word are English ("A dog"), not choices.
            standalone = {
                match[1]
                for match in _STANDALONE_LETTER.finditer(text)
                if match[1] in valid and not (match[1] in "AI" and re.match(r"\s+[a-z]", text[match.end() :]))
            }
            if len(standalone) == 1:
                return standalone.pop()
    return None


def _answer_letter(answer: str, options: dict[str, str]) -> str | None:
    if match := _WHOLE_LETTER.match(answer.strip()):
        return match[1].upper()
    return _option_by_text(answer, options) if options else None


def choice(prediction: str | None, answers: Sequence[str], *, question: str | None = None) -> float:
    """Multiple-choice accuracy (RealWorldQA, V*): the letter :func:`extract_choice` reads equals the answer.

    An answer given as ``"B"``, ``"(B)"`` or ``"b"`` is a letter. RealWorldQA also has a few open questions
    (answers such as ``"3"``): an answer that is not a letter (nor an option's text) falls back to
    :func:`exact`, with a one-word number spelled out (``"three"``) read as its digits, as lmms-eval does.

    Args:
        prediction: the model's answer (``None`` or empty scores 0).
        answers: the accepted answers (usually one letter).
        question: the question with its options; lets an answer that names an option's text count.

    Returns:
        1.0 on a match, else 0.0.
    """
    if not prediction or not prediction.strip():
        return 0.0
    options = parse_options(question)
    chosen = extract_choice(prediction, question)
    open_answers = []
    for answer in answers:
        letter = _answer_letter(answer, options)
        if letter is None:
            open_answers.append(answer)
        elif letter == chosen:
            return 1.0
    if open_answers:
        said = prediction.strip().rstrip(".").strip().lower()
        return exact(_NUMBER_WORDS.get(said, prediction), open_answers)
    return 0.0


# --- dispatch ----------------------------------------------------------------------------------------------

_METRICS: dict[str, Callable[[str | None, Sequence[str]], float]] = {
    "exact": exact,
    "anls": anls,
    "relaxed": relaxed,
    "ocrbench": ocrbench,
    "yes_no": yes_no,
    "choice": choice,
}


def score(
    metric: str, prediction: str | None, answers: Sequence[str], *, question: str | None = None
) -> float:
    """Score a prediction with the named metric.

    Args:
        metric: one of :data:`awares_agent.evals.schema.METRICS` (a sample's ``metric``).
        prediction: the model's final answer (``None`` when it gave none: scores 0).
        answers: the sample's accepted answers.
        question: the sample's question; used by ``choice`` to match an option's text.

    Returns:
        The score, in ``[0, 1]``.

    Raises:
        ConfigError: ``metric`` is not a known metric name.
    """
    function = _METRICS.get(metric)
    if function is None:
        raise ConfigError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    if isinstance(answers, str):
        answers = [answers]
    if function is choice:
        return choice(prediction, answers, question=question)
    return function(prediction, answers)
