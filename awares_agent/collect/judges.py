"""Judges: decide whether a model's answer to a training question is correct.

Labelling needs a verdict per answer: a sample needs a crop where the low-resolution answer is wrong and
the full-resolution one right. Two judges, one :class:`Judge` protocol:

* :class:`MetricJudge` scores the answer with the benchmark metric of the sample
  (:mod:`awares_agent.evals.metrics`) and
  calls it correct at or above a per-metric threshold. Offline, free and deterministic.
* :class:`LLMJudge` asks any chat model (an OpenAI-compatible server, a local model...) to compare the answer
  with the ground truth, with the fixed prompt :data:`JUDGE_SYSTEM_PROMPT` / :data:`JUDGE_USER_TEMPLATE`
  (version :data:`JUDGE_PROMPT_VERSION`), and caches its verdicts in an SQLite file so that a rerun makes no
  request it has made before.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from awares_agent.backends.base import ChatBackend
from awares_agent.errors import AwaresError, ConfigError
from awares_agent.evals.metrics import score
from awares_agent.evals.schema import METRICS
from awares_agent.image_store import ImageStore
from awares_agent.messages import ChatMessage
from awares_agent.redact import redact
from awares_agent.trajectory import Verdict  # a trajectory's labels hold it; defined there, once
from awares_agent.untrusted import valid_text

__all__ = [
    "DEFAULT_THRESHOLDS",
    "JUDGE_PROMPT_VERSION",
    "JUDGE_SYSTEM_PROMPT",
    "JUDGE_USER_TEMPLATE",
    "Judge",
    "JudgeReplyError",
    "LLMJudge",
    "MetricJudge",
    "Verdict",
    "make_judge",
    "parse_judge_reply",
]


@runtime_checkable
class Judge(Protocol):
    """Decides whether a prediction answers a question correctly, given the accepted answers.

    Attributes:
        name: a short name of the judge (``"metric"``, ``"llm:<model>"``).
    """

    name: str

    def judge(
        self, question: str, prediction: str | None, answers: Sequence[str], *, metric: str = "exact"
    ) -> Verdict:
        """Judge one prediction.

        Args:
            question: the question asked (with any multiple-choice options).
            prediction: the model's final answer; ``None`` or empty when it gave none (always incorrect).
            answers: the accepted ground-truth answers.
            metric: the sample's benchmark metric (one of :data:`awares_agent.evals.schema.METRICS`).
        """
        ...

    async def ajudge(
        self, question: str, prediction: str | None, answers: Sequence[str], *, metric: str = "exact"
    ) -> Verdict:
        """Judge one prediction asynchronously (same contract as :meth:`judge`)."""
        ...


class JudgeReplyError(AwaresError):
    """The judge model's reply holds no verdict that can be read.

    Attributes:
        raw: the reply text as the model wrote it.
    """

    def __init__(self, message: str, *, raw: str) -> None:
        super().__init__(message)
        self.raw = raw


def _answers_list(answers: Sequence[str] | str) -> list[str]:
    return [answers] if isinstance(answers, str) else [str(a) for a in answers]


def _no_answer(prediction: str | None) -> bool:
    return prediction is None or not prediction.strip()


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- the metric judge ----------------------------------------------------------------------------------

#: Default thresholds of :class:`MetricJudge`. ANLS is DocVQA's thresholded similarity (0 below 0.5), so 0.5
#: accepts every answer the benchmark gives credit for. The other metrics score 0 or 1, and 1.0 means "full
#: credit under the benchmark's own rule".
DEFAULT_THRESHOLDS: Mapping[str, float] = {
    "exact": 1.0,
    "anls": 0.5,
    "relaxed": 1.0,
    "ocrbench": 1.0,
    "yes_no": 1.0,
    "choice": 1.0,
}


class MetricJudge:
    """Judge answers with the benchmark metrics of :mod:`awares_agent.evals.metrics`: correct when ``score >=
    threshold``.

    Offline and deterministic. ``None`` or blank predictions are incorrect without scoring.

    Args:
        thresholds: per-metric thresholds in ``(0, 1]`` overriding :data:`DEFAULT_THRESHOLDS` (metrics not
            named keep their default).

    Raises:
        ConfigError: a threshold names an unknown metric or is outside ``(0, 1]``.
    """

    name = "metric"

    def __init__(self, thresholds: Mapping[str, float] | None = None) -> None:
        merged = dict(DEFAULT_THRESHOLDS)
        for metric, value in (thresholds or {}).items():
            if metric not in METRICS:
                raise ConfigError(
                    f"MetricJudge: threshold for unknown metric {metric!r}; use one of {', '.join(METRICS)}"
                )
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
                raise ConfigError(
                    f"MetricJudge: the {metric} threshold must be a number in (0, 1], got {value!r} (a "
                    f"threshold of 0 would call every answer correct)"
                )
            merged[metric] = float(value)
        self.thresholds: dict[str, float] = merged

    def __repr__(self) -> str:
        return f"MetricJudge(thresholds={self.thresholds!r})"

    def judge(
        self, question: str, prediction: str | None, answers: Sequence[str], *, metric: str = "exact"
    ) -> Verdict:
        """Score ``prediction`` with ``metric`` and compare the score with the metric's threshold.

        Args:
            question: the question (``choice`` reads the options' texts from it).
            prediction: the model's answer; ``None`` or blank is incorrect (score 0).
            answers: the accepted answers.
            metric: one of :data:`awares_agent.evals.schema.METRICS`.

        Returns:
            The verdict; ``judge`` is ``"metric:<metric>>=<threshold>"``.

        Raises:
            ConfigError: ``metric`` is unknown.
        """
        threshold = self.thresholds.get(metric)
        if threshold is None:
            raise ConfigError(f"MetricJudge: unknown metric {metric!r}; use one of {', '.join(METRICS)}")
        name = f"metric:{metric}>={threshold:g}"
        if _no_answer(prediction):
            return Verdict(correct=False, score=0.0, reason="no answer was given", judge=name)
        value = score(metric, prediction, _answers_list(answers), question=question)
        correct = value >= threshold
        relation = ">=" if correct else "<"
        return Verdict(
            correct=correct,
            score=value,
            reason=f"{metric} score {value:.3g} {relation} {threshold:g}",
            judge=name,
        )

    async def ajudge(
        self, question: str, prediction: str | None, answers: Sequence[str], *, metric: str = "exact"
    ) -> Verdict:
        """Same as :meth:`judge` (it does no I/O)."""
        return self.judge(question, prediction, answers, metric=metric)


# --- the LLM judge ---------------------------------------------------------------------------------------

#: Version of the judge prompt. It is part of every cache key: change it whenever the prompt changes, so
#: verdicts given under an older prompt are not reused.
JUDGE_PROMPT_VERSION = "judge-v1"

#: The system message of the LLM judge.
JUDGE_SYSTEM_PROMPT = (
    "You grade answers to questions about images. You do not see the image: decide only whether the "
    "candidate answer means the same as one of the reference answers.\n"
    "Rules: ignore case, spacing, punctuation, articles and extra polite words; numbers must be equal "
    "(formatting such as 1,000 vs 1000 or 45% vs 45 percent does not matter, units must agree when both "
    "give one); a candidate that names a different value, adds a wrong detail, hedges between several "
    "values or does not answer is incorrect; a multiple-choice answer is correct when it picks the same "
    "option, by letter or by text.\n"
    'Reply with JSON only, no other text: {"correct": true or false, "reason": "<one short sentence>"}'
)

#: The user message of the LLM judge; ``{question}``, ``{answers}`` (a JSON list) and ``{prediction}`` are
#: filled in.
JUDGE_USER_TEMPLATE = (
    "Question: {question}\nReference answers: {answers}\nCandidate answer: {prediction}\nIs the candidate "
    "answer correct?"
)

_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*(.*?)```", re.DOTALL)
_TRUE_WORDS = {"true", "yes", "correct", "right", "1"}
_FALSE_WORDS = {"false", "no", "incorrect", "wrong", "0", "not correct"}
_LEADING_WORD = re.compile(
    r"^[\s*_`\"'(\[]*(?:verdict|answer|judgement|judgment|grade)?\s*[:=-]?\s*[*_`\"']*"
    r"(not\s+correct|incorrect|correct|yes|no|true|false|right|wrong)\b",
    re.IGNORECASE,
)


def _json_objects(text: str) -> list[Any]:
    """Every JSON value that starts at a ``{`` in ``text``, in order (what a model may wrap in prose)."""
    decoder = json.JSONDecoder()
    found = []
    for match in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        found.append(value)
    return found


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = " ".join(value.strip().lower().strip(".!").split())
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    return None


def parse_judge_reply(text: str) -> tuple[bool, str]:
    """Read a verdict from a judge model's reply.

    Accepted, in order: a JSON object (the whole reply, inside a code fence, or embedded in prose) with a
    boolean-like ``correct`` (or ``verdict``/``is_correct``) and an optional ``reason``; else a reply that
    starts with a verdict word (``yes``/``no``, ``correct``/``incorrect``, ``true``/``false``,
    ``right``/``wrong``; ``Verdict:`` and Markdown emphasis before it are skipped), the rest being the reason.

    Args:
        text: the reply text.

    Returns:
        ``(correct, reason)``; the reason is ``""`` when the reply gives none.

    Raises:
        JudgeReplyError: no verdict can be read; the error's ``raw`` holds the reply.
    """
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for candidate in candidates:
        for value in _json_objects(candidate):
            if not isinstance(value, dict):
                continue
            for key in ("correct", "is_correct", "verdict"):
                if key in value and (correct := _as_bool(value[key])) is not None:
                    reason = value.get("reason") or value.get("explanation") or ""
                    return correct, str(reason).strip()
    match = _LEADING_WORD.match(text)
    if match:
        correct = _as_bool(match.group(1))
        if correct is not None:
            reason = text[match.end() :].strip(" \t\n.,:;-*_`\"'")
            return correct, reason
    raise JudgeReplyError(
        f'the judge model\'s reply holds no verdict (expected JSON like {{"correct": true, "reason": '
        f'"..."}} or a leading yes/no): {_short(text, 200)!r}',
        raw=text,
    )


class _VerdictCache:
    """Verdicts in an SQLite file, keyed by a hash of the judge's inputs. Safe across threads and processes.

    Every operation opens its own connection (SQLite's file locking serialises writers, also across
    processes; ``timeout`` waits for a lock instead of failing). Only the key, the inputs and the verdict
    are stored: no credentials, no request headers.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with closing(self._connect()) as conn, conn:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS verdicts ("
                    "key TEXT PRIMARY KEY, prompt_version TEXT, model TEXT, question TEXT, prediction TEXT, "
                    "answers TEXT, verdict TEXT NOT NULL, created REAL)"
                )
        except sqlite3.DatabaseError as err:
            raise ConfigError(
                f"LLMJudge: the verdict cache {str(path)!r} is not a usable SQLite file ({err}); pass "
                f"another cache= path, or delete the file to start an empty cache"
            ) from err

    def _connect(self) -> sqlite3.Connection:
        try:
            return sqlite3.connect(self.path, timeout=30.0)
        except sqlite3.Error as err:
            raise ConfigError(f"LLMJudge: cannot open the verdict cache {str(self.path)!r}: {err}") from err

    def get(self, key: str) -> Verdict | None:
        with closing(self._connect()) as conn:
            row = conn.execute("SELECT verdict FROM verdicts WHERE key = ?", (key,)).fetchone()
        return Verdict.model_validate_json(row[0]) if row else None

    def put(self, key: str, inputs: Mapping[str, Any], verdict: Verdict) -> None:
        with closing(self._connect()) as conn, conn:
            conn.execute(
                "INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    inputs["prompt_version"],
                    inputs["model"],
                    inputs["question"],
                    inputs["prediction"],
                    json.dumps(inputs["answers"], ensure_ascii=False),
                    verdict.model_dump_json(),
                    time.time(),
                ),
            )

    def __len__(self) -> int:
        with closing(self._connect()) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0])


class LLMJudge:
    """Judge answers with a chat model, using a fixed prompt, with a persistent verdict cache.

    The model gets :data:`JUDGE_SYSTEM_PROMPT` and :data:`JUDGE_USER_TEMPLATE` (the question, the reference
    answers and the candidate) and is asked for ``{"correct": bool, "reason": str}``; the reply is read by
    :func:`parse_judge_reply`. The ``metric`` argument of :meth:`judge` is not shown to the model (the
    prompt's rules are the same for every benchmark) and is not part of the cache key. A ``None`` or blank
    prediction is incorrect without asking the model.

    Failure policy: backend errors (:class:`~awares_agent.errors.BackendError`, after the backend's own
    retries) always propagate: a transient outage must not silently change who judges. A reply with no
    readable verdict raises :class:`JudgeReplyError` naming the reply, unless ``fallback`` is given: then
    the fallback's verdict is returned (its ``judge`` names the fallback, its ``reason`` says why). Only
    the model's own verdicts are cached.

    Cache: with ``cache`` set, verdicts are stored in that SQLite file under
    ``sha256(JUDGE_PROMPT_VERSION, model name, question, prediction, sorted answers)``; a judgement found
    there costs no request. The file may be shared by threads and processes. It holds the inputs and the
    verdicts, never the API key.

    Args:
        backend: any :class:`~awares_agent.backends.base.ChatBackend` (e.g. an
            :class:`~awares_agent.backends.openai_compat.OpenAIBackend`); its ``model_name`` is part of the
            cache key. Use greedy decoding (temperature 0) so that verdicts are reproducible.
        cache: path of the SQLite cache file (created with its folder), or ``None`` for no cache.
        fallback: a judge used when the model's reply cannot be read (e.g. ``MetricJudge()``).

    Attributes:
        name: ``"llm:<model name>"``.
        requests: requests sent to the model so far (cache misses).
        cache_hits: judgements answered from the cache so far.

    Raises:
        ConfigError: ``backend`` is not a chat backend, or ``cache`` is not a usable SQLite file.
    """

    def __init__(
        self,
        backend: ChatBackend,
        *,
        cache: str | os.PathLike[str] | None = None,
        fallback: Judge | None = None,
    ) -> None:
        if not isinstance(backend, ChatBackend):
            raise ConfigError(
                f"LLMJudge needs a chat backend (complete/acomplete/model_name), got {type(backend).__name__}"
            )
        self.backend = backend
        self.fallback = fallback
        self.name = f"llm:{backend.model_name}"
        self._cache = _VerdictCache(Path(cache)) if cache is not None else None
        self._images = ImageStore(cache_bytes=0)
        self._lock = threading.Lock()
        self.requests = 0
        self.cache_hits = 0

    def __repr__(self) -> str:
        cache = str(self._cache.path) if self._cache is not None else None
        return f"LLMJudge(model={self.backend.model_name!r}, cache={cache!r}, fallback={self.fallback!r})"

    @property
    def cache_path(self) -> Path | None:
        """The cache file, or ``None`` when verdicts are not cached."""
        return self._cache.path if self._cache is not None else None

    def messages(self, question: str, prediction: str, answers: Sequence[str]) -> list[ChatMessage]:
        """The exact messages sent to the model for one judgement.

        Args:
            question: the question.
            prediction: the candidate answer.
            answers: the reference answers.
        """
        user = JUDGE_USER_TEMPLATE.format(
            question=question.strip(),
            answers=json.dumps(list(answers), ensure_ascii=False),
            prediction=prediction.strip(),
        )
        return [
            ChatMessage.text_message("system", JUDGE_SYSTEM_PROMPT),
            ChatMessage.text_message("user", user),
        ]

    def _inputs(self, question: str, prediction: str, answers: Sequence[str]) -> tuple[str, dict[str, Any]]:
        inputs = {
            "prompt_version": JUDGE_PROMPT_VERSION,
            "model": self.backend.model_name,
            "question": question,
            "prediction": prediction,
            "answers": sorted(answers),
        }
        key = hashlib.sha256(json.dumps(inputs, ensure_ascii=False, sort_keys=True).encode()).hexdigest()
        return key, inputs

    def _lookup(self, key: str) -> Verdict | None:
        verdict = self._cache.get(key) if self._cache is not None else None
        if verdict is not None:
            with self._lock:
                self.cache_hits += 1
        return verdict

    def _finish(self, text: str, key: str, inputs: Mapping[str, Any]) -> Verdict | None:
        """The model's verdict (cached), or ``None`` when the reply is unreadable and a fallback exists."""
        # The reply is untrusted: it must encode (SQLite and JSON refuse lone surrogates) and hold no key.
        text = redact(valid_text(text)[0])
        try:
            correct, reason = parse_judge_reply(text)
        except JudgeReplyError:
            if self.fallback is None:
                raise
            return None
        verdict = Verdict(
            correct=correct,
            score=1.0 if correct else 0.0,
            reason=_short(reason, 200) or ("judged correct" if correct else "judged incorrect"),
            judge=self.name,
        )
        if self._cache is not None:
            self._cache.put(key, inputs, verdict)
        return verdict

    def _fallback_verdict(self, verdict: Verdict, text: str) -> Verdict:
        text = redact(valid_text(text)[0])
        return verdict.model_copy(
            update={"reason": f"unreadable reply from {self.name} ({_short(text, 40)!r}); {verdict.reason}"}
        )

    def judge(
        self, question: str, prediction: str | None, answers: Sequence[str], *, metric: str = "exact"
    ) -> Verdict:
        """Ask the model whether ``prediction`` is correct (or take the verdict from the cache).

        Args:
            question: the question.
            prediction: the model's answer; ``None`` or blank is incorrect without a request.
            answers: the accepted answers.
            metric: the sample's metric; passed on to the fallback judge only.

        Returns:
            The verdict; ``score`` is 1.0 or 0.0 and ``judge`` is ``"llm:<model>"`` (or the fallback's).

        Raises:
            BackendError: the backend failed (after its retries).
            JudgeReplyError: the reply holds no verdict and there is no fallback.
        """
        if _no_answer(prediction):
            return Verdict(correct=False, score=0.0, reason="no answer was given", judge=self.name)
        assert prediction is not None
        answers = _answers_list(answers)
        key, inputs = self._inputs(question, prediction, answers)
        if (cached := self._lookup(key)) is not None:
            return cached
        with self._lock:
            self.requests += 1
        reply = self.backend.complete(self.messages(question, prediction, answers), images=self._images)
        verdict = self._finish(reply.text, key, inputs)
        if verdict is None:
            assert self.fallback is not None
            verdict = self._fallback_verdict(
                self.fallback.judge(question, prediction, answers, metric=metric), reply.text
            )
        return verdict

    async def ajudge(
        self, question: str, prediction: str | None, answers: Sequence[str], *, metric: str = "exact"
    ) -> Verdict:
        """Asynchronous :meth:`judge` (the request goes through the backend's ``acomplete``)."""
        if _no_answer(prediction):
            return Verdict(correct=False, score=0.0, reason="no answer was given", judge=self.name)
        assert prediction is not None
        answers = _answers_list(answers)
        key, inputs = self._inputs(question, prediction, answers)
        # SQLite may wait for another writer's lock: keep that off the event loop.
        if (cached := await asyncio.to_thread(self._lookup, key)) is not None:
            return cached
        with self._lock:
            self.requests += 1
        reply = await self.backend.acomplete(
            self.messages(question, prediction, answers), images=self._images
        )
        verdict = await asyncio.to_thread(self._finish, reply.text, key, inputs)
        if verdict is None:
            assert self.fallback is not None
            verdict = self._fallback_verdict(
                await self.fallback.ajudge(question, prediction, answers, metric=metric), reply.text
            )
        return verdict


# --- factory ---------------------------------------------------------------------------------------------

_BACKEND_OPTIONS = ("model", "base_url", "api_key_env", "timeout", "deadline", "max_retries")


def make_judge(kind: str, **kwargs: Any) -> Judge:
    """Build a judge from a name, as the command line does.

    Args:
        kind: ``"metric"`` or ``"llm"``.
        **kwargs: for ``"metric"``: ``thresholds``. For ``"llm"``: ``backend`` (a chat backend) or
            ``model`` (with optional ``base_url``, ``api_key_env``, ``timeout``, ``max_retries``) to build an
            :class:`~awares_agent.backends.openai_compat.OpenAIBackend` at temperature 0; plus ``cache`` and
            ``fallback`` (a judge, or ``"metric"`` for a default :class:`MetricJudge`).

    Returns:
        The judge.

    Raises:
        ConfigError: unknown kind or option, or an LLM judge with neither ``backend`` nor ``model``.
    """
    key = kind.strip().lower()
    if key == "metric":
        unknown = set(kwargs) - {"thresholds"}
        if unknown:
            raise ConfigError(f"make_judge('metric'): unknown option(s) {sorted(unknown)}; valid: thresholds")
        return MetricJudge(kwargs.get("thresholds"))
    if key == "llm":
        valid = {"backend", "cache", "fallback", *_BACKEND_OPTIONS}
        unknown = set(kwargs) - valid
        if unknown:
            raise ConfigError(
                f"make_judge('llm'): unknown option(s) {sorted(unknown)}; valid: {sorted(valid)}"
            )
        backend = kwargs.get("backend")
        options = {k: kwargs[k] for k in _BACKEND_OPTIONS if kwargs.get(k) is not None}
        if backend is None:
            if "model" not in options:
                raise ConfigError(
                    "make_judge('llm') needs backend=<a chat backend> or model=<model name> (with base_url= "
                    "for a local OpenAI-compatible server)"
                )
            # Imported here: only this judge needs the openai client, which takes a while to import.
            from awares_agent.backends.openai_compat import OpenAIBackend

            backend = OpenAIBackend(options.pop("model"), temperature=0.0, **options)
        elif options:
            raise ConfigError(f"make_judge('llm'): give either backend= or {sorted(options)}, not both")
        fallback = kwargs.get("fallback")
        if isinstance(fallback, str):
            if fallback.strip().lower() != "metric":
                raise ConfigError(
                    f"make_judge('llm'): fallback must be a judge or 'metric', got {fallback!r}"
                )
            fallback = MetricJudge()
        return LLMJudge(backend, cache=kwargs.get("cache"), fallback=fallback)
    raise ConfigError(f"unknown judge kind {kind!r}; use 'metric' or 'llm'")
