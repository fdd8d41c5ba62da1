"""K-Arb: cross-exchange spread arbitrage between Upbit and Bithumb."""
