"""The parser of ``awares train sft`` and ``awares train grpo``: TRL's, over one config dataclass.

TRL generates the flags from the config's fields (:class:`~trl.TrlParser`, a ``transformers``
``HfArgumentParser``): every TRL and ``TrainingArguments`` option, with its type, default and help, spelled
with dashes (``--max-steps``) or with TRL's underscores (``--max_steps``); ``--help`` lists the dash form.
The config object is then made as TRL makes it (its ``__post_init__`` checks included), and ``--config
FILE.yaml`` works as in TRL's own scripts. This parser is a sub-parser of the ``awares`` tree
(:class:`~awares_agent.cli_options.CommandParser`): errors and help behave as every other command's.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import Any, TypeVar

import yaml
from trl import TrlParser

from awares_agent.cli_options import CommandParser, HelpFormatter
from awares_agent.errors import ConfigError
from awares_agent.training.config import TINY_MODELS

__all__ = ["TINY_DEFAULTS", "TrainParser", "config_from"]

TINY_DEFAULTS: dict[str, Any] = {
    "activation_checkpointing": False,
    "bf16": False,
    "use_cpu": True,
    "learning_rate": 1e-3,
    "freeze_vision_tower": True,
}
"""Defaults for ``--model tiny`` only (a flag or the YAML file still wins): a tiny random model trains on a
CPU from scratch, so no checkpointing, fp32 and a from-scratch learning rate. Its positions start meaningful
(sinusoidal): a frozen vision tower and a moderate rate keep them."""

ConfigT = TypeVar("ConfigT")


class TrainHelpFormatter(HelpFormatter):
    """Dash spellings (:class:`HelpFormatter`), and each TRL option's default unless its help gives it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, argparse.SUPPRESS) or not action.option_strings:
            return text
        return text + " (default: %(default)s)"


class TrainParser(CommandParser, TrlParser):
    """TRL's parser for one training config, as an ``awares`` command's parser.

    ``--config FILE.yaml`` sets defaults from the file's keys (and environment variables from its ``env``
    mapping), as ``trl sft --config`` does; flags on the command line still win. ``--model tiny`` (or
    ``tiny-qwen2.5-vl``), given or from the file, brings :data:`TINY_DEFAULTS` where neither sets them.

    Args:
        config: the config dataclass (:class:`~awares_agent.training.config.AwaresSFTConfig`...).
        **kwargs: :class:`argparse.ArgumentParser`'s (``prog``, ``usage``, ``description``...).
    """

    def __init__(self, config: type, **kwargs: Any) -> None:
        super().__init__(dataclass_types=[config], formatter_class=TrainHelpFormatter, **kwargs)
        self.add_argument(
            "--config",
            metavar="FILE.yaml",
            default=argparse.SUPPRESS,  # read before the flags (parse_known_args), never a value of its own
            help="defaults from a YAML file with these options as keys (and an optional env: mapping); flags "
            "given here win",
        )
        self._from_file: set[str] = set()

    def set_defaults_with_config(self, **kwargs: Any) -> list[str]:
        self._from_file.update(kwargs)
        return super().set_defaults_with_config(**kwargs)

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        # The file's values become the flags' defaults (TRL's rule, which converts them as flags); the
        # parser's own defaults come back afterwards, so that it can parse again.
        saved = [(action, action.default, action.required) for action in self._actions]
        try:
            if "--config" in args:
                at = args.index("--config")
                if at + 1 >= len(args):
                    self.error("--config needs a YAML file")
                path = args[at + 1]
                del args[at : at + 2]
                unknown = self.set_defaults_with_config(**self._read(path))
                if unknown:
                    self.error(f"{path} has keys that are no option: {', '.join(unknown[::2])}")
            first, _ = super().parse_known_args(args, copy.copy(namespace))
            if getattr(first, "model", None) in TINY_MODELS:
                # Values already in the namespace stand in for defaults: a flag given still wins.
                namespace = copy.copy(namespace) if namespace is not None else argparse.Namespace()
                for name, value in TINY_DEFAULTS.items():
                    if name not in self._from_file and not hasattr(namespace, name):
                        setattr(namespace, name, value)
            return super().parse_known_args(args, namespace)
        finally:
            for action, default, required in saved:
                action.default, action.required = default, required
            self._from_file.clear()

    def _read(self, path: str) -> dict[str, Any]:
        try:
            with open(path, encoding="utf-8") as file:
                values = yaml.safe_load(file)
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"--config {path}: {exc}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"--config {path} must hold a YAML mapping of option: value")
        env = values.pop("env", {})
        if not isinstance(env, dict):
            raise ConfigError(f"--config {path}: env must be a mapping of variable: value")
        for key, value in env.items():
            os.environ[key] = str(value)
        return values


def config_from(args: argparse.Namespace, config: type[ConfigT]) -> ConfigT:
    """The ``config`` the parsed flags name, made as TRL's parser makes it (its own checks run).

    Raises:
        ConfigError: a value or a combination the config refuses.
    """
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(config) if f.init}
    try:
        return config(**values)
    except ValueError as exc:  # TrainingArguments' own checks
        raise ConfigError(f"invalid training options: {exc}") from None
