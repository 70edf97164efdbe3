"""Evaluation: benchmarks, metrics, the policy runner and reports of accuracy against visual-token cost (RTR).

* :mod:`~awares_agent.evals.benchmarks` and :mod:`~awares_agent.evals.dataset`: the paper's six benchmarks and
  your own data, as :class:`~awares_agent.evals.schema.EvalSample` rows;
* :mod:`~awares_agent.evals.synthetic`: the offline synthetic high-resolution benchmark;
* :mod:`~awares_agent.evals.metrics`: each benchmark's standard metric;
* :mod:`~awares_agent.evals.runner`: ``run_policy``, one policy (:mod:`awares_agent.policies`) over samples
  through one agent, on the shared run engine (:mod:`awares_agent.engine`);
* :mod:`~awares_agent.evals.report`: the markdown table and the accuracy-vs-RTR plot.

Token accounting and RTR live in :mod:`awares_agent.tokens`.
"""
