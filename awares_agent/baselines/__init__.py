"""Baselines that stand in for a model: fitted heuristics, not adapters to one.

* :mod:`awares_agent.baselines.reader`: the embedded offline OCR reader, the default backend when no model
  is named. It is a **frozen baseline**: a fitted heuristic kept as it is, so its figures stay comparable.
* :mod:`awares_agent.baselines.pattern_reader`: the ``stripes`` benchmark's honest teacher (which way lines
  run, read from the pixels it is sent).

Both implement the :class:`~awares_agent.backends.base.ChatBackend` protocol; the backend factory
(:mod:`awares_agent.backend_factory`) picks them by name. The thin adapters to real models live in
:mod:`awares_agent.backends`.
"""
