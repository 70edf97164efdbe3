"""The ``awares`` command line as a whole: one parser tree from one command table, flags from configs.

Every command at every level answers ``-h`` and ``--help`` (the tree is walked, so a new command is covered
with no new test); the data block has one default per flag; the agent's flags are :class:`AgentConfig`'s
fields; TRL's underscore spellings parse to the same training config as the dash ones.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from awares_agent.cli import _parser, main
from awares_agent.cli_options import DataOptions, agent_config, command_paths, subcommands
from awares_agent.config import CHECKPOINT_FILE, AgentConfig

AWARES = Path(sys.executable).with_name("awares")
PATHS = [(), *command_paths(_parser())]


@pytest.mark.parametrize("flag", ["-h", "--help"])
@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "awares")
def test_every_command_answers_help(
    path: tuple[str, ...], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([*path, flag])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: {' '.join(('awares', *path))}")
    # Every flag is listed in its dash spelling; an underscore twin (TRL's --max_steps) parses, unlisted.
    assert re.findall(r"^\s+(--\w*_\S*)", out, flags=re.MULTILINE) == []


def test_the_tree_has_every_command_of_the_table() -> None:
    assert {"ask", "eval", "report", "lmms-task", "collect", "train", "demo"} <= {p[0] for p in PATHS if p}
    assert {("train", "sft"), ("train", "grpo"), ("train", "eval"), ("collect", "label")} <= set(PATHS)


def test_help_and_errors_of_the_installed_command() -> None:
    """The console script, as a new user types it: help exits 0, a bad command exits 2 with the usage."""
    for args in (["train", "--help"], ["train", "-h"], ["--help"], ["-h"]):
        done = subprocess.run([str(AWARES), *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and done.stdout.startswith("usage: awares"), (args, done.stderr)
    done = subprocess.run([str(AWARES), "train", "fly"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown train command 'fly'; use sft, grpo, eval" in done.stderr
    assert "usage: awares train" in done.stderr and "Traceback" not in done.stderr


def test_the_accelerate_entry_point_is_the_same_tree() -> None:
    """``python -m awares_agent.training.cli`` (under accelerate launch) parses the train commands alike."""
    command = [sys.executable, "-m", "awares_agent.training.cli", "eval", "--help"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert done.returncode == 0 and "--concurrency N" in done.stdout, done.stderr


# --- the data block ---------------------------------------------------------------------------------------

DATA_FLAGS = {f"--{name}": name for name in ("bench", "split", "limit", "seed", "out", "concurrency")}


def _leaves() -> dict[tuple[str, ...], object]:
    parser, found = _parser(), {}
    for path in command_paths(parser):
        if path[:2] in (("train", "sft"), ("train", "grpo")) or path == ("demo",):
            continue  # TRL's parsers: no data block; the demo's --out is where /save writes, with a default
        node = parser
        for word in path:
            node = subcommands(node)[word]
        if not subcommands(node):
            found[path] = node
    return found


def test_the_data_block_has_one_default_and_one_help_per_flag() -> None:
    seen: dict[str, set[tuple[object, str]]] = {}
    for leaf in _leaves().values():
        for action in leaf._actions:  # type: ignore[attr-defined]
            for flag in set(action.option_strings) & set(DATA_FLAGS):
                seen.setdefault(flag, set()).add((action.default, action.help))
    assert set(seen) == set(DATA_FLAGS)  # every flag of the block is used somewhere
    defaults = {f: getattr(DataOptions, DATA_FLAGS[f], None) for f in DATA_FLAGS}
    for flag, variants in seen.items():
        assert len(variants) == 1, f"{flag} is declared differently: {variants}"
        ((default, _help),) = variants
        assert default == defaults[flag]
    assert defaults["--concurrency"] == 4


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "--bench", "synthetic", "--out", "x", "--concurrency", "0"],
        ["collect", "label", "--bench", "synthetic", "--out", "x", "--limit", "0"],
        ["train", "eval", "--model", "m", "--data", "d", "--out", "x", "--limit", "-1"],
    ],
)
def test_a_bad_value_is_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "must be >= 1" in err and "usage: awares" in err and "Traceback" not in err


def test_an_unknown_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "x.png", "q", "--max-steps", "3"]) == 2
    assert "unrecognized arguments: --max-steps 3" in capsys.readouterr().err


# --- the agent's flags are AgentConfig's fields -----------------------------------------------------------


def test_every_agent_field_has_a_flag_and_its_default() -> None:
    ask = subcommands(_parser())["ask"]
    flags = {a.dest: a for a in ask._actions}
    for name, info in AgentConfig.model_fields.items():
        if name == "system_prompt":  # a prompt of your own: the Python API and checkpoints, not a flag
            assert name not in flags
            continue
        assert name in flags, f"AgentConfig.{name} has no flag"
        assert flags[name].default is None  # not given: the checkpoint's, else the config's default
        shown = info.default is None or str(info.default) in flags[name].help
        assert shown or "default" in (info.description or "")
    assert agent_config(_parser().parse_args(["ask", "x.png", "q"])) == AgentConfig()


def test_agent_flags_reach_the_config(tmp_path: Path) -> None:
    args = ["ask", "x.png", "q", "--keep-tools", "--max-corrections", "2", "--view-longest-side", "640"]
    args += ["--max-rounds", "3", "--max-image-pixels", "1000000", "--system-prompt", "awares"]
    config = agent_config(_parser().parse_args(args))
    assert (config.keep_tools, config.max_corrections, config.view_longest_side) == (True, 2, 640)
    assert (config.max_rounds, config.max_image_pixels, config.system_prompt_preset) == (3, 10**6, "awares")
    # A checkpoint that records keep_tools keeps it, unless the command line says otherwise.
    (tmp_path / CHECKPOINT_FILE).write_text(json.dumps({"keep_tools": True}))
    recorded = ["ask", "x.png", "q", "--model", str(tmp_path)]
    assert agent_config(_parser().parse_args(recorded)).keep_tools is True
    assert agent_config(_parser().parse_args([*recorded, "--no-keep-tools"])).keep_tools is False


def test_an_agent_value_out_of_range_names_the_field(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "x.png", "q", "--max-rounds", "9"]) == 2
    assert "max_rounds" in capsys.readouterr().err


# --- training: TRL's parser in the same tree --------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "dashes", "underscores"),
    [
        (
            "sft",
            ["--max-steps", "3", "--learning-rate", "0.05", "--per-device-train-batch-size", "2",
             "--tool-call-weight", "3", "--save-strategy", "no", "--report-to", "none", "--lora-r", "4",
             "--output-dir", "OUT"],
            ["--max_steps", "3", "--learning_rate", "0.05", "--per_device_train_batch_size", "2",
             "--tool_call_weight", "3", "--save_strategy", "no", "--report_to", "none", "--lora_r", "4",
             "--output_dir", "OUT"],
        ),
        (
            "grpo",
            ["--max-steps", "2", "--num-generations", "4", "--per-device-train-batch-size", "4",
             "--guard-low", "0.3", "--max-completion-length", "32", "--no-activation-checkpointing",
             "--out", "OUT"],
            ["--max_steps", "2", "--num_generations", "4", "--per_device_train_batch_size", "4",
             "--guard_low", "0.3", "--max_completion_length", "32", "--no_activation_checkpointing",
             "--output-dir", "OUT"],
        ),
    ],
)  # fmt: skip
def test_underscore_spellings_parse_to_the_same_config(
    command: str, dashes: list[str], underscores: list[str], tmp_path: Path
) -> None:
    from awares_agent.training.config import AwaresGRPOConfig, AwaresSFTConfig
    from awares_agent.training.parser import config_from

    kind = AwaresSFTConfig if command == "sft" else AwaresGRPOConfig
    base = ["train", command, "--data", "d", "--model", "tiny"]
    configs = [
        config_from(_parser().parse_args([*base, *(str(tmp_path) if a == "OUT" else a for a in argv)]), kind)
        for argv in (dashes, underscores)
    ]
    assert configs[0].to_dict() == configs[1].to_dict()
    assert configs[0].max_steps in (2, 3) and configs[0].output_dir == str(tmp_path)
    assert configs[0].use_cpu is True  # --model tiny's defaults, reached through the one tree


def test_tiny_defaults_give_way_to_flags_and_stay_out_of_other_models(tmp_path: Path) -> None:
    parser = _parser()  # parsed twice: the first parse must leave no default behind
    base = ["train", "sft", "--data", "d", "--out", str(tmp_path)]
    tiny = parser.parse_args([*base, "--model", "tiny", "--learning-rate", "0.5"])
    assert (tiny.learning_rate, tiny.use_cpu, tiny.bf16) == (0.5, True, False)
    other = parser.parse_args([*base, "--model", "Qwen/Qwen2.5-VL-7B-Instruct"])
    assert (other.learning_rate, other.use_cpu) == (2e-05, False)
