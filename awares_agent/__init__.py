"""awares: let a vision-language model look at a low-resolution view and fetch only the crops it needs.

The names a user needs are importable from here::

    from awares_agent import AwaResAgent, OpenAIBackend
    agent = AwaResAgent(OpenAIBackend("Qwen/Qwen2.5-VL-7B-Instruct", base_url="http://localhost:8000/v1"))
    result = agent.ask("page.png", "What is the invoice number?")

Exports load on first use, so importing one submodule (``awares_agent.errors``) does not load torch, the OCR
engine or LangGraph. Inside the package nothing imports from here: modules import the module that defines a
name (``tests/test_architecture.py`` checks it).

The namespace, by concept: ``awares_agent.tools`` (crop sets, the typed crop tool, tool-call protocols, system
prompts), ``awares_agent.graphs`` (the LangGraph state machine), ``awares_agent.backends`` (the adapters and
the offline reader), ``awares_agent.collect`` (trajectory collection), ``awares_agent.evals`` (benchmarks,
metrics, reports) and ``awares_agent.training`` (SFT and GRPO).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from awares_agent.lazy_exports import lazy_exports

_EXPORTS = {
    "AgentConfig": "awares_agent.config",
    "AgentEvent": "awares_agent.agent",
    "AskResult": "awares_agent.agent",
    "AwaResAgent": "awares_agent.agent",
    "AwaresError": "awares_agent.errors",
    "BackendError": "awares_agent.errors",
    "ChatBackend": "awares_agent.backends.base",
    "ChatReply": "awares_agent.messages",
    "ConfigError": "awares_agent.errors",
    "CropRequestError": "awares_agent.errors",
    "ImageDecodeError": "awares_agent.errors",
    "ImageError": "awares_agent.errors",
    "ImageStore": "awares_agent.image_store",
    "ImageTooLargeError": "awares_agent.errors",
    "LangChainBackend": "awares_agent.backends.langchain_backend",
    "OpenAIBackend": "awares_agent.backends.openai_compat",
    "RunOptions": "awares_agent.graphs.context",
    "Trajectory": "awares_agent.trajectory",
    "TransformersBackend": "awares_agent.backends.transformers_backend",
    "Usage": "awares_agent.messages",
    "ViewSpec": "awares_agent.images",
    "open_image": "awares_agent.images",
}

__all__ = [
    "AgentConfig",
    "AgentEvent",
    "AskResult",
    "AwaResAgent",
    "AwaresError",
    "BackendError",
    "ChatBackend",
    "ChatReply",
    "ConfigError",
    "CropRequestError",
    "ImageDecodeError",
    "ImageError",
    "ImageStore",
    "ImageTooLargeError",
    "LangChainBackend",
    "OpenAIBackend",
    "RunOptions",
    "Trajectory",
    "TransformersBackend",
    "Usage",
    "ViewSpec",
    "open_image",
]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from awares_agent.agent import AgentEvent, AskResult, AwaResAgent
    from awares_agent.backends.base import ChatBackend
    from awares_agent.backends.langchain_backend import LangChainBackend
    from awares_agent.backends.openai_compat import OpenAIBackend
    from awares_agent.backends.transformers_backend import TransformersBackend
    from awares_agent.config import AgentConfig
    from awares_agent.errors import (
        AwaresError,
        BackendError,
        ConfigError,
        CropRequestError,
        ImageDecodeError,
        ImageError,
        ImageTooLargeError,
    )
    from awares_agent.graphs.context import RunOptions
    from awares_agent.image_store import ImageStore
    from awares_agent.images import ViewSpec, open_image
    from awares_agent.messages import ChatReply, Usage
    from awares_agent.trajectory import Trajectory

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
