"""The ``awares`` command line.

``awares ask IMAGE QUESTION --base-url URL --model NAME`` runs one AwaRes query against any
OpenAI-compatible server (vLLM, SGLang, Ollama, OpenAI...) and shows the answer, the crops the model asked for
and the visual tokens it cost. ``--json`` prints the result as one JSON object instead.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from awares_agent.errors import AwaresError, BackendError

EXIT_OK, EXIT_BACKEND, EXIT_INPUT = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="awares",
        description="AwaRes: a VLM looks at a low-resolution view and fetches only the crops it needs.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log backend requests and graph steps")
    sub = parser.add_subparsers(dest="command", required=True)

    ask = sub.add_parser(
        "ask",
        help="answer a question about an image",
        description=(
            "Answer a question about an image with an AwaRes agent: on an OpenAI-compatible server "
            "(--base-url), or on a local Hugging Face model (--model PATH_OR_HUB_ID without --base-url)."
        ),
    )
    ask.add_argument("image", help="path to the image (PNG, JPEG, WebP, GIF, TIFF...)")
    ask.add_argument("question", help="the question to answer")
    ask.add_argument(
        "--model",
        required=True,
        help="the model: its name on the server, or a local path / hub id for a local model",
    )
    ask.add_argument(
        "--backend",
        choices=["auto", "openai", "transformers"],
        default="auto",
        help="auto (default): an OpenAI-compatible server if --base-url is given, else a local model; "
        "'openai' with no --base-url talks to the OpenAI API",
    )
    server = ask.add_argument_group("OpenAI-compatible server (vLLM, SGLang, Ollama, OpenAI...)")
    server.add_argument("--base-url", help="server URL, e.g. http://localhost:8000/v1 for vLLM")
    server.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        metavar="VAR",
        help="environment variable holding the API key (default: OPENAI_API_KEY; local servers need none)",
    )
    server.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default: 60)")
    server.add_argument("--max-retries", type=int, default=3, help="retries on 429/5xx/timeouts (default: 3)")
    server.add_argument(
        "--image-format", choices=["png", "jpeg"], default="png", help="how images travel (default: png)"
    )
    server.add_argument(
        "--image-detail",
        choices=["auto", "low", "high"],
        help="OpenAI image detail; use 'high' on api.openai.com so crops keep their resolution",
    )
    local = ask.add_argument_group("local model (Hugging Face transformers)")
    local.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps... (default: cpu)")
    local.add_argument("--dtype", default="auto", help="auto, bfloat16, float16, float32 (default: auto)")
    local.add_argument("--max-new-tokens", type=int, default=256, help="per model turn (default: 256)")
    local.add_argument("--offline", action="store_true", help="never contact the Hugging Face hub")
    agent = ask.add_argument_group("agent")
    agent.add_argument(
        "--protocol",
        choices=["json", "awares-text"],
        default="json",
        help="tool-call protocol: json function calling, or the released GET_CROPS text (default: json)",
    )
    agent.add_argument(
        "--crop-set", default="paper", help="'paper' (9 regions + all) or 'grid-RxC' (default: paper)"
    )
    agent.add_argument(
        "--max-rounds", type=int, default=1, help="crop rounds allowed (default: 1, as in the paper)"
    )
    agent.add_argument(
        "--max-rtr", type=float, help="visual-token budget as a retained token ratio, e.g. 0.5"
    )
    agent.add_argument(
        "--token-rule",
        help="visual-token rule: qwen2.5-vl, qwen2-vl, qwen3-vl, pixels (default: inferred from --model)",
    )
    agent.add_argument("--view-scale", type=float, default=0.5, help="low-res view scale (default: 0.5)")
    ask.add_argument("--json", action="store_true", help="print the result as one JSON object")
    return parser


def _ask(args: argparse.Namespace, console: Console) -> int:
    from awares_agent.agent import AwaResAgent
    from awares_agent.config import AgentConfig

    config = AgentConfig.from_options(
        protocol=args.protocol,
        crop_set=args.crop_set,
        max_rounds=args.max_rounds,
        max_rtr=args.max_rtr,
        token_rule=args.token_rule,
        view_scale=args.view_scale,
    )
    agent = AwaResAgent(_backend(args), config)
    if args.json:
        result = agent.ask(args.image, args.question)
        sys.stdout.write(result.model_dump_json() + "\n")
        return EXIT_OK

    result = None
    with console.status("looking at the low-resolution view...") as status:
        for event in agent.stream(args.image, args.question):
            if event.type == "view":
                view = event.data["view"]
                console.print(
                    f"[dim]view[/] {view['width']}x{view['height']} px, "
                    f"{event.data['view_tokens']} visual tokens (full image: {event.data['full_tokens']})"
                )
                status.update("asking the model...")
            elif event.type == "model":
                _show_turn(console, event.data)
            elif event.type == "crops":
                shown = ", ".join(f"{c['region_id']} ({c['name']})" for c in event.data["crops"])
                console.print(f"[dim]crops[/] sent {shown}")
                status.update("asking the model with the crops...")
            elif event.type == "result":
                result = event.result
    assert result is not None  # the stream always ends with a result event
    _show_result(console, result)
    return EXIT_OK


def _backend(args: argparse.Namespace) -> Any:
    """The backend the options name: a server with --base-url (or --backend openai), else a local model."""
    if args.backend == "openai" or (args.backend == "auto" and args.base_url):
        from awares_agent.backends.openai_compat import OpenAIBackend

        return OpenAIBackend(
            args.model,
            base_url=args.base_url,
            api_key_env=args.api_key_env,
            timeout=args.timeout,
            max_retries=args.max_retries,
            image_format=args.image_format,
            image_detail=args.image_detail,
        )
    from awares_agent.backends.transformers_backend import TransformersBackend

    return TransformersBackend(
        args.model,
        device=args.device,
        dtype=args.dtype,
        max_new_tokens=args.max_new_tokens,
        local_files_only=args.offline,
    )


def _show_turn(console: Console, data: dict[str, Any]) -> None:
    if data["kind"] == "crop":
        console.print(f"[dim]model[/] requests crops {', '.join(data['crops'])}")
    elif data["kind"] == "invalid":
        console.print(f"[yellow]model[/] made an invalid turn: {data['error']}")


def _show_result(console: Console, result: Any) -> None:
    t = result.trajectory
    console.print()
    console.print(f"[bold]Answer:[/] {result.answer if result.answer is not None else '[red](no answer)[/]'}")
    if result.crops:
        table = Table(title="Crops", show_edge=False)
        for column in ("id", "region", "box (l, t, r, b)", "size", "tokens"):
            table.add_column(column)
        for c in result.crops:
            table.add_row(c.region_id, c.name, str(tuple(c.box)), f"{c.width}x{c.height}", str(c.tokens))
        console.print(table)
    else:
        console.print("[dim]No crops: answered from the low-resolution view.[/]")
    console.print(
        f"visual tokens {result.visual_tokens} / {result.full_tokens} full resolution, "
        f"[bold]RTR {result.rtr:.2f}[/] ({t.cost.rule})  |  {t.calls} model call(s), {result.latency_s:.2f} s"
    )
    for error in t.errors:
        console.print(f"[yellow]note[/] round {error.round}: {error.kind}: {error.message}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``awares`` command. Returns the process exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    console = Console(stderr=False)
    errors = Console(stderr=True, soft_wrap=True)
    try:
        if args.command == "ask":
            return _ask(args, console)
    except BackendError as exc:
        errors.print(f"[red]error:[/] {exc}", highlight=False)
        return EXIT_BACKEND
    except AwaresError as exc:
        errors.print(f"[red]error:[/] {exc}", highlight=False)
        return EXIT_INPUT
    except KeyboardInterrupt:
        errors.print("interrupted")
        return 130
    return EXIT_INPUT


if __name__ == "__main__":
    raise SystemExit(main())
