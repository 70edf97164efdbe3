"""Command-line options shared by ``awares ask``, ``eval`` and ``collect``, derived from their configs.

The backend's flags come from the fields of :class:`~awares_agent.backend_factory.BackendOptions` (name,
default, choices and help); the agent's defaults come from :class:`~awares_agent.config.AgentConfig`. So a
default is written once, in its config, and the commands cannot drift apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

from awares_agent.backend_factory import BackendOptions
from awares_agent.config import AgentConfig, checkpoint_options
from awares_agent.tools.prompts import PRESETS, RELEASED_MODEL

READER_NOTE = (
    "With no --model and no --base-url the embedded offline reader answers: an OCR engine that runs on CPU "
    'with no download. It answers text-reading questions only ("What is the invoice number?"); use a VLM '
    "(--model or --base-url) for anything else."
)

_GROUPS = {
    "server": "OpenAI-compatible server (vLLM, SGLang, Ollama, OpenAI...)",
    "local": "local model (Hugging Face transformers)",
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _required(annotation: Any) -> Any:
    """A field's annotation without its ``| None`` (``float | None`` gives ``float``)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """Add one flag per :class:`BackendOptions` field (``--base-url`` for ``base_url``...)."""
    hints = typing.get_type_hints(BackendOptions)
    groups: dict[str, Any] = {}
    for f in dataclasses.fields(BackendOptions):
        meta = dict(f.metadata)
        group_key = meta.pop("group", None)
        target: Any = parser
        if group_key is not None:
            target = groups.get(group_key) or parser.add_argument_group(_GROUPS[group_key])
            groups[group_key] = target
        help_text = meta.pop("help")
        if hints[f.name] is bool:
            target.add_argument(_flag(f.name), action="store_true", help=help_text)
            continue
        if f.default is not None and "default" not in help_text:
            help_text += f" (default: {f.default})"
        hint = _required(hints[f.name])
        if typing.get_origin(hint) is typing.Literal:  # the choices are the field's Literal values
            meta["choices"] = typing.get_args(hint)
        kind = hint if hint in (int, float) else str
        target.add_argument(_flag(f.name), type=kind, default=f.default, help=help_text, **meta)


def backend_options(args: argparse.Namespace) -> BackendOptions:
    """The :class:`BackendOptions` the parsed flags name."""
    return BackendOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(BackendOptions)})


def add_agent_options(parser: argparse.ArgumentParser) -> None:
    """Add the agent's flags, with :class:`AgentConfig`'s defaults.

    ``--protocol``, ``--system-prompt`` and ``--crop-set`` parse to ``None`` when not given: a model trained
    by ``awares train`` records its own (:meth:`AgentConfig.from_checkpoint`), and :func:`agent_config` takes
    those before the defaults.
    """
    defaults = {name: info.default for name, info in AgentConfig.model_fields.items()}
    agent = parser.add_argument_group("agent")
    agent.add_argument(
        "--protocol",
        choices=typing.get_args(AgentConfig.model_fields["protocol"].annotation),
        help="tool-call protocol: json function calling, or the released GET_CROPS text "
        f"(default: the one a model trained by awares records, else {defaults['protocol']})",
    )
    agent.add_argument(
        "--system-prompt",
        dest="system_prompt_preset",
        choices=PRESETS,
        help="the system prompt: awares (the project's own), released (the released evaluation script's, "
        "verbatim), released-readme (the released README's quick start); auto (default, unless a model "
        f"trained by awares records its own): released for {RELEASED_MODEL} with --protocol awares-text, "
        "else awares",
    )
    agent.add_argument(
        "--crop-set",
        help="'paper' (9 regions + all) or 'grid-RxC' (default: the one a model trained by awares records, "
        f"else {defaults['crop_set']})",
    )
    agent.add_argument(
        "--max-rounds",
        type=int,
        default=defaults["max_rounds"],
        help=f"crop rounds allowed (default: {defaults['max_rounds']}, as in the paper)",
    )
    agent.add_argument(
        "--max-rtr",
        type=float,
        help="visual-token budget as a retained token ratio, e.g. 0.5 (default: none)",
    )
    agent.add_argument(
        "--token-rule",
        help="visual-token rule: qwen2.5-vl, qwen2-vl, qwen3-vl, pixels (default: the backend's or inferred)",
    )
    agent.add_argument(
        "--view-scale",
        type=float,
        default=defaults["view_scale"],
        help=f"low-res view scale (default: {defaults['view_scale']})",
    )


def agent_config(args: argparse.Namespace) -> AgentConfig:
    """The :class:`AgentConfig` the parsed flags name, over what a trained ``--model`` directory records.

    Raises:
        ConfigError: an invalid value or combination, every problem named.
    """
    recorded = checkpoint_options(getattr(args, "model", None))
    given = {
        name: value
        for name, value in (
            ("protocol", args.protocol),
            ("system_prompt_preset", args.system_prompt_preset),
            ("crop_set", args.crop_set),
        )
        if value is not None
    }
    if "system_prompt_preset" in given:  # a preset asked for replaces a recorded prompt of the model's own
        recorded.pop("system_prompt", None)
    return AgentConfig.from_options(
        **{**recorded, **given},
        max_rounds=args.max_rounds,
        max_rtr=args.max_rtr,
        token_rule=args.token_rule,
        view_scale=args.view_scale,
    )
