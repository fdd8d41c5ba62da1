"""Trading logic with no I/O: arbitrage maths, risk, the journal, the ledger."""
