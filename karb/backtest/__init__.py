"""Backtesting: results of a run and their report (the runner itself comes with issue 11)."""
