"""The AwaRes look -> decide -> crop -> answer loop as a LangGraph state machine."""

from awares_agent.graphs.awares_graph import build_graph
from awares_agent.graphs.state import AwaresState

__all__ = ["AwaresState", "build_graph"]
