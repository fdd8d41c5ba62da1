"""Everything checked before any actor starts, so a bad config fails at once with one line."""

from __future__ import annotations

from typing import Any

from karb import bus
from karb.actors.registry import UnknownActorKind, resolve
from karb.config import Config, ConfigError, convert_params


def resolve_params(config: Config) -> dict[str, Any]:
    """Import every actor kind and validate its params now, so errors surface before any start."""
    params: dict[str, Any] = {}
    for index, spec in enumerate(config.actors):
        try:
            cls = resolve(spec.kind)
        except UnknownActorKind as exc:
            raise ConfigError(f"config error: {config.path}: actors[{index}].kind: {exc}") from None
        try:
            params[spec.name] = convert_params(spec, cls.Params, index)
        except ConfigError as exc:
            raise ConfigError(f"config error: {config.path}: {exc}") from None
        cls.preflight(config, params[spec.name])
    for spec in config.actors:  # an unusable ipc path is a config error too
        try:
            bus.pub_endpoint(config, spec.name)
        except ValueError as exc:
            raise ConfigError(f"config error: {config.path}: supervisor.run_dir: {exc}") from None
    return params
