"""Running it for real: metrics, the live page, alerts, monitors, sd_notify (see hub.py)."""
