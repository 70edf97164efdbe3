"""Evaluation: benchmarks, metrics and reports of accuracy against visual-token cost (RTR).

Empty for now: the benchmark loaders, policies and the ``awares eval`` runner arrive with the evaluation work.
Token accounting and RTR already live in :mod:`awares_agent.tokens`.
"""
