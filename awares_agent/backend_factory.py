"""One place that turns backend options into a backend: the CLI, the collector's teacher, judge and grounder.

:class:`BackendOptions` holds every choice with its default, written once; the command line's flags are
derived from its fields (:mod:`awares_agent.cli_options`). :func:`make_backend` picks the backend:

* ``reader``: the embedded offline OCR reader (no model, no download), the default with no model named;
* ``openai``: an OpenAI-compatible server (vLLM, SGLang, Ollama, OpenAI...), the default with a ``base_url``;
* ``transformers``: a local Hugging Face model (a path or hub id), the default with a ``model`` only;
* ``pattern-reader``: the ``stripes`` benchmark's honest teacher (which way lines run, read from the pixels
  sent; :mod:`awares_agent.baselines.pattern_reader`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from awares_agent.backends.base import ChatBackend
from awares_agent.backends.reply_cap import DEFAULT_MAX_REPLY_BYTES
from awares_agent.backends.retry import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, DEFAULT_WAIT_ALLOWANCE
from awares_agent.errors import ConfigError

BackendKind = Literal["auto", "reader", "pattern-reader", "openai", "transformers"]


@dataclass(frozen=True)
class BackendOptions:
    """Which backend to build, and how. Each field's ``help`` is its command-line help.

    Attributes:
        model: the model's name on a server, or a local path / hub id for a local model.
        backend: ``auto`` (a server if ``base_url`` is set, a local model if ``model`` is, else the reader),
            ``reader``, ``openai`` or ``transformers``.
        base_url: the OpenAI-compatible server's URL; ``openai`` without it talks to the OpenAI API.
        api_key_env: the environment variable holding the API key (the key itself is never stored here).
        timeout: seconds per request attempt, the whole reply included.
        max_retries: retries on 429, 5xx and timeouts.
        max_reply_bytes: the most bytes a server's reply may hold, whole or streamed; a larger one fails at
            once (not retried) with :class:`~awares_agent.errors.ReplyTooLargeError`.
        deadline: seconds per model call, every retry and wait included (default: derived from the two above).
        image_format: how images travel to a server.
        image_detail: OpenAI's image detail; ``high`` on api.openai.com keeps crops at their resolution.
        device: where a local model runs.
        dtype: a local model's weights' type.
        max_new_tokens: the most tokens a model turn may generate: a local model's (when not given, the
            local backend's own default), or sent to a server as ``max_tokens`` (when not given, the
            server's own limit applies).
        offline: never contact the Hugging Face hub for a local model.
    """

    model: str | None = field(
        default=None,
        metadata={
            "help": "the model: its name on the server, or a local path / hub id for a local model "
            "(default: the offline reader)"
        },
    )
    backend: BackendKind = field(
        default="auto",
        metadata={
            "help": "auto (default): a server if --base-url is given, a local model if --model is, else the "
            "reader; 'openai' with no --base-url talks to the OpenAI API; 'pattern-reader' is the stripes "
            "benchmark's teacher",
        },
    )
    base_url: str | None = field(
        default=None,
        metadata={"group": "server", "help": "server URL, e.g. http://localhost:8000/v1 for vLLM"},
    )
    api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={
            "group": "server",
            "metavar": "VAR",
            "help": "environment variable holding the API key (default: OPENAI_API_KEY; local servers need "
            "none)",
        },
    )
    timeout: float = field(
        default=DEFAULT_TIMEOUT,
        metadata={"group": "server", "help": "seconds per request attempt, the whole reply included"},
    )
    max_retries: int = field(
        default=DEFAULT_MAX_RETRIES, metadata={"group": "server", "help": "retries on 429/5xx/timeouts"}
    )
    max_reply_bytes: int = field(
        default=DEFAULT_MAX_REPLY_BYTES,
        metadata={
            "group": "server",
            "metavar": "BYTES",
            "help": "the most bytes a server's reply may hold, whole or streamed (default 16 MiB); a larger "
            "one is read no further and fails at once, not retried",
        },
    )
    deadline: float | None = field(
        default=None,
        metadata={
            "group": "server",
            "metavar": "SECONDS",
            "help": "seconds per model call, every retry and Retry-After wait included (default: timeout x "
            f"(max-retries + 1) + {DEFAULT_WAIT_ALLOWANCE:g})",
        },
    )
    image_format: Literal["png", "jpeg"] = field(
        default="png",
        metadata={"group": "server", "help": "how images travel"},
    )
    image_detail: Literal["auto", "low", "high"] | None = field(
        default=None,
        metadata={
            "group": "server",
            "help": "OpenAI image detail; use 'high' on api.openai.com so crops keep their resolution",
        },
    )
    device: str = field(default="cpu", metadata={"group": "local", "help": "cpu, cuda, cuda:1, mps..."})
    dtype: str = field(
        default="auto", metadata={"group": "local", "help": "auto, bfloat16, float16, float32"}
    )
    max_new_tokens: int | None = field(
        default=None,
        metadata={
            "metavar": "N",
            "help": "the most tokens a model turn may generate (default: the backend's own: the local "
            "backend's default for a local model, the server's limit for a server)",
        },
    )
    offline: bool = field(
        default=False, metadata={"group": "local", "help": "never contact the Hugging Face hub"}
    )

    @property
    def kind(self) -> Literal["reader", "pattern-reader", "openai", "transformers"]:
        """The backend ``auto`` stands for with these options (any other choice as it is)."""
        if self.backend != "auto":
            return self.backend
        return "openai" if self.base_url else "transformers" if self.model else "reader"

    def server(
        self, *, model: str | None, base_url: str | None, api_key_env: str | None = None
    ) -> BackendOptions:
        """These options for another model on a server (a judge, a grounder), its network settings kept."""
        return replace(
            self,
            backend="openai",
            model=model,
            base_url=base_url,
            api_key_env=api_key_env or self.api_key_env,
        )


def make_backend(options: BackendOptions, *, crop_set: str = "paper") -> ChatBackend:
    """The backend ``options`` name.

    Args:
        options: the backend's options.
        crop_set: the agent's crop set (the reader plays its policy over it).

    Raises:
        ConfigError: a server or local model with no ``model``.
    """
    kind = options.kind
    # Each backend's module is imported only when chosen: the reader loads an OCR engine, the local backend
    # torch and transformers.
    if kind == "reader":
        from awares_agent.baselines.reader import ReaderBackend

        return ReaderBackend(crop_set=crop_set)
    if kind == "pattern-reader":
        from awares_agent.baselines.pattern_reader import PatternReader

        return PatternReader()
    if not options.model:
        raise ConfigError(f"--backend {kind} needs --model")
    if kind == "openai":
        from awares_agent.backends.openai_compat import OpenAIBackend

        return OpenAIBackend(
            options.model,
            base_url=options.base_url,
            api_key_env=options.api_key_env,
            timeout=options.timeout,
            max_retries=options.max_retries,
            max_reply_bytes=options.max_reply_bytes,
            deadline=options.deadline,
            image_format=options.image_format,
            image_detail=options.image_detail,
            max_tokens=options.max_new_tokens,
        )
    from awares_agent.backends.transformers_backend import TransformersBackend

    limit = {"max_new_tokens": options.max_new_tokens} if options.max_new_tokens is not None else {}
    return TransformersBackend(
        options.model,
        device=options.device,
        dtype=options.dtype,
        local_files_only=options.offline,
        **limit,  # not given: the backend's own default, written once there
    )
