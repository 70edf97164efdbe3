"""What the demo does, apart from drawing it: one agent at a time, switched on request, and what it answered.

:class:`DemoSession` holds the backend and agent configuration, builds the agent (one compiled graph) when
either changes, runs queries through :meth:`AwaResAgent.stream <awares_agent.agent.AwaResAgent.stream>`,
keeps their history, compares policies on one question, and saves a query's trajectory and crops. The
terminal app (:mod:`awares_agent.demo.app`) only draws what it returns, so all of it is usable, and tested,
without a screen.

Every image the session sees goes into one :class:`~awares_agent.image_store.ImageStore`, kept across
backend switches, so a query from the history can be shown again with its view and crops.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image

from awares_agent.agent import AgentEvent, AskResult, AwaResAgent
from awares_agent.backend_factory import BackendOptions, make_backend
from awares_agent.backends.base import ChatBackend
from awares_agent.config import AgentConfig
from awares_agent.errors import AwaresError, ConfigError
from awares_agent.evals.metrics import exact
from awares_agent.image_store import ImageStore
from awares_agent.images import ImageInput, SourceImage
from awares_agent.policies import policy_options
from awares_agent.tools.crop_sets import Region, crop_set

#: The policies :meth:`DemoSession.compare` runs, in the order they are shown.
COMPARED = ("low-res", "awares", "full-res")


@dataclass(frozen=True)
class LoadedImage:
    """An image the session can ask about.

    Attributes:
        label: how it is named (a path, or a sample page's name).
        input: what it was loaded from (a path, bytes, a PIL image); the store knows it by its content id.
        source: the image in the session's store.
        expected: the known answer of its question, for a sample page.
        question: the question it was drawn for, for a sample page.
    """

    label: str
    input: ImageInput
    source: SourceImage
    expected: str | None = None
    question: str | None = None

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the original."""
        return self.source.width, self.source.height

    def check(self, question: str, answer: str | None) -> bool | None:
        """Whether ``answer`` matches the page's known answer (``None``: another question, or none known)."""
        if self.expected is None or question != self.question:
            return None
        return exact(answer, [self.expected]) == 1.0


@dataclass
class QueryRecord:
    """One query the session ran: what was asked of which image, by whom, and the result.

    Attributes:
        number: its number in the history (1 first).
        image: the image.
        question: the question.
        backend: the backend in words (``"reader"``, ``"openai qwen2.5-vl"``...).
        result: the agent's result.
    """

    number: int
    image: LoadedImage
    question: str
    backend: str
    result: AskResult

    @property
    def correct(self) -> bool | None:
        """Whether the answer matches a sample page's known answer (``None``: no known answer)."""
        return self.image.check(self.question, self.result.answer)


@dataclass(frozen=True)
class CompareRow:
    """One policy's run of the compared question.

    Attributes:
        policy: ``low-res``, ``awares`` or ``full-res``.
        result: its result, or ``None`` if it failed.
        error: why it failed.
        correct: whether the answer matches the known one (``None``: no known answer, or it failed).
    """

    policy: str
    result: AskResult | None = None
    error: str | None = None
    correct: bool | None = None


@dataclass
class DemoSession:
    """The demo's state: the backend and agent configuration, the images loaded, the queries run.

    Args:
        backend: which backend to use (the offline reader by default).
        config: the agent's configuration (the paper's defaults by default).
        out_dir: where trajectories and crops are saved unless a path is given.
    """

    backend: BackendOptions = field(default_factory=BackendOptions)
    config: AgentConfig = field(default_factory=AgentConfig)
    out_dir: Path = Path("awares-demo")
    history: list[QueryRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.store = ImageStore(max_pixels=self.config.max_image_pixels)
        self._agent: AwaResAgent | None = None
        self._backend: ChatBackend | None = None

    # --- backend and configuration -------------------------------------------------------------------

    @property
    def agent(self) -> AwaResAgent:
        """The agent for the current backend and configuration (built, and the backend loaded, on first use).

        Raises:
            ConfigError: the backend cannot be built (no model named...).
            BackendError: a local model cannot be loaded.
        """
        if self._agent is None:
            if self._backend is None:
                self._backend = make_backend(self.backend, crop_set=self.config.crop_set)
            self._agent = AwaResAgent(self._backend, self.config, store=self.store)
        return self._agent

    @property
    def backend_label(self) -> str:
        """The backend in words: its kind and model (``reader``, ``openai Qwen2.5-VL at http://...``)."""
        kind = self.backend.kind
        if kind == "reader":
            return "reader (offline OCR)"
        if not self.backend.model:  # a backend that needs no model (the pattern reader)
            return kind
        where = f" at {self.backend.base_url}" if kind == "openai" and self.backend.base_url else ""
        return f"{kind} {self.backend.model}{where}"

    def use_backend(self, options: BackendOptions) -> None:
        """Switch to the backend ``options`` name, building it now (a local model is loaded here).

        The current backend stays if the new one cannot be built.

        Raises:
            ConfigError: the options name no usable backend.
            BackendError: a local model cannot be loaded.
        """
        backend = make_backend(options, crop_set=self.config.crop_set)
        self.backend, self._backend, self._agent = options, backend, None

    def configure(self, **options: Any) -> None:
        """Change agent options (``protocol``, ``crop_set``, ``max_rtr``...), keeping the others.

        The reader plays its policy over the agent's crop set, so a new crop set rebuilds it.

        Raises:
            ConfigError: an invalid option or value (the configuration is then unchanged).
        """
        config = AgentConfig.from_options(self.config, **options)
        if self.backend.kind == "reader" and config.crop_set != self.config.crop_set:
            self._backend = make_backend(self.backend, crop_set=config.crop_set)
        self.config, self._agent = config, None

    def regions(self, image: LoadedImage) -> list[Region]:
        """The crop set's regions over ``image``."""
        return crop_set(self.config.crop_set).regions(*image.size)

    # --- images --------------------------------------------------------------------------------------

    def load(
        self,
        src: ImageInput,
        *,
        label: str | None = None,
        expected: str | None = None,
        question: str | None = None,
    ) -> LoadedImage:
        """Add an image (a path, bytes or a PIL image) to the session.

        Raises:
            ImageError: it is not a readable image, or is too large.
        """
        source = self.store.add(src)
        return LoadedImage(label or source.label, src, source, expected=expected, question=question)

    def view(self, image: LoadedImage) -> Image.Image:
        """The low-resolution view of ``image`` the model is shown first, under the current configuration.

        Raises:
            ImageError: its pixels cannot be decoded.
        """
        return image.source.low_res(self.config.view)

    def pixels(self, image_id: str) -> Image.Image:
        """The pixels of a stored image (a view or a crop, by the id a trajectory records)."""
        return self.store.get(image_id)

    # --- queries -------------------------------------------------------------------------------------

    def stream(self, image: LoadedImage, question: str) -> Iterator[AgentEvent]:
        """Ask ``question`` about ``image``; yield the agent's events (text as it is generated), the
        ``result`` last. The query joins the history when it completes.

        Raises:
            AwaresError: the query failed (a bad image, a backend that fails...); nothing joins the history.
        """
        agent, label = self.agent, self.backend_label
        for event in agent.stream(image.input, question):
            if event.type == "result" and event.result is not None:
                self.history.append(QueryRecord(len(self.history) + 1, image, question, label, event.result))
            yield event

    def compare(self, image: LoadedImage, question: str) -> list[CompareRow]:
        """Ask ``question`` under the low-res, awares and full-res policies (:data:`COMPARED`), one after
        another on the same agent; a policy that fails is reported in its row, the others still run."""
        rows = []
        agent = self.agent
        width, height = image.size
        for policy in COMPARED:
            options = policy_options(policy, self.config, width=width, height=height, sample_id=image.label)
            try:
                result = agent.ask(image.input, question, options=options)
            except AwaresError as exc:
                rows.append(CompareRow(policy, error=f"{type(exc).__name__}: {exc}"))
                continue
            rows.append(CompareRow(policy, result=result, correct=image.check(question, result.answer)))
        return rows

    # --- saving --------------------------------------------------------------------------------------

    def record(self, number: int | None = None) -> QueryRecord:
        """A query of the history: ``number``, or the last one.

        Raises:
            ConfigError: there is no such query.
        """
        if not self.history:
            raise ConfigError("no query yet: ask a question first")
        if number is None:
            return self.history[-1]
        if not 1 <= number <= len(self.history):
            raise ConfigError(f"no query {number}: the history holds 1 to {len(self.history)}")
        return self.history[number - 1]

    def save_trajectory(self, record: QueryRecord, path: str | Path | None = None) -> Path:
        """Write ``record``'s trajectory as JSON (the schema every awares tool reads).

        Args:
            record: the query.
            path: the file (default: ``out_dir/query-N-<time>.json``).
        """
        target = Path(path).expanduser() if path else self.out_dir / f"query-{record.number}-{_stamp()}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(record.result.trajectory.model_dump_json(indent=2) + "\n", encoding="utf-8")
        return target

    def save_crops(self, record: QueryRecord, directory: str | Path | None = None) -> list[Path]:
        """Write the crops ``record``'s model was sent as PNG files, named by round, region id and name.

        Args:
            record: the query.
            directory: the folder (default: ``out_dir/query-N-crops``).

        Raises:
            ConfigError: the query had no crops.
        """
        crops = record.result.crops
        if not crops:
            raise ConfigError(f"query {record.number} sent no crops: there is nothing to save")
        folder = Path(directory).expanduser() if directory else self.out_dir / f"query-{record.number}-crops"
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for crop in crops:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"round{crop.round}-{crop.region_id}-{crop.name}")
            path = folder / f"{name}.png"
            self.store.get(crop.image_id).save(path)
            paths.append(path)
        return paths


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + f"{time.perf_counter_ns() % 1000:03d}"
