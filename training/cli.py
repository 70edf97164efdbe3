"""``awares train``: cold-start SFT on collected trajectories, multi-turn GRPO, and the policy's evaluation.

* ``awares train sft --data EXPORT --model PATH_OR_HUB_ID --out DIR [--tool-call-weight 5] [--lora]
  [--max-steps N] [--eval-data EXPORT]`` fine-tunes a VLM on ``awares collect`` trajectories. Its flags are
  generated from :class:`~awares_agent.training.config.AwaresSFTConfig` (TRL's ``TrlParser``: every TRL and
  ``TrainingArguments`` option is there, ``--config FILE.yaml`` is accepted). ``--model tiny`` builds a fresh
  tiny local Qwen2.5-VL. ``DIR`` ends up a checkpoint that ``awares ask IMAGE Q --model DIR`` runs as it is.
* ``awares train grpo --data EXPORT --model SFT_DIR --out DIR [--num-generations 8] [--beta 0.04]
  [--alpha-miss 0.5] [--alpha-use 0.1] [--crop-cost 0.05] [--similarity lexical|st:PATH] [--max-steps N]``
  runs multi-turn GRPO from an SFT checkpoint with the reward ``R = R_ans - C_tool``: rollouts through the
  real agent, the crops in the training forward, the call-rate guard. Its flags are generated from
  :class:`~awares_agent.training.config.AwaresGRPOConfig`; ``DIR`` loads with ``awares ask --model DIR``.
* ``awares train eval --model DIR --data EXPORT --out OUT`` runs a trained model through the agent on
  held-out rows and reports well-formed replies, decision and region accuracy, answer accuracy and RTR.

Under ``accelerate launch`` (DeepSpeed, FSDP, several GPUs) run ``python -m awares_agent.training.cli sft
...`` (or ``grpo``): see ``training/accelerate/``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from awares_agent.errors import AwaresError, ConfigError

# torch, transformers and TRL are imported when a sub-command runs (seconds of start-up): `awares --help`
# and `awares train --help` answer at once.

USAGE = (
    "usage: awares train sft --data EXPORT --model PATH_OR_HUB_ID|tiny --out DIR [options]\n"
    "       awares train grpo --data EXPORT --model SFT_DIR --out DIR [options]\n"
    "       awares train eval --model DIR --data EXPORT --out OUT [--limit N]\n\n"
    "  sft   cold-start SFT on `awares collect` trajectories (weighted crop-call loss); "
    "`awares train sft --help` lists every option\n"
    "  grpo  multi-turn GRPO from an SFT model, reward = answer similarity - crop cost; "
    "`awares train grpo --help` lists every option\n"
    "  eval  run a trained model through the agent on held-out rows: decisions, regions, answers, RTR\n"
)

# Defaults for `--model tiny` only (a flag or the YAML file still wins): a tiny random model trains on a CPU,
# from scratch, so no checkpointing, fp32 and a from-scratch learning rate.
# Its positions start meaningful (sinusoidal): a frozen vision tower and a moderate rate keep them.
TINY_DEFAULTS = {
    "activation_checkpointing": False,
    "bf16": False,
    "use_cpu": True,
    "learning_rate": 1e-3,
    "freeze_vision_tower": True,
}


def add_parser(sub: Any) -> None:
    """Register ``train`` on the ``awares`` parser's sub-parsers; its own parsers read the rest."""
    train = sub.add_parser(
        "train",
        help="cold-start SFT, multi-turn GRPO, and the trained policy's evaluation",
        add_help=False,
        usage=USAGE,
    )
    train.add_argument("train_args", nargs=argparse.REMAINDER)


def _sft_parser() -> Any:
    from trl import TrlParser

    from awares_agent.training.config import AwaresSFTConfig

    return TrlParser(
        [AwaresSFTConfig],
        prog="awares train sft",
        description=(
            "Cold-start SFT of a VLM on AwaRes trajectories: loss on assistant tokens only, the crop-request "
            "turn weighted by --tool-call-weight (paper: 5). Needs --data, --model and --out. With --model "
            f"tiny: {', '.join(f'{k}={v}' for k, v in TINY_DEFAULTS.items())} unless given."
        ),
    )


def _grpo_parser() -> Any:
    from trl import TrlParser

    from awares_agent.training.config import AwaresGRPOConfig

    return TrlParser(
        [AwaresGRPOConfig],
        prog="awares train grpo",
        description=(
            "Multi-turn GRPO of an SFT model on AwaRes rollouts (the real agent, crops in the training "
            "forward) with reward = answer similarity - crop cost. Needs --data, --model and --out."
        ),
    )


def _eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="awares train eval",
        description="Run a trained model as an AwaRes agent on held-out trajectories and score its policy.",
    )
    parser.add_argument(
        "--model", required=True, help="a trained checkpoint directory (awares train sft --out)"
    )
    parser.add_argument("--data", required=True, help="held-out trajectories (an awares collect export)")
    parser.add_argument("--out", required=True, help="where results and policy.json go (resumable)")
    parser.add_argument("--limit", type=int, help="the first N rows only")
    parser.add_argument("--device", default="cpu", help="where the model runs (default: cpu)")
    parser.add_argument("--concurrency", type=int, default=4, help="samples in flight (default: 4)")
    return parser


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``awares train ...`` (the arguments after ``train``)."""
    return main(args.train_args, console)


def main(argv: Sequence[str] | None = None, console: Console | None = None) -> int:
    """``awares train`` with ``argv`` (the arguments after ``train``); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    console = console or Console()
    if not argv or argv[0] in ("-h", "--help"):
        console.print(USAGE, highlight=False, markup=False)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "sft":
        return sft(rest, console)
    if command == "grpo":
        return grpo(rest, console)
    if command == "eval":
        return evaluate(rest, console)
    raise ConfigError(f"unknown train command {command!r}; use sft, grpo or eval")


def _wants_tiny(argv: Sequence[str]) -> bool:
    """Whether the command line names a tiny model (``--model tiny`` or ``--model tiny-qwen2.5-vl``)."""
    from awares_agent.training.config import TINY_MODELS

    tiny = TINY_MODELS
    pairs = zip(argv, [*argv[1:], ""], strict=True)
    return any(a in {f"--model={t}" for t in tiny} or (a == "--model" and b in tiny) for a, b in pairs)


def _parse(parser: Any, argv: Sequence[str], command: str) -> Any:
    """Parse ``awares train COMMAND`` options (tiny-model defaults where asked); check the required ones."""
    argv = list(argv)
    if _wants_tiny(argv):
        parser.set_defaults(**TINY_DEFAULTS)
    try:
        (config,) = parser.parse_args_and_config(argv)
    except ValueError as exc:  # TrainingArguments' own checks, a bad YAML file
        raise ConfigError(f"invalid training options: {exc}") from None
    missing = [
        flag
        for flag, value in (("--data", config.data), ("--model", config.model), ("--out", config.output_dir))
        if not value
    ]
    if missing:
        raise ConfigError(
            f"awares train {command} needs {', '.join(missing)} (see awares train {command} --help)"
        )
    return config


def sft(argv: Sequence[str], console: Console) -> int:
    """``awares train sft``: fine-tune, save a loadable checkpoint, and evaluate it if asked."""
    return _train(_parse(_sft_parser(), argv, "sft"), console)


def grpo(argv: Sequence[str], console: Console) -> int:
    """``awares train grpo``: GRPO from an SFT checkpoint, saved loadable, evaluated if asked."""
    config = _parse(_grpo_parser(), argv, "grpo")
    from awares_agent.config import CHECKPOINT_FILE, AgentConfig
    from awares_agent.training.data import load_training_data, policy_samples
    from awares_agent.training.grpo import AwaresGRPOTrainer
    from awares_agent.training.models import load_for_training, save_trained

    with console.status(f"reading {config.data}..."):
        samples = policy_samples(config.data)
        heldout = policy_samples(config.eval_data, limit=config.eval_limit) if config.eval_data else None
        recorded = (Path(config.model).expanduser() / CHECKPOINT_FILE).is_file()
        # A checkpoint of `awares train sft` records how it speaks; otherwise the data's collection says.
        agent = (
            AgentConfig.from_checkpoint(config.model)
            if recorded
            else load_training_data(config.data).agent_config()
        )
    labelled = sum(s.needs_hr is not None for s in samples)
    needed = sum(bool(s.needs_hr) for s in samples)
    console.print(
        f"[bold]data[/] {len(samples)} prompts ({needed} need crops, {labelled - needed} do not, "
        f"{len(samples) - labelled} unlabelled); protocol {agent.protocol}, crop set {agent.crop_set}"
    )
    out = Path(config.output_dir)
    with console.status(f"loading {config.model}..."):
        model, processor, source = load_for_training(
            config.model, work_dir=out, model_init_kwargs=config.model_init_kwargs, tiny_seed=config.tiny_seed
        )
    params = sum(p.numel() for p in model.parameters())
    console.print(f"[bold]policy[/] {escape(source)} ({params / 1e6:.1f} M parameters)")
    trainer = AwaresGRPOTrainer(model, config, samples=samples, processing_class=processor, agent=agent)
    result = trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    best = trainer.keep_best()
    if best:
        console.print(f"[yellow]the call-rate guard stopped training; keeping {escape(best)}[/]")
    save_trained(trainer, out, trainer.agent_config)
    trainer.save_state()  # OUT/trainer_state.json: every step's rollout metrics and reward parts
    history = [h for h in trainer.state.log_history if "crops/call_rate" in h]
    if history:
        first, last = history[0], history[-1]
        console.print(
            f"[bold]rollouts[/] call rate {first['crops/call_rate']:.2f} -> {last['crops/call_rate']:.2f}, "
            f"reward {first.get('reward', 0.0):.3f} -> {last.get('reward', 0.0):.3f}"
        )
    console.print(
        f"[bold]trained[/] {result.global_step} steps -> {escape(str(out))}"
        f"\n  try: awares ask IMAGE QUESTION --model {escape(str(out))}"
    )
    if heldout is not None and trainer.accelerator.is_main_process:
        device = "cpu" if config.use_cpu else str(trainer.accelerator.device)
        _run_eval(out, heldout, Path(config.eval_data).name, out / "policy-eval", device, 4, console)
    return 0


def _train(config: Any, console: Console) -> int:
    from awares_agent.training.data import load_training_data, policy_samples
    from awares_agent.training.models import load_for_training, save_trained
    from awares_agent.training.sft import AwaresSFTTrainer

    with console.status(f"reading {config.data}..."):
        data = load_training_data(config.data)
        # Read now, once: a bad held-out set must not wait for the end of training.
        heldout = policy_samples(config.eval_data, limit=config.eval_limit) if config.eval_data else None
    console.print(f"[bold]data[/] {escape(data.describe())}")
    out = Path(config.output_dir)
    with console.status(f"loading {config.model}..."):
        model, processor, source = load_for_training(
            config.model,
            work_dir=out,
            model_init_kwargs=config.model_init_kwargs,
            tiny_seed=config.tiny_seed,
        )
    params = sum(p.numel() for p in model.parameters())
    console.print(f"[bold]model[/] {escape(source)} ({params / 1e6:.1f} M parameters)")
    trainer = AwaresSFTTrainer(
        model,
        config,
        train_dataset=data.dataset,
        processing_class=processor,
        protocol=data.protocol,
        crop_set=data.crop_set,
    )
    result = trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    save_trained(trainer, out, data.agent_config())
    trainer.save_state()  # OUT/trainer_state.json: every logged step's loss, for curves
    console.print(
        f"[bold]trained[/] {result.global_step} steps, final loss {result.training_loss:.4f} -> "
        f"{escape(str(out))}"
        f"\n  try: awares ask IMAGE QUESTION --model {escape(str(out))}"
    )
    if heldout is not None and trainer.accelerator.is_main_process:
        device = "cpu" if config.use_cpu else str(trainer.accelerator.device)  # where it trained
        _run_eval(out, heldout, Path(config.eval_data).name, out / "policy-eval", device, 4, console)
    return 0


def evaluate(argv: Sequence[str], console: Console) -> int:
    """``awares train eval``: the trained policy's decisions, regions, answers and cost."""
    args = _eval_parser().parse_args(list(argv))
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    from awares_agent.training.data import policy_samples

    model = Path(args.model)
    if not model.is_dir():
        raise ConfigError(
            f"--model {args.model!r} is not a checkpoint directory (awares train sft --out DIR)"
        )
    samples = policy_samples(args.data, limit=args.limit)
    return _run_eval(
        model, samples, Path(args.data).name, Path(args.out), args.device, args.concurrency, console
    )


def _run_eval(
    model: Path, samples: list[Any], name: str, out: Path, device: str, concurrency: int, console: Console
) -> int:
    """Evaluate the checkpoint ``model`` on held-out ``samples`` (read from ``name``) and print the report."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from awares_agent.training.evaluate import REPORT, evaluate_policy

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("evaluating the policy", total=len(samples))
        report = evaluate_policy(
            model,
            samples,
            out,
            device=device,
            concurrency=concurrency,
            on_result=lambda _: progress.advance(task),
        )
    table = Table(title=f"Policy of {model} on {name}", show_edge=False)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for name, value in report.lines():
        table.add_row(name, value)
    console.print(table)
    console.print(f"[dim]confusion {report.confusion}; report: {escape(str(out / REPORT))}[/]")
    return 0


if __name__ == "__main__":  # accelerate launch -m awares_agent.training.cli sft ...
    try:
        raise SystemExit(main())
    except AwaresError as exc:
        Console(stderr=True).print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        raise SystemExit(2) from None
