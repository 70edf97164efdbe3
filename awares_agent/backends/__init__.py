"""Chat-VLM backends: one :class:`ChatBackend` protocol, thin adapters per serving stack."""

from awares_agent.backends.base import ChatBackend
from awares_agent.messages import ChatReply, Usage

__all__ = ["ChatBackend", "ChatReply", "Usage"]
