"""Chat-VLM backends: one :class:`ChatBackend` protocol, thin adapters per serving stack."""

from awares_agent.backends.base import ChatBackend, ChatReply, Usage

__all__ = ["ChatBackend", "ChatReply", "Usage"]
