"""Analyst tools: replay rules over history (backtest), sweep a parameter (tune), score rules
against labelled incidents, rule unit tests as data, shadow reports and plots (issue 6).

Everything here evaluates through the same engine as the live DAGs (``engine.compile`` and
``engine.evaluate``): a backtest is what the live rule would have done, not a model of it.
"""
