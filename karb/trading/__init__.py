"""Trading logic with no I/O: arbitrage maths (``arb``), pre-trade risk (``risk``), leg states
and records (``orders``), realised PnL (``ledger``) and the limits execution trades within.
What sends orders, journals and reconciles — the I/O — lives in ``karb.execution``."""
