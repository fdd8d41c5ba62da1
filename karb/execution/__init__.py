"""The I/O side of execution: the write-ahead journal (SQLite), the leg runner that sends and
follows orders and alone resolves unanswered ones, the executor (accept, run, hedge), continuous
reconciliation with the venues, and the paper/dry-run clients. Pure rules: ``karb.trading``."""
