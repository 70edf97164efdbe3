"""Training: cold-start SFT on AwaRes trajectories, then multi-turn GRPO.

Empty for now: it will read the :class:`~awares_agent.trajectory.Trajectory` records that the agent produces.
"""
