"""Actors: one module per actor kind; ``base`` holds the lifecycle they share."""
