"""The AwaRes look -> decide -> crop -> answer loop as a LangGraph state machine."""

from awares_agent.graphs.awares_graph import build_graph
from awares_agent.graphs.context import FROM_CONFIG, RunOptions
from awares_agent.graphs.state import AwaresState

__all__ = ["FROM_CONFIG", "AwaresState", "RunOptions", "build_graph"]
