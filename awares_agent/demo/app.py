"""``awares demo``: the AwaRes loop, live, in a full-screen terminal app (Textual).

On the left, the low-resolution view the model is shown, with the crop set's regions outlined and numbered;
the regions the model asks for light up, and the crops it is sent appear below as they arrive. On the right,
the sample pages with their questions, the conversation (each model turn, its text streamed as it is
generated where the backend can), and the input box for questions and ``/`` commands
(:mod:`awares_agent.demo.commands`). The status line gives the backend and model, the protocol, the visual
tokens sent against the full image, RTR, model calls and latency.

Queries, model loading and comparisons run in worker threads, so the screen stays live; whatever goes
wrong (an unreadable image, a server that is down, a model that answers garbage) is written in the
conversation in red and the app carries on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from PIL import Image
from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Header, Input, OptionList, RichLog, Static, TabbedContent, TabPane
from textual.widgets.option_list import Option

from awares_agent.agent import AgentEvent, AskResult
from awares_agent.backend_factory import BackendOptions
from awares_agent.demo.commands import Command, help_lines, is_command, parse_command
from awares_agent.demo.samples import SamplePage, sample_pages
from awares_agent.demo.session import CompareRow, DemoSession, LoadedImage, QueryRecord
from awares_agent.demo.view import RegionView
from awares_agent.errors import AwaresError, ConfigError
from awares_agent.redact import redact
from awares_agent.tools.crop_sets import Region

CROP_WIDTH = 26
"""Columns per crop thumbnail."""


class ImagePanel(Widget):
    """The low-resolution view with the crop set's regions, the requested ones lit."""

    DEFAULT_CSS = """
    ImagePanel { height: 1fr; border: round $primary; padding: 0 1; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.image: Image.Image | None = None
        self.source_size: tuple[int, int] | None = None
        self.regions: list[Region] = []
        self.lit: set[str] = set()

    def show(
        self,
        image: Image.Image,
        source_size: tuple[int, int],
        regions: list[Region],
        lit: Iterable[str] = (),
    ) -> None:
        """Show ``image`` (a view of an original of ``source_size``) with ``regions``, ``lit`` ones lit."""
        self.image, self.source_size, self.regions, self.lit = image, source_size, regions, set(lit)
        self.refresh()

    def light(self, ids: Iterable[str]) -> None:
        """Light up regions ``ids`` as well."""
        self.lit |= set(ids)
        self.refresh()

    def render(self) -> RenderableType:
        if self.image is None:
            return Text("no image: /open PATH or /sample N", style="dim")
        width, height = self.content_size
        return RegionView(
            self.image,
            source_size=self.source_size,
            regions=self.regions,
            lit=self.lit,
            width=max(1, width),
            height=max(1, height),
        )


class DemoApp(App[None]):
    """The demo app.

    Args:
        session: the session to drive (its backend, configuration and history).
        image: an image to open at start (a path); ``None`` opens the first sample page.
        samples: the sample pages offered (default: :func:`~awares_agent.demo.samples.sample_pages`).
    """

    TITLE = "awares demo"
    CSS = """
    #left { width: 3fr; }
    #right { width: 2fr; }
    #crops { height: auto; max-height: 16; border: round $secondary; padding: 0 1; }
    #pick { height: 14; }
    #log { height: 1fr; border: round $primary; }
    #live { height: auto; max-height: 8; padding: 0 1; color: $warning; }
    #status { height: 1; background: $boost; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        # Function keys and ctrl+o: the input box, which has the focus, binds most other ctrl keys itself.
        Binding("f1", "help", "help"),
        Binding("f2", "compare", "compare"),
        Binding("f3", "save", "save trajectory"),
        Binding("f4", "save_crops", "save crops"),
        Binding("ctrl+o", "prompt('/open ')", "open image"),
    ]

    def __init__(
        self,
        session: DemoSession | None = None,
        *,
        image: str | None = None,
        samples: list[SamplePage] | None = None,
    ) -> None:
        super().__init__()
        self.session = session or DemoSession()
        self.samples = samples if samples is not None else sample_pages()
        self._start_image = image
        self.current: LoadedImage | None = None
        self.shown: QueryRecord | None = None
        self.busy: str | None = None
        self._live = ""
        self._pieces = 0
        self._crop_views: list[RenderableType] = []

    # --- layout --------------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="left"):
                yield ImagePanel(id="view")
                yield Static(Text("no crops yet", style="dim"), id="crops")
            with Vertical(id="right"):
                with TabbedContent(id="pick"):
                    with TabPane("samples", id="samples-tab"):
                        yield OptionList(
                            *(
                                Option(f"{n}. {p.label}\n   {p.question}", id=f"sample-{n}")
                                for n, p in enumerate(self.samples, 1)
                            ),
                            id="samples",
                        )
                    with TabPane("history", id="history-tab"):
                        yield OptionList(id="history")
                yield RichLog(id="log", wrap=True, markup=False, highlight=False, min_width=20)
                yield Static("", id="live")
        yield Static("", id="status")
        yield Input(placeholder="ask a question about the image, or /help", id="ask")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#view", ImagePanel).border_title = "low-res view"
        self.query_one("#crops", Static).border_title = "crops sent"
        self.query_one("#log", RichLog).border_title = "conversation"
        self.sub_title = self.session.backend_label
        self._say(
            "awares: the model sees a low-resolution view first and asks for high-resolution crops only "
            "where it needs detail. Pick a sample page or /open your own image; /help lists commands.",
            "dim",
        )
        if self._start_image is not None:
            self._open_path(self._start_image)
        if self.current is None and self.samples:
            self._open_sample(1)
        self._status()
        self.query_one("#ask", Input).focus()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand(
            "Compare policies", "low-res, awares and full-res on this question", self.action_compare
        )
        yield SystemCommand("Save trajectory", "the shown query's trajectory as JSON", self.action_save)
        yield SystemCommand("Save crops", "the shown query's crops as PNG files", self.action_save_crops)
        yield SystemCommand(
            "Offline reader", "switch to the embedded OCR reader", lambda: self._run("/reader")
        )
        yield SystemCommand("Demo help", "list the / commands", self.action_help)

    # --- input ---------------------------------------------------------------------------------------

    def on_input_submitted(self, event: Input.Submitted) -> None:
        line = event.value.strip()
        event.input.value = ""
        if line:
            self._run(line)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        option_id = event.option.id or ""
        kind, _, number = option_id.partition("-")
        if kind == "sample":
            self._open_sample(int(number))
        elif kind == "query":
            self._show_record(self.session.record(int(number)))

    def _run(self, line: str) -> None:
        """Run an input line: a command, or a question about the current image."""
        if not is_command(line):
            self._ask(line)
            return
        try:
            command = parse_command(line)
            self._command(command)
        except AwaresError as exc:
            self._error(exc)

    def _command(self, command: Command) -> None:
        name, arg = command.name, command.arg()
        if name == "help":
            self.action_help()
        elif name == "quit":
            self.exit()
        elif name == "open":
            self._open_path(arg or "")
        elif name == "sample":
            self._open_sample(_number(arg, "sample"))
        elif name == "history":
            self._list_history()
        elif name == "show":
            self._show_record(self.session.record(_number(arg, "show")))
        elif name == "save":
            path = self.session.save_trajectory(self._shown(), arg)
            self._say(f"trajectory saved to {path}", "green")
        elif name == "crops":
            paths = self.session.save_crops(self._shown(), arg)
            self._say(f"{len(paths)} crop(s) saved to {paths[0].parent}", "green")
        elif name == "compare":
            self._compare(arg)
        elif name in ("protocol", "crop-set", "budget"):
            self._configure(name, arg or "")
        else:  # reader, server, model
            self._switch(command)

    def action_prompt(self, text: str) -> None:
        """Put ``text`` in the input box, ready to be completed."""
        box = self.query_one("#ask", Input)
        box.value = text
        box.cursor_position = len(text)
        box.focus()

    def action_help(self) -> None:
        """List the commands in the conversation."""
        self._say("\n".join(help_lines()), "cyan")

    def action_compare(self) -> None:
        """Compare the policies on the current question."""
        self._run("/compare")

    def action_save(self) -> None:
        """Save the shown query's trajectory."""
        self._run("/save")

    def action_save_crops(self) -> None:
        """Save the shown query's crops."""
        self._run("/crops")

    # --- images --------------------------------------------------------------------------------------

    def _open_path(self, path: str) -> None:
        try:
            image = self.session.load(path, label=path)
        except AwaresError as exc:
            self._error(exc)
            return
        self._set_image(image)
        self._say(f"opened {path} ({image.size[0]}x{image.size[1]})", "dim")

    def _open_sample(self, number: int) -> None:
        if not 1 <= number <= len(self.samples):
            self._error(ConfigError(f"no sample {number}: there are {len(self.samples)} (/sample 1...)"))
            return
        page = self.samples[number - 1]
        image = self.session.load(page.image, label=page.name, expected=page.answer, question=page.question)
        self._set_image(image)
        box = self.query_one("#ask", Input)
        box.value = page.question
        box.cursor_position = len(page.question)
        self._say(f"sample {page.label}: press Enter to ask its question, or type your own", "dim")

    def _set_image(self, image: LoadedImage) -> None:
        self.current, self.shown = image, None
        try:
            view = self.session.view(image)
        except AwaresError as exc:
            self._error(exc)
            return
        panel = self.query_one("#view", ImagePanel)
        panel.show(view, image.size, self.session.regions(image))
        panel.border_title = f"{image.label}: the model's view {view.width}x{view.height}"
        self._set_crops([])
        self._status()

    def _set_crops(self, crops: list[dict[str, Any]]) -> None:
        self._crop_views = []
        for crop in crops:
            self._add_crop(crop)
        if not crops:
            self.query_one("#crops", Static).update(Text("no crops", style="dim"))

    def _add_crop(self, crop: dict[str, Any]) -> None:
        pixels = self.session.pixels(crop["image_id"])
        caption = Text(
            f"{crop['region_id']} {crop['name']}\n{crop['width']}x{crop['height']}, {crop['tokens']} tok",
            style="bold",
        )
        self._crop_views.append(Group(RegionView(pixels, width=CROP_WIDTH, height=8), caption))
        grid = Table.grid(padding=(0, 2))
        for _ in self._crop_views:
            grid.add_column(width=CROP_WIDTH)
        grid.add_row(*self._crop_views)
        self.query_one("#crops", Static).update(grid)

    # --- queries -------------------------------------------------------------------------------------

    def _ask(self, question: str) -> None:
        if self.busy:
            self._error(ConfigError(f"busy {self.busy}: wait for it to finish"))
            return
        if self.current is None:
            self._error(ConfigError("no image: /open PATH or /sample N first"))
            return
        self.busy = "answering"
        self._say(f"you: {question}", "bold")
        self._status("asking...")
        self._query(self.current, question)

    @work(thread=True, group="agent")
    def _background(self, job: Callable[[], None]) -> None:
        """Run ``job`` off the screen's thread: whatever it raises is shown, and the app is idle after."""
        try:
            job()
        except Exception as exc:  # shown in the app: a demo never dies of a query, a switch or a comparison
            self.call_from_thread(self._error, exc)
        finally:
            self.call_from_thread(self._idle)

    def _query(self, image: LoadedImage, question: str) -> None:
        def job() -> None:
            for event in self.session.stream(image, question):
                self.call_from_thread(self._on_event, image, event)

        self._background(job)

    def _on_event(self, image: LoadedImage, event: AgentEvent) -> None:
        data = event.data
        if event.type == "view":
            view = data["view"]
            panel = self.query_one("#view", ImagePanel)
            panel.show(self.session.pixels(view["id"]), image.size, self.session.regions(image))
            panel.border_title = (
                f"{image.label}: the model's view {view['width']}x{view['height']}, {data['view_tokens']} "
                f"visual tokens (full image: {data['full_tokens']})"
            )
            self._set_crops([])
        elif event.type == "token":
            self._live += data["text"]
            self._pieces += 1
            self.query_one("#live", Static).update(Text(f"model: {self._live}▌"))
        elif event.type == "model":
            pieces, self._live, self._pieces = self._pieces, "", 0
            self.query_one("#live", Static).update("")
            self._model_turn(data, pieces)
        elif event.type == "crops":
            for crop in data["crops"]:
                self._add_crop(crop)
            sent = ", ".join(f"{c['region_id']} ({c['name']}, {c['tokens']} tok)" for c in data["crops"])
            self._say(f"crops sent: {sent}", "yellow")
            if data.get("withheld"):
                self._say(f"withheld by the budget: {', '.join(data['withheld'])}", "red")
        elif event.type == "result" and event.result is not None:
            self._finished(self.session.record())

    def _model_turn(self, data: dict[str, Any], pieces: int) -> None:
        who = "model (scripted)" if data.get("scripted") else "model"
        if pieces:
            who += f" (streamed in {pieces} pieces)"
        text = (data.get("text") or "").strip()
        if data["kind"] == "crop":
            self.query_one("#view", ImagePanel).light(data["crops"])
            self._say(
                f"{who} asks for crops {', '.join(data['crops'])}" + (f": {text}" if text else ""), "yellow"
            )
        elif data["kind"] == "invalid":
            self._say(
                f"{who} made an invalid tool call: {data.get('error')}" + (f"\n  {text}" if text else ""),
                "red",
            )
        else:
            self._say(f"{who}: {text}", "green")

    def _finished(self, record: QueryRecord) -> None:
        self.shown = record
        result = record.result
        verdict = {True: "  (matches the page)", False: f"  (the page says {record.image.expected})"}.get(
            record.correct, ""
        )
        self._say(
            f"answer: {result.answer if result.answer is not None else '(none)'}{verdict}", "bold green"
        )
        for error in result.trajectory.errors:
            self._say(f"note: {error.kind}: {error.message}", "red")
        history = self.query_one("#history", OptionList)
        history.add_option(Option(_history_line(record), id=f"query-{record.number}"))
        self._status()

    def _show_record(self, record: QueryRecord) -> None:
        """Show a query of the history again: its image, view, lit regions, crops and answer."""
        self.current = record.image
        trajectory = record.result.trajectory
        panel = self.query_one("#view", ImagePanel)
        lit = {c.region_id for c in trajectory.crops}
        panel.show(
            self.session.pixels(trajectory.view.id),
            record.image.size,
            self.session.regions(record.image),
            lit,
        )
        panel.border_title = f"query {record.number}: {record.image.label}"
        self._set_crops([c.model_dump(mode="json") for c in trajectory.crops])
        self.shown = record
        self._say(f"query {record.number} ({record.backend}): {record.question}", "bold")
        self._say(f"answer: {record.result.answer}", "green")
        self._status()

    def _list_history(self) -> None:
        if not self.session.history:
            self._say("no queries yet", "dim")
            return
        self._say("\n".join(_history_line(r) for r in self.session.history), "cyan")
        self.query_one("#pick", TabbedContent).active = "history-tab"

    def _compare(self, question: str | None) -> None:
        if self.busy:
            self._error(ConfigError(f"busy {self.busy}: wait for it to finish"))
            return
        image = self.current
        if image is None:
            self._error(ConfigError("no image: /open PATH or /sample N first"))
            return
        question = question or (self.shown.question if self.shown else None) or image.question
        if not question:
            self._error(ConfigError("no question to compare: /compare QUESTION"))
            return
        self.busy = "comparing"
        self._say(f"comparing low-res, awares and full-res on: {question}", "bold")
        self._status("comparing...")
        self._run_compare(image, question)

    def _run_compare(self, image: LoadedImage, question: str) -> None:
        self._background(lambda: self.call_from_thread(self._compared, self.session.compare(image, question)))

    def _compared(self, rows: list[CompareRow]) -> None:
        # Narrow by design: it is drawn in the conversation column.
        table = Table(title="same question, three policies", box=box.SIMPLE_HEAD, padding=(0, 1), expand=True)
        table.add_column("policy")
        table.add_column("answer", overflow="fold")
        table.add_column("crops")
        for column in ("tokens", "RTR", "s"):
            table.add_column(column, justify="right")
        for row in rows:
            if row.result is None:
                table.add_row(row.policy, Text(row.error or "failed", style="red"), "", "", "", "")
                continue
            r = row.result
            mark = {True: " ✓", False: " ✗"}.get(row.correct, "")
            table.add_row(
                row.policy,
                f"{r.answer}{mark}",
                ",".join(c.region_id for c in r.crops) or "-",
                f"{r.visual_tokens}/{r.full_tokens}",
                f"{r.rtr:.2f}",
                f"{r.latency_s:.2f}",
            )
        self.query_one("#log", RichLog).write(table)

    # --- switching -----------------------------------------------------------------------------------

    def _configure(self, name: str, value: str) -> None:
        if name == "budget":
            budget = None if value.lower() in ("off", "none") else _budget(value)
            self.session.configure(max_rtr=budget)
        elif name == "protocol":
            self.session.configure(protocol=value)
        else:
            self.session.configure(crop_set=value)
        if self.current is not None:
            self._set_image(self.current)
        self._say(f"{name} is now {value}", "cyan")
        self._status()

    def _switch(self, command: Command) -> None:
        if self.busy:
            self._error(ConfigError(f"busy {self.busy}: wait for it to finish"))
            return
        old = self.session.backend
        if command.name == "reader":
            options = BackendOptions(backend="reader")
        elif command.name == "server":
            url, model = command.args
            options = BackendOptions(
                backend="openai",
                base_url=url,
                model=model,
                timeout=old.timeout,
                max_retries=old.max_retries,
                api_key_env=old.api_key_env,
                max_new_tokens=old.max_new_tokens,
            )
        elif old.kind == "openai":
            options = old.server(model=command.arg(), base_url=old.base_url)
        else:
            options = BackendOptions(
                backend="transformers",
                model=command.arg(),
                device=old.device,
                dtype=old.dtype,
                offline=old.offline,
                max_new_tokens=old.max_new_tokens,
            )
        self.busy = "switching backend"
        self._status(f"loading {options.model or 'the reader'}...")
        self._load_backend(options)

    def _load_backend(self, options: BackendOptions) -> None:
        def job() -> None:
            self.session.use_backend(options)
            self.call_from_thread(self._switched)

        self._background(job)

    def _switched(self) -> None:
        self.sub_title = self.session.backend_label
        self._say(f"backend: {self.session.backend_label}", "cyan")

    # --- the conversation and the status line --------------------------------------------------------

    def _say(self, text: str, style: str = "") -> None:
        self.query_one("#log", RichLog).write(Text(text, style=style))

    def _error(self, exc: BaseException) -> None:
        kind = type(exc).__name__
        self._say(f"error ({kind}): {redact(str(exc))}", "bold red")
        self._live, self._pieces = "", 0
        self.query_one("#live", Static).update("")
        self._status()

    def _idle(self) -> None:
        self.busy = None
        self._status()

    def _shown(self) -> QueryRecord:
        if self.shown is None:
            return self.session.record()
        return self.shown

    def _status(self, doing: str | None = None) -> None:
        session = self.session
        config = session.config
        budget = f"{config.max_rtr:g}" if config.max_rtr is not None else "none"
        parts = [
            session.backend_label,
            f"protocol {config.protocol}",
            f"crop set {config.crop_set}",
            f"budget {budget}",
        ]
        record = self.shown
        if doing:
            parts.append(doing)
        elif record is not None:
            parts.append(_cost_line(record.result))
        self.query_one("#status", Static).update(Text(" · ".join(parts)))


def _cost_line(result: AskResult) -> str:
    calls = result.trajectory.calls
    return (
        f"visual tokens {result.visual_tokens}/{result.full_tokens} · RTR {result.rtr:.2f} · "
        f"{calls} model call{'' if calls == 1 else 's'} · {result.latency_s:.2f} s"
    )


def _history_line(record: QueryRecord) -> str:
    mark = {True: " ✓", False: " ✗"}.get(record.correct, "")
    return (
        f"{record.number}. {record.image.label}: {record.question} -> {record.result.answer}{mark} "
        f"(RTR {record.result.rtr:.2f})"
    )


def _number(value: str | None, command: str) -> int:
    try:
        return int(value or "")
    except ValueError:
        raise ConfigError(f"/{command} takes a number, got {value!r}") from None


def _budget(value: str) -> float:
    try:
        budget = float(value)
    except ValueError:
        raise ConfigError(
            f"/budget takes a retained token ratio such as 0.5, or off; got {value!r}"
        ) from None
    return budget
