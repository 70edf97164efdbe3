"""The ``awares`` command line, built one way: every command's flags generated from typed configs.

* :func:`add_options` turns the fields of a config (a dataclass, or a pydantic model such as
  :class:`~awares_agent.config.AgentConfig`) into flags: ``--base-url`` for ``base_url``, the field's type,
  default, choices (a ``Literal``) and help (a dataclass field's ``metadata["help"]``, a pydantic field's
  ``description``). A default is written once, in its config, and shown in ``--help`` from there.
* The option blocks shared by several commands are configs too: :class:`DataOptions` (``--bench``,
  ``--split``, ``--limit``, ``--seed``, ``--out``, ``--concurrency``), :class:`~awares_agent.backend_factory.
  BackendOptions` (the backend) and :class:`~awares_agent.config.AgentConfig` (the agent).
* :class:`Command` is one row of a command table (its name, help, option blocks and handler);
  :func:`build_parser` makes one argparse tree of a table, and :func:`run` parses a command line, calls the
  handler and maps errors to exit codes. A command may bring a parser of its own (``awares train sft`` brings
  TRL's): it is built only when that command is parsed, so ``awares --help`` does not wait for TRL.

Flags are spelled with dashes. TRL's underscore spellings (``--max_steps``) also parse, and ``--help`` shows
only the dash form.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import sys
import types
import typing
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined
from rich.console import Console
from rich.markup import escape

from awares_agent.backend_factory import BackendOptions
from awares_agent.config import CHECKPOINT_FIELDS, AgentConfig, checkpoint_options
from awares_agent.errors import AwaresError, BackendError, ConfigError
from awares_agent.redact import install_log_redaction, redact

READER_NOTE = (
    "With no --model and no --base-url the embedded offline reader answers: an OCR engine that runs on CPU "
    'with no download. It answers text-reading questions only ("What is the invoice number?"); use a VLM '
    "(--model or --base-url) for anything else."
)

EXIT_OK, EXIT_BACKEND, EXIT_INPUT, EXIT_INTERNAL = 0, 1, 2, 3
"""The exit codes: success, a backend failure (server, network), bad input or options, a bug of ours."""

_GROUPS = {
    "server": "OpenAI-compatible server (vLLM, SGLang, Ollama, OpenAI...)",
    "local": "local model (Hugging Face transformers)",
}


# --- the data block ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataOptions:
    """Which samples a command reads and where it writes: one block for every command that reads data.

    ``awares eval``, ``awares collect label|rollout`` and ``awares lmms-task`` read a benchmark;
    ``awares train eval`` reads held-out rows (its ``--data``) and takes ``limit``, ``out`` and
    ``concurrency`` from here. Each flag has one meaning and one default everywhere.

    Attributes:
        bench: a generated benchmark (``synthetic``, ``crop-decision``, ``stripes``, ``stripes-tinted``), a
            paper benchmark id, or a path to your own data (a ``datasets`` directory or JSONL + images).
        out: the folder the command writes; a run folder is resumable (run the same command again).
        split: the dataset split (default: the benchmark's standard one).
        limit: the first N samples (a generated benchmark: how many to generate).
        seed: the seed of a generated benchmark (and of the ``random`` evaluation policy).
        concurrency: samples in flight at once. One default, 4, for every command: a local model decodes
            them as one batch, a server (or a hosted API) is kept busy without tripping its rate limits, and
            the offline reader, bound by the CPU, gains nothing from more on a small machine. Raise it for a
            large server.
    """

    bench: str = field(
        metadata={
            "help": "'synthetic', 'crop-decision', 'stripes' / 'stripes-tinted' (generated), a paper "
            "benchmark (chartqa, docvqa, ocrbench, pope, realworldqa, vstar) or a path to your own data (a "
            "datasets directory or JSONL + images)"
        }
    )
    out: str = field(
        metadata={
            "help": "the folder the command writes (a run folder: run the same command again to resume it)"
        }
    )
    split: str | None = field(
        default=None, metadata={"help": "dataset split (default: the benchmark's standard one)"}
    )
    limit: int | None = field(
        default=None,
        metadata={"min": 1, "metavar": "N", "help": "the first N samples (generated data: how many to make)"},
    )
    seed: int = field(default=0, metadata={"help": "seed of a generated benchmark and of the random policy"})
    concurrency: int = field(
        default=4,
        metadata={
            "min": 1,
            "metavar": "N",
            "help": "samples in flight at once (a local model batches them; raise it for a large server)",
        },
    )


# --- the generator ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    """One config field as the generator sees it, a dataclass's or a pydantic model's."""

    name: str
    annotation: Any
    default: Any
    required: bool
    help: str
    meta: dict[str, Any]


def _fields(config: type) -> list[_Field]:
    if isinstance(config, type) and issubclass(config, BaseModel):
        found = []
        for name, info in config.model_fields.items():
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            required = info.default is PydanticUndefined and info.default_factory is None
            default = None if required else info.get_default(call_default_factory=True)
            found.append(
                _Field(name, info.annotation, default, required, info.description or "", dict(extra))
            )
        return found
    hints = typing.get_type_hints(config)
    found = []
    for f in dataclasses.fields(config):
        if not f.init:
            continue
        meta = dict(f.metadata)
        if f.default is not dataclasses.MISSING:
            default, required = f.default, False
        elif f.default_factory is not dataclasses.MISSING:
            default, required = f.default_factory(), False
        else:
            default, required = None, True
        found.append(_Field(f.name, hints[f.name], default, required, meta.pop("help", ""), meta))
    return found


def _strip_none(annotation: Any) -> Any:
    """A field's annotation without its ``| None`` (``float | None`` gives ``float``)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _at_least(kind: type, low: int | float) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def add_options(
    parser: argparse.ArgumentParser,
    config: type,
    *,
    names: Collection[str] | None = None,
    title: str | None = None,
    given_only: bool = False,
    recorded: Collection[str] = (),
) -> None:
    """Add one flag (or positional argument) per field of ``config``, a dataclass or a pydantic model.

    A field's flag is its name with dashes; its type, default and choices (a ``Literal``) are the field's,
    and its help is a dataclass field's ``metadata["help"]`` or a pydantic field's ``description``, with the
    default appended. More metadata (a dataclass field's ``metadata``, a pydantic field's
    ``json_schema_extra``): ``flag`` (another spelling), ``positional``, ``metavar``, ``min`` (the lowest
    value accepted), ``group`` (a help section of :data:`_GROUPS`) and ``cli: False`` (no flag).

    Args:
        parser: where the flags go.
        config: the config class.
        names: only these fields (default: every field).
        title: put the flags under this help section.
        given_only: every flag parses to ``None`` when not given (a boolean gets ``--no-...`` too), so that
            :func:`given` can tell what the command line set; the help still shows the config's default.
        recorded: fields whose default is what a trained checkpoint records (:data:`CHECKPOINT_FIELDS`).
    """
    target: Any = parser.add_argument_group(title) if title else parser
    groups: dict[str, Any] = {}
    for f in _fields(config):
        if (names is not None and f.name not in names) or f.meta.get("cli", True) is False:
            continue
        meta = dict(f.meta)
        meta.pop("cli", None)
        where = target
        if (group := meta.pop("group", None)) is not None:
            where = groups.get(group) or parser.add_argument_group(_GROUPS[group])
            groups[group] = where
        spelling = meta.pop("flag", None) or _flag(f.name)
        low = meta.pop("min", None)
        positional = meta.pop("positional", False)
        kind = _strip_none(f.annotation)
        help_text = f.help
        if "default" in help_text:
            pass  # the help says it in its own words
        elif f.name in recorded:
            help_text += f" (default: what a model trained by awares records, else {f.default})"
        elif f.default is not None and f.default is not False:
            help_text += f" (default: {f.default})"
        kwargs: dict[str, Any] = {"help": help_text.replace("%", "%%"), **meta}
        if positional:
            if typing.get_origin(kind) is list:
                kwargs["nargs"] = "+"
            elif not f.required:
                kwargs.update(nargs="?", default=f.default)
            where.add_argument(f.name, **kwargs)
            continue
        kwargs["dest"] = f.name
        if kind is bool:
            action = argparse.BooleanOptionalAction if given_only or f.default else "store_true"
            where.add_argument(spelling, action=action, default=None if given_only else f.default, **kwargs)
            continue
        if typing.get_origin(kind) is typing.Literal:
            kwargs["choices"] = typing.get_args(kind)
            kind = type(kwargs["choices"][0])
        elif typing.get_origin(kind) is list:
            kwargs["nargs"] = "+"
            kind = typing.get_args(kind)[0]
        parse = _at_least(kind, low) if low is not None else kind if kind in (int, float) else str
        default = None if given_only else f.default
        where.add_argument(spelling, type=parse, default=default, required=f.required, **kwargs)


def given(args: argparse.Namespace, config: type) -> dict[str, Any]:
    """The fields of ``config`` the command line set (flags added with ``given_only=True``)."""
    return {f.name: getattr(args, f.name) for f in _fields(config) if getattr(args, f.name, None) is not None}


def options(args: argparse.Namespace, config: type) -> Any:
    """The ``config`` (a dataclass) the parsed flags name."""
    return config(**{f.name: getattr(args, f.name) for f in _fields(config) if hasattr(args, f.name)})


def config_options(config: type, **kwargs: Any) -> Callable[[argparse.ArgumentParser], None]:
    """What adds ``config``'s flags to a command's parser (a :attr:`Command.options` entry); ``kwargs`` are
    :func:`add_options`'s."""
    return lambda parser: add_options(parser, config, **kwargs)


def add_data_options(*names: str) -> Callable[[argparse.ArgumentParser], None]:
    """A command's share of the data block: the flags of the :class:`DataOptions` fields ``names``."""
    unknown = set(names) - {f.name for f in dataclasses.fields(DataOptions)}
    if unknown:
        raise ValueError(f"DataOptions has no field {', '.join(sorted(unknown))}")
    return config_options(DataOptions, names=names)


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """Add one flag per :class:`BackendOptions` field (``--base-url`` for ``base_url``...)."""
    add_options(parser, BackendOptions)


def backend_options(args: argparse.Namespace) -> BackendOptions:
    """The :class:`BackendOptions` the parsed flags name."""
    return options(args, BackendOptions)


def add_agent_options(parser: argparse.ArgumentParser) -> None:
    """Add one flag per :class:`AgentConfig` field, under the help section "agent".

    Every flag parses to ``None`` when not given: a model trained by ``awares train`` records how it speaks
    (:meth:`AgentConfig.from_checkpoint`), and :func:`agent_config` takes that before the defaults.
    """
    add_options(parser, AgentConfig, title="agent", given_only=True, recorded=CHECKPOINT_FIELDS)


def agent_config(args: argparse.Namespace) -> AgentConfig:
    """The :class:`AgentConfig` the parsed flags name, over what a trained ``--model`` directory records.

    Raises:
        ConfigError: an invalid value or combination, every problem named.
    """
    recorded = checkpoint_options(getattr(args, "model", None))
    flags = given(args, AgentConfig)
    if "system_prompt_preset" in flags:  # a preset asked for replaces a recorded prompt of the model's own
        recorded.pop("system_prompt", None)
    return AgentConfig.from_options(**{**recorded, **flags})


# --- parsers and the command table ------------------------------------------------------------------------


class UsageError(ConfigError):
    """A command line the parser refused (an unknown flag or command, a bad value); ``usage`` says how."""

    def __init__(self, message: str, *, usage: str = "") -> None:
        super().__init__(message)
        self.usage = usage


class HelpFormatter(argparse.HelpFormatter):
    """Shows each flag in its dash spelling: an underscore twin (TRL's ``--max_steps``) parses, unlisted."""

    # argparse's hook for how a flag is listed (the one HelpFormatter subclasses override).
    def _format_action_invocation(self, action: argparse.Action) -> str:
        strings = action.option_strings
        shown = [s for s in strings if not ("_" in s and s.replace("_", "-") in strings)]
        if shown != strings:
            action = copy.copy(action)
            action.option_strings = shown
        return super()._format_action_invocation(action)


class CommandParser(argparse.ArgumentParser):
    """The parser of an ``awares`` command.

    A refused command line raises :class:`UsageError` (:func:`run` prints it and exits 2) instead of exiting
    from inside the parser; ``-h``/``--help`` still prints the help and exits 0. An unknown sub-command is
    named as such ("unknown train command 'fly'"), with the known ones.
    """

    def __init__(self, *args: Any, formatter_class: type = HelpFormatter, **kwargs: Any) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(f"{self.prog}: {message}", usage=self.format_usage())

    # argparse checks a sub-command's name here, as any choice ("invalid choice: 'fly'"); it says more.
    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.nargs == argparse.PARSER and value not in (action.choices or {}):
            group = self.prog.rsplit(" ", 1)[1] + " " if " " in self.prog else ""
            raise argparse.ArgumentError(
                None, f"unknown {group}command {value!r}; use {', '.join(action.choices or {})}"
            )
        super()._check_value(action, value)


class DeferredParser(CommandParser):
    """A sub-command's parser made by ``build`` the first time it is used (parsing or help).

    ``awares train sft`` parses with TRL's parser, whose flags come from TRL's config dataclasses: importing
    them takes seconds, which ``awares --help`` or ``awares ask`` should not wait for.
    """

    def __init__(self, build: Callable[[str], argparse.ArgumentParser], **kwargs: Any) -> None:
        super().__init__(add_help=False, **kwargs)
        self._build = build
        self._parser: argparse.ArgumentParser | None = None

    @property
    def parser(self) -> argparse.ArgumentParser:
        """The real parser (built on first use)."""
        if self._parser is None:
            self._parser = self._build(self.prog)
        return self._parser

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        return self.parser.parse_known_args(args, namespace)

    def format_usage(self) -> str:
        return self.parser.format_usage()

    def format_help(self) -> str:
        return self.parser.format_help()


Handler = Callable[[argparse.Namespace, Any], int]
"""A command's handler: ``(parsed flags, rich console) -> exit code``."""


@dataclass(frozen=True)
class Command:
    """One row of a command table: a command, its flags and its handler, or a group of sub-commands.

    Attributes:
        name: the command's name (``"ask"``; ``"sft"`` under the group ``train``).
        help: one line, shown in its group's list.
        run: the handler (``None`` for a group).
        options: what adds its flags, in order: :func:`add_options` over its configs (the shared blocks:
            :func:`add_data_options`, :func:`add_backend_options`, :func:`add_agent_options`).
        commands: a group's sub-commands.
        description: the text under ``--help``'s usage line (default: ``help``).
        epilog: the text at the end of ``--help``.
        parser: a parser of its own instead of ``options``, built from the command's ``prog`` when the
            command is parsed (:class:`DeferredParser`).
    """

    name: str
    help: str
    run: Handler | None = None
    options: Sequence[Callable[[argparse.ArgumentParser], None]] = ()
    commands: Sequence[Command] = ()
    description: str | None = None
    epilog: str | None = None
    parser: Callable[[str], argparse.ArgumentParser] | None = None


def _new_parser(*, build: Callable[[str], argparse.ArgumentParser] | None = None, **kwargs: Any) -> Any:
    return DeferredParser(build, **kwargs) if build is not None else CommandParser(**kwargs)


def _add_commands(parser: argparse.ArgumentParser, commands: Sequence[Command]) -> None:
    sub = parser.add_subparsers(metavar="COMMAND", dest=argparse.SUPPRESS, parser_class=_new_parser)
    sub.required = True
    for command in commands:
        kwargs: dict[str, Any] = {
            "help": command.help,
            "description": command.description or command.help,
            "epilog": command.epilog,
        }
        if command.parser is not None:
            kwargs["build"] = _deferred(command)
        child = sub.add_parser(command.name, **kwargs)
        for add in command.options:
            add(child)
        if command.commands:
            _add_commands(child, command.commands)
        if command.run is not None:
            child.set_defaults(handler=command.run)


def _deferred(command: Command) -> Callable[[str], argparse.ArgumentParser]:
    def build(prog: str) -> argparse.ArgumentParser:
        assert command.parser is not None
        parser = command.parser(prog)
        parser.set_defaults(handler=command.run)
        return parser

    return build


def build_parser(
    prog: str, commands: Sequence[Command], *, description: str | None = None, epilog: str | None = None
) -> CommandParser:
    """One argparse tree for a command table: a sub-parser per command, its handler set as ``handler``."""
    parser = CommandParser(prog=prog, description=description, epilog=epilog)
    parser.add_argument("-v", "--verbose", action="store_true", help="log backend requests and graph steps")
    _add_commands(parser, commands)
    return parser


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """A parser's sub-commands by name (``{}`` for a command of its own); a deferred one is built."""
    for action in parser._actions:  # argparse lists a parser's arguments only here (as TRL reads them)
        if action.nargs == argparse.PARSER:
            children = dict(action.choices or {})
            return {name: c.parser if isinstance(c, DeferredParser) else c for name, c in children.items()}
    return {}


def command_paths(parser: argparse.ArgumentParser) -> Iterator[tuple[str, ...]]:
    """Every command of a parser tree, as the words that name it (``("train", "sft")``), groups included.

    A deferred parser (:class:`DeferredParser`) is a command of its own and is not built to look inside.
    """
    for action in parser._actions:
        if action.nargs == argparse.PARSER:
            for name, child in (action.choices or {}).items():
                yield (name,)
                if not isinstance(child, DeferredParser):
                    yield from ((name, *rest) for rest in command_paths(child))


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), run the command's handler, and return its exit code.

    Errors become one line on stderr and an exit code: :data:`EXIT_BACKEND` for a backend's failure,
    :data:`EXIT_INPUT` for bad input or options (with the usage for a refused command line),
    :data:`EXIT_INTERNAL` for a bug of ours (its traceback with ``--verbose``).
    """
    errors = Console(stderr=True, soft_wrap=True)
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    except UsageError as exc:
        errors.print(exc.usage, end="", markup=False, highlight=False)
        errors.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        return EXIT_INPUT
    verbose = getattr(args, "verbose", False)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    install_log_redaction()
    try:
        return args.handler(args, Console(stderr=False))
    except BackendError as exc:
        errors.print(f"[red]error:[/] {escape(redact(str(exc)))}", highlight=False)
        return EXIT_BACKEND
    except AwaresError as exc:
        errors.print(f"[red]error:[/] {escape(redact(str(exc)))}", highlight=False)
        return EXIT_INPUT
    except KeyboardInterrupt:
        errors.print("interrupted")
        return 130
    except Exception as exc:
        # A bug of ours, not bad input: one line by default, the traceback (redacted) with --verbose.
        logging.getLogger("awares").error("internal error", exc_info=exc if verbose else None)
        errors.print(
            f"[red]internal error:[/] {type(exc).__name__}: {escape(redact(str(exc)))[:500]}; please report "
            "it (run again with --verbose for the traceback)",
            highlight=False,
        )
        return EXIT_INTERNAL
