"""The documentation: the site builds with no warning, the commands it shows parse, and its links resolve.

* The site (``mkdocs build --strict``, as ``make docs`` runs it) builds with no warning: a broken link or
  anchor, a page left out of the navigation or a docstring that mkdocstrings cannot read fails it. Its CLI
  reference holds the help of every command of the parser tree, ``awares train sft`` and ``grpo`` included.
* Every ``awares`` command in a fenced code block of the README or of ``docs/`` parses with the real parser,
  without running: a flag renamed in the code and not in the docs fails here. Its flags are spelled with
  dashes, as ``--help`` lists them (TRL's underscore spellings parse too, as hidden aliases).
* The README is a front page (under 300 lines), and every relative link and image in it and in ``docs/``
  resolves, anchors included.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import os
import re
import shlex
import subprocess
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MARKDOWN = [README, *sorted(DOCS.rglob("*.md"))]
README_MAX_LINES = 300

# Code blocks in these languages (or none) hold shell commands; a `console` block's commands start with `$ `.
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w-]*)")


# ----------------------------------------------------------------------------------------------------------
# Reading the Markdown


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def split_fences(path: Path) -> tuple[list[tuple[int, str]], list[tuple[str, int, list[str]]]]:
    """The file's prose lines ``(number, text)`` and its fenced blocks ``(language, first line, lines)``."""
    prose: list[tuple[int, str]] = []
    blocks: list[tuple[str, int, list[str]]] = []
    fence: str | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = FENCE.match(line)
        if fence is None and match:
            fence = match["fence"]
            blocks.append((match["lang"].lower(), number + 1, []))
        elif fence is not None and is_closing(line, fence):
            fence = None
        elif fence is not None:
            blocks[-1][2].append(line)
        else:
            prose.append((number, line))
    return prose, blocks


def is_closing(line: str, fence: str) -> bool:
    """Whether ``line`` closes a block opened by ``fence`` (the same character, at least as many)."""
    text = line.strip()
    return text.startswith(fence) and not text.strip(fence[0])


@dataclass(frozen=True)
class Command:
    """One ``awares`` command line shown in the docs: where it is and the arguments after ``awares``."""

    where: str
    argv: tuple[str, ...]


def commands_in(path: Path) -> list[Command]:
    """Every ``awares ...`` command of the file's shell code blocks (continuations joined, comments dropped).

    ``python -m awares_agent.training.cli sft ...`` (under ``accelerate launch``) is ``awares train sft ...``;
    a variable set in the block (``P=low-res,awares``) is substituted where the block uses it (``$P``).
    """
    _, blocks = split_fences(path)
    found: list[Command] = []
    for language, first, lines in blocks:
        if language not in SHELL_LANGUAGES:
            continue
        variables: dict[str, str] = {}
        number, pending, start = first - 1, "", first
        for line in lines:
            number += 1
            text = line.strip()
            if language == "console" and not pending:
                if not text.startswith("$ "):
                    continue
                text = text[2:]
            if not pending:
                start = number
            if text.endswith("\\"):
                pending += text[:-1] + " "
                continue
            words = shlex.split(pending + text, comments=True)
            pending = ""
            if len(words) == 1 and re.fullmatch(r"[A-Za-z_]\w*=\S*", words[0]):
                name, _, value = words[0].partition("=")
                variables[name] = value
                continue
            words = [substitute(word, variables) for word in words]
            argv = awares_argv(words)
            if argv is not None:
                found.append(Command(f"{rel(path)}:{start}", tuple(argv)))
    return found


def substitute(word: str, variables: dict[str, str]) -> str:
    """``word`` with ``$NAME`` / ``${NAME}`` replaced where the block set ``NAME``."""
    return re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m[1], m[0]), word)


def awares_argv(words: list[str]) -> list[str] | None:
    """The arguments after ``awares`` if ``words`` run the awares command line, else ``None``."""
    if words and words[0] == "awares":
        return words[1:]
    for module, prefix in (("awares_agent.training.cli", ["train"]), ("awares_agent.cli", [])):
        for i in range(len(words) - 1):
            if words[i] == "-m" and words[i + 1] == module:
                return [*prefix, *words[i + 2 :]]
    return None


COMMANDS = [command for path in MARKDOWN for command in commands_in(path)]


# ----------------------------------------------------------------------------------------------------------
# Parsing with the real parser, without running


def build_parser() -> argparse.ArgumentParser:
    """The ``awares`` parser, from the function of :mod:`awares_agent.cli` that builds it."""
    from awares_agent import cli

    for name in ("build_parser", "make_parser", "parser", "_parser"):
        builder = getattr(cli, name, None)
        if callable(builder):
            try:  # the one that needs no arguments (a generic builder taking a command table is not it)
                inspect.signature(builder).bind()
            except TypeError:
                continue
            return builder()
    raise AssertionError("awares_agent.cli exposes no function that builds the awares parser")


def parse_or_fail(parse, argv: list[str], where: str):
    """Run ``parse`` (an argparse call); a usage error fails the test with argparse's own message."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            return parse()
    except SystemExit:
        message = stderr.getvalue()
        pytest.fail(f"{where}: `awares {shlex.join(argv)}` does not parse:\n{message}", pytrace=False)
    except Exception as exc:  # e.g. a ConfigError naming a missing required option
        pytest.fail(f"{where}: `awares {shlex.join(argv)}` is refused: {exc}", pytrace=False)


def test_the_docs_show_commands_of_every_kind() -> None:
    """The extraction finds the commands (a broken one would make the parse test below pass vacuously)."""
    shown = {c.argv[0] if c.argv[0] not in ("collect", "train") else " ".join(c.argv[:2]) for c in COMMANDS}
    assert {"ask", "eval", "report", "lmms-task", "demo", "collect label", "train sft", "train grpo"} <= shown
    assert all(c.argv and not c.argv[0].startswith("$") for c in COMMANDS)
    # Every command shown is a parser of the tree, so its flags are checked, not handed on unparsed.
    tree = set(command_names())
    assert {f"awares {name}" for name in shown} <= tree, sorted({f"awares {n}" for n in shown} - tree)


@pytest.mark.parametrize("command", COMMANDS, ids=[c.where for c in COMMANDS])
def test_documented_command_parses(command: Command, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # a path the docs show is relative to the repository, as a user runs it
    argv = list(command.argv)
    parse_or_fail(lambda: build_parser().parse_args(argv), argv, command.where)


def test_documented_commands_use_dash_spellings() -> None:
    """The docs show flags with dashes, as ``--help`` lists them: TRL's underscore spellings (``--max_steps``)
    still parse as hidden aliases, so the parse test above cannot catch them."""
    underscored = [
        f"{c.where}: {word.split('=')[0]}"
        for c in COMMANDS
        for word in c.argv
        if word.startswith("--") and "_" in word.split("=")[0]
    ]
    assert not underscored, underscored


# ----------------------------------------------------------------------------------------------------------
# The README, links and images


def test_readme_is_a_front_page() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < README_MAX_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\((?P<target><[^>]+>|[^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(?P<text>.+?)\s*#*\s*$")


def slug(text: str) -> str:
    """A heading's anchor as MkDocs' ``toc`` makes it (``## `awares ask` `` gives ``awares-ask``)."""
    text = re.sub(r"`([^`]*)`", r"\1", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text).replace("*", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors_of(path: Path) -> set[str]:
    prose, _ = split_fences(path)
    seen: dict[str, int] = {}
    anchors = set()
    for _, line in prose:
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match["text"])
        count = seen.get(base, 0)
        seen[base] = count + 1
        anchors.add(base if count == 0 else f"{base}_{count}")
    if path.name == "cli.md":  # the generated reference's sections, one per command
        anchors |= {slug(f"`{name}`") for name in command_names()}
    # mkdocstrings gives each object it renders (`::: awares_agent.x.Y`) an anchor of its full path.
    anchors |= {line.split()[1] for _, line in prose if line.startswith("::: ")}
    return anchors


def command_names() -> list[str]:
    names: list[str] = []

    def walk(parser: argparse.ArgumentParser, prog: str) -> None:
        names.append(prog)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{prog} {name}")

    walk(build_parser(), "awares")
    return names


def links_of(path: Path) -> list[tuple[int, str]]:
    """Every link and image target in the file's prose (inline code and code blocks left out)."""
    prose, _ = split_fences(path)
    found = []
    for number, line in prose:
        for match in LINK.finditer(re.sub(r"`[^`]*`", "", line)):
            found.append((number, match["target"].strip("<>")))
    return found


RELATIVE_LINKS = [
    (path, number, target)
    for path in MARKDOWN
    for number, target in links_of(path)
    if not re.match(r"^[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto: are not checked here
]


def test_the_docs_have_links_to_check() -> None:
    assert len(RELATIVE_LINKS) > 50
    assert any(target.endswith(".png") for _, _, target in RELATIVE_LINKS)


@pytest.mark.parametrize(
    ("path", "number", "target"), RELATIVE_LINKS, ids=[f"{rel(p)}:{n}:{t}" for p, n, t in RELATIVE_LINKS]
)
def test_relative_link_resolves(path: Path, number: int, target: str) -> None:
    file_part, _, anchor = target.partition("#")
    destination = (path.parent / file_part).resolve() if file_part else path
    assert destination.exists(), f"{rel(path)}:{number}: {target} does not exist"
    if anchor:
        assert destination.suffix == ".md", f"{rel(path)}:{number}: an anchor into a non-Markdown file"
        assert anchor in anchors_of(destination), f"{rel(path)}:{number}: no heading gives #{anchor}"


def test_every_image_in_docs_is_used() -> None:
    """The images kept in docs/ are each shown somewhere (README.md or a page)."""
    shown = {(path.parent / target).resolve() for path, _, target in RELATIVE_LINKS}
    unused = [rel(image) for image in sorted(DOCS.glob("*.png")) if image.resolve() not in shown]
    assert not unused, f"images shown nowhere: {unused}"


def test_named_make_targets_and_benchmarks_exist() -> None:
    """``make X`` and ``benchmarks/*.py`` named in the docs' code blocks exist."""
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(encoding="utf-8"), re.MULTILINE))
    missing = []
    for path in MARKDOWN:
        for language, first, lines in split_fences(path)[1]:
            if language not in SHELL_LANGUAGES:
                continue
            for offset, line in enumerate(lines):
                where = f"{rel(path)}:{first + offset}"
                made = re.findall(r"^make (\w+)", line)
                scripts = re.findall(r"benchmarks/\w+\.py", line)
                missing += [f"{where}: make {t}" for t in made if t not in targets]
                missing += [f"{where}: {s}" for s in scripts if not (ROOT / s).is_file()]
    assert not missing, missing


# ----------------------------------------------------------------------------------------------------------
# The site


@pytest.mark.slow  # 15-35 s on a 2-core machine: the CLI reference imports TRL to build the train parsers
def test_site_builds_strict_with_no_warning(tmp_path: Path) -> None:
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0, log
    assert "WARNING" not in log, log
    # The generated parts are there: the API reference from the docstrings, the CLI reference from the parser.
    agent = (site / "api" / "agent" / "index.html").read_text(encoding="utf-8")
    assert 'id="awares_agent.agent.AwaResAgent"' in agent and 'id="awares_agent.config.AgentConfig"' in agent
    trajectory = (site / "api" / "trajectory" / "index.html").read_text(encoding="utf-8")
    assert 'id="awares_agent.trajectory.Trajectory"' in trajectory
    for page in ("tools", "graphs", "evals", "training", "collect", "backends"):
        html = (site / "api" / page / "index.html").read_text(encoding="utf-8")
        assert 'class="doc doc-object' in html, page
    cli_page = (site / "cli" / "index.html").read_text(encoding="utf-8")
    missing = [name for name in command_names() if f"usage: {name}" not in cli_page]
    assert not missing, f"the CLI reference has no help for {missing}"
    assert (site / "demo.png").is_file() and (site / "miniature-curves.png").is_file()
