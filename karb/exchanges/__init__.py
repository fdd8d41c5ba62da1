"""Venue clients (one folder per exchange) and the wire facts they share."""
