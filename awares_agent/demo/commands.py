"""The demo's commands: a line typed in its input box that starts with ``/``.

Anything else typed there is a question about the current image. :func:`parse_command` reads a line into
a :class:`Command` and checks its arguments, so the app gets only commands it can run; quoting follows the
shell (``/open "my scan.png"``).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from awares_agent.errors import ConfigError


@dataclass(frozen=True)
class CommandSpec:
    """What a command takes and does.

    Attributes:
        usage: its arguments, as shown in the help (``"PATH"``, ``"[N]"``...).
        help: what it does.
        least: the fewest arguments it takes.
        most: the most arguments it takes.
    """

    usage: str
    help: str
    least: int = 0
    most: int = 0


#: Every command, in the order the help lists them.
COMMANDS: dict[str, CommandSpec] = {
    "open": CommandSpec("PATH", "load an image of your own (PNG, JPEG, WebP, TIFF...)", 1, 1),
    "sample": CommandSpec("N", "load bundled sample page N and its question", 1, 1),
    "reader": CommandSpec("", "switch to the offline reader (OCR on the CPU, no download)"),
    "server": CommandSpec(
        "URL MODEL", "switch to an OpenAI-compatible server (vLLM, SGLang, Ollama...)", 2, 2
    ),
    "model": CommandSpec(
        "NAME",
        "another model: on the current server, or else a local Hugging Face model (path or hub id)",
        1,
        1,
    ),
    "protocol": CommandSpec("json|awares-text", "the tool-call protocol", 1, 1),
    "crop-set": CommandSpec("paper|grid-RxC", "the crop set: the paper's 9 regions + all, or a grid", 1, 1),
    "budget": CommandSpec("RTR|off", "a visual-token budget per question, as a retained token ratio", 1, 1),
    "compare": CommandSpec(
        "[QUESTION]", "the same question under low-res, awares and full-res, side by side", 0, 1
    ),
    "history": CommandSpec("", "list the questions asked so far"),
    "show": CommandSpec("N", "show query N of the history again: its view, crops and answer", 1, 1),
    "save": CommandSpec("[PATH]", "save the shown query's trajectory as JSON", 0, 1),
    "crops": CommandSpec("[DIR]", "save the shown query's crops as PNG files", 0, 1),
    "help": CommandSpec("", "list the commands"),
    "quit": CommandSpec("", "leave the demo"),
}


@dataclass(frozen=True)
class Command:
    """A parsed command.

    Attributes:
        name: its name, without the ``/`` (a key of :data:`COMMANDS`).
        args: its arguments.
    """

    name: str
    args: tuple[str, ...] = ()

    def arg(self, index: int = 0) -> str | None:
        """Argument ``index``, or ``None`` if it was not given."""
        return self.args[index] if index < len(self.args) else None


def is_command(line: str) -> bool:
    """Whether an input line is a command (it starts with ``/``) rather than a question."""
    return line.lstrip().startswith("/")


def parse_command(line: str) -> Command:
    """Read a command line such as ``/open page.png``.

    ``/compare`` takes the rest of the line as its question, unquoted.

    Raises:
        ConfigError: not a command, an unknown one, or the wrong number of arguments (the message gives
            the usage).
    """
    text = line.strip()
    if not text.startswith("/") or len(text) == 1:
        raise ConfigError(f"{line!r} is not a command: commands start with '/', e.g. /help")
    name, _, rest = text[1:].partition(" ")
    spec = COMMANDS.get(name)
    if spec is None:
        raise ConfigError(f"unknown command /{name}: type /help for the list")
    if name == "compare":
        return Command(name, (rest.strip(),) if rest.strip() else ())
    try:
        args = tuple(shlex.split(rest))
    except ValueError as exc:
        raise ConfigError(f'/{name}: {exc} (quote a path with spaces: /open "my scan.png")') from None
    if not spec.least <= len(args) <= spec.most:
        raise ConfigError(f"usage: /{name} {spec.usage}".rstrip() + f" ({spec.help})")
    return Command(name, args)


def help_lines() -> list[str]:
    """The help, a line per command."""
    width = max(len(f"/{name} {spec.usage}") for name, spec in COMMANDS.items())
    return [f"{f'/{name} {spec.usage}'.ljust(width)}  {spec.help}" for name, spec in COMMANDS.items()]
