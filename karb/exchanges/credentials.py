"""API keys: read from the environment variables a config names, held in :class:`Secret`, which
never prints its value (repr, str, format, logs and exception messages all show ``***``)."""

from __future__ import annotations

import os
from typing import Any

from karb.config import Config, ConfigError, VenueConfig


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value, for signing only; never log what this returns."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("a Secret is not to be pickled or sent anywhere")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))


class Credentials:
    __slots__ = ("access_key", "secret_key")

    def __init__(self, access_key: Secret, secret_key: Secret) -> None:
        self.access_key = access_key
        self.secret_key = secret_key

    def __repr__(self) -> str:
        return "Credentials(access_key=***, secret_key=***)"


def resolve(config: Config, venue: VenueConfig) -> Credentials:
    """The keys for ``venue``: from the simulator's account (``credentials: sim``) or from the
    environment variables named by ``access_key_env`` / ``secret_key_env``."""
    where = f"config error: {config.path}: venues[{venue.name}]"
    if venue.credentials == "sim":
        if config.sim is None:
            raise ConfigError(f"{where}.credentials: 'sim' needs a sim: section; use 'env' for "
                              "real exchanges")
        access, secret = config.sim.demo_keys()  # config data: the simulator is not loaded
        return Credentials(Secret(access), Secret(secret))
    values = []
    for key in ("access_key_env", "secret_key_env"):
        name = getattr(venue, key)
        if not name:
            raise ConfigError(f"{where}.{key}: required with credentials: env (the name of the "
                              "environment variable holding the key)")
        value = os.environ.get(name, "")
        if not value:
            raise ConfigError(f"{where}.{key}: environment variable {name} is not set; export "
                              f"{name}=<your {venue.name} key> before starting")
        values.append(Secret(value))
    return Credentials(values[0], values[1])
