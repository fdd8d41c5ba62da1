"""Execution algorithms for rebalancing trades and unwinding (``market``, ``limit``, ``twap``,
``vwap``, ``iceberg``, ``adaptive``): one interface (:class:`~karb.execution.algos.base.Algo`),
pure schedules (:mod:`.schedules`), and one runner (:mod:`.runner`) that sends every child order
through the journal, the client ids and the LegRunner's recovery like an arbitrage leg."""

from karb.execution.algos.base import Algo, AlgoName, AlgoOrder, Child, MarketView, Progress
from karb.execution.algos.schedules import ALGOS, make_algo

__all__ = ["ALGOS", "Algo", "AlgoName", "AlgoOrder", "Child", "MarketView", "Progress",
           "make_algo"]
