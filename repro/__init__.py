"""repro: a literate, test-driven reproduction suite for published GPT-2 claims.

Shared implementation lives here (assets, models/adapters, hooks, experiments, results, report);
the claims themselves are pytest modules under ``claims/``.
"""
