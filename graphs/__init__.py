"""The AwaRes look -> decide -> crop -> answer loop as a LangGraph state machine."""

from graphs.awares_graph import build_graph
from graphs.state import AwaresState

__all__ = ["AwaresState", "build_graph"]
