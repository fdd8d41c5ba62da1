"""The K-Arb configuration: one YAML file → one typed, frozen tree of msgspec Structs.

Every struct rejects unknown keys, durations carry their unit in the name (``_ms``, ``_s``) and
secrets never live in YAML: a config names the *environment variable* that holds a key.
Any problem becomes a :class:`ConfigError` whose message is one line naming the file, the key
path and what was expected; ``supervisor.py`` prints it and exits 2.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import msgspec
import msgspec.inspect as mi
import yaml

RestartType = Literal["permanent", "transient", "temporary"]
VenueName = Literal["upbit", "bithumb"]

_ACTOR_NAME = re.compile(r"^[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)*$")
_MARKET = re.compile(r"^[A-Z0-9]+-[A-Z0-9]+$")


class ConfigError(Exception):
    """A config that cannot be used; ``str()`` is one line naming the file, key and fix."""


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Every section repeats ``frozen=True``: msgspec inherits it, but mypy's dataclass view
    would otherwise call each subclass a mutable child of a frozen parent."""


class SupervisorConfig(_Section, frozen=True):
    """How the supervisor watches and restarts its actors."""

    run_dir: str = "run/sim"
    heartbeat_interval_ms: int = 200
    heartbeat_timeout_ms: int = 1000
    start_timeout_ms: int = 15_000
    shutdown_timeout_ms: int = 3000
    # Restart intensity, counted per actor (as systemd counts start limits per unit): an actor
    # restarted more than max_restarts times within period_s is in a crash loop, and the
    # supervisor stops everything and exits 4 naming it.
    max_restarts: int = 5
    period_s: float = 30.0
    # Backstop over all actors within period_s; None: max_restarts + the number of actors, so
    # that one crash of every actor fits while several actors crashing together still stop us.
    max_restarts_total: int | None = None
    backoff_initial_ms: int = 10
    backoff_max_ms: int = 5000
    # None: no status server; 0: any free port (written to <run_dir>/supervisor.json).
    status_port: int | None = 8470

    def __post_init__(self) -> None:
        _positive(self, "heartbeat_interval_ms", "start_timeout_ms", "shutdown_timeout_ms",
                  "max_restarts", "period_s", "backoff_initial_ms", "backoff_max_ms")
        if self.max_restarts_total is not None and self.max_restarts_total <= 0:
            raise ValueError("max_restarts_total must be greater than 0 (or null: automatic)")
        if self.heartbeat_timeout_ms <= 2 * self.heartbeat_interval_ms:
            raise ValueError("heartbeat_timeout_ms must be more than twice heartbeat_interval_ms")
        if self.backoff_max_ms < self.backoff_initial_ms:
            raise ValueError("backoff_max_ms must be at least backoff_initial_ms")
        if self.status_port is not None and not 0 <= self.status_port <= 65535:
            raise ValueError("status_port must be a TCP port (0-65535) or null")


class BusConfig(_Section, frozen=True):
    """Where publishers bind: ``ipc`` files in the run dir, or ``tcp`` ports on one host."""

    transport: Literal["ipc", "tcp"] = "ipc"
    tcp_host: str = "127.0.0.1"
    tcp_base_port: int = 47100
    # PUB drops silently at the high-water mark; subscribers see it as a seq gap.
    sndhwm: int = 100_000
    rcvhwm: int = 100_000
    reconnect_ivl_ms: int = 5
    # CurveZMQ keys (python -m karb.curve DIR): required with tcp, where anyone reaching a port
    # could otherwise subscribe, submit intents or stop actors; optional with ipc.
    curve_keys_dir: str | None = None

    def __post_init__(self) -> None:
        _positive(self, "sndhwm", "rcvhwm", "reconnect_ivl_ms")
        if self.transport == "tcp" and self.curve_keys_dir is None:
            raise ValueError("curve_keys_dir is required with transport: tcp (anyone reaching "
                             "the ports could trade); generate keys with python -m karb.curve DIR")


class VenueConfig(_Section, frozen=True):
    """One exchange; keys are read from the environment variables named here."""

    name: VenueName
    rest_url: str = ""
    ws_url: str = ""
    # env: keys from the variables named below; sim: the simulator's demo account.
    credentials: Literal["env", "sim"] = "env"
    access_key_env: str | None = None
    secret_key_env: str | None = None
    # Bithumb only: "current" (/v1 /v2, JWT, ws-api) or "legacy" (v1.2.0, pubwss).
    api: Literal["current", "legacy"] = "current"
    stale_after_ms: int = 5000
    request_timeout_ms: int = 5000
    # Taker fee as a fraction; default: the venue's base KRW rate (Upbit 0.05 %, Bithumb 0.25 %,
    # 0.04 % with Bithumb's coupon: set it to what your account really pays).
    taker_fee: float | None = None

    @property
    def fee(self) -> float:
        if self.taker_fee is not None:
            return self.taker_fee
        return 0.0005 if self.name == "upbit" else 0.0025

    def __post_init__(self) -> None:
        _positive(self, "stale_after_ms", "request_timeout_ms")
        if self.api == "legacy" and self.name != "bithumb":
            raise ValueError("api: legacy exists only for bithumb")


class SimVenueConfig(_Section, frozen=True):
    """One simulated exchange: where it listens and what it charges."""

    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (printed, and written to <run_dir>/sim.json)
    fee_rate: float = 0.0005
    min_total_krw: float = 5000.0

    def __post_init__(self) -> None:
        if not 0 <= self.fee_rate < 0.01:
            raise ValueError("fee_rate must be a fraction such as 0.0005 (0.05 %)")


class DislocationConfig(_Section, frozen=True):
    """Random episodes in which one venue's prices move away from the other's."""

    rate_per_min: float = 2.0
    size_bps: float = 60.0
    duration_ms: int = 3000


class SimAccountConfig(_Section, frozen=True):
    """A simulated account. These keys are the simulator's own test data, not real secrets."""

    access_key: str
    secret_key: str
    balances: dict[str, float] = {}


class RateLimitConfig(_Section, frozen=True):
    enabled: bool = True
    # 429s within a second after which Upbit answers 418 and blocks; the block doubles each time.
    upbit_418_after: int = 20
    upbit_418_block_s: float = 5.0


class SimConfig(_Section, frozen=True):
    """The built-in exchange simulator (``python -m karb.sim`` or the ``sim`` actor)."""

    seed: int = 7
    step_ms: int = 100
    volatility_bps: float = 2.0
    noise_bps: float = 3.0
    prices: dict[str, float] = {}  # initial fair value per market; defaults built in
    dislocation: DislocationConfig = msgspec.field(default_factory=DislocationConfig)
    upbit: SimVenueConfig = msgspec.field(default_factory=lambda: SimVenueConfig(port=0))
    bithumb: SimVenueConfig = msgspec.field(
        default_factory=lambda: SimVenueConfig(port=0, fee_rate=0.0004))
    accounts: list[SimAccountConfig] = []
    rate_limits: RateLimitConfig = msgspec.field(default_factory=RateLimitConfig)
    ws_idle_timeout_s: float = 120.0
    faults_enabled: bool = True
    # Spread each market's frames across the step (fixed offsets per market), as venues publish
    # a book when it changes; false sends every market's frame at the same instant.
    stagger_markets: bool = True

    def __post_init__(self) -> None:
        _positive(self, "step_ms", "ws_idle_timeout_s")


class ActorSpec(_Section, frozen=True):
    """One supervised actor: ``kind`` is a built-in name or ``package.module:Class``."""

    name: str
    kind: str
    restart: RestartType = "permanent"
    params: dict[str, Any] = {}

    def __post_init__(self) -> None:
        if not _ACTOR_NAME.match(self.name):
            raise ValueError(f"actor name {self.name!r} must be lower-case words joined by dots")


class Config(_Section, frozen=True, kw_only=True):
    """The whole configuration tree."""

    supervisor: SupervisorConfig = msgspec.field(default_factory=SupervisorConfig)
    bus: BusConfig = msgspec.field(default_factory=BusConfig)
    venues: list[VenueConfig] = []
    markets: list[str] = []
    sim: SimConfig | None = None
    actors: list[ActorSpec]
    path: str = ""  # filled in by load_config, never read from YAML

    def __post_init__(self) -> None:
        for market in self.markets:
            if not _MARKET.match(market):
                raise ValueError(f"market {market!r} must look like KRW-BTC")
        _unique("markets", self.markets)
        _unique("venues", [v.name for v in self.venues])
        _unique("actors", [a.name for a in self.actors])
        if not self.actors:
            raise ValueError("actors must name at least one actor")
        total = self.supervisor.max_restarts_total
        if total is not None and total < len(self.actors):
            raise ValueError(
                f"supervisor.max_restarts_total: {total} is less than the {len(self.actors)} "
                "actors; one crash of every actor must fit (raise it, or null for automatic)")

    @property
    def restart_backstop(self) -> int:
        """The restart limit over all actors within ``period_s``."""
        total = self.supervisor.max_restarts_total
        return total if total is not None else self.supervisor.max_restarts + len(self.actors)

    @property
    def run_dir(self) -> Path:
        return Path(self.supervisor.run_dir).resolve()

    def actor(self, name: str) -> ActorSpec:
        for spec in self.actors:
            if spec.name == name:
                return spec
        raise KeyError(name)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, validate and freeze the config at ``path``; raise ConfigError on any problem."""
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config error: {where}: cannot read file ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config error: {where}: {at}invalid YAML ({problem})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config error: {where}: expected a mapping of sections at the top")
    if "path" in raw:
        raise ConfigError(f"config error: {where}: path: unknown key (the file's own path is implied)")
    raw["path"] = where
    try:
        return msgspec.convert(raw, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"config error: {where}: {explain(exc, Config)}") from None


def explain(exc: msgspec.ValidationError, root: type) -> str:
    """Turn msgspec's ``... - at `$.a[0].b``` into ``a[0].b: ...`` with the allowed keys."""
    text = str(exc)
    message, _, at = text.partition(" - at `$")
    key = at.rstrip("`").lstrip(".")
    unknown = re.match(r"Object contains unknown field `(.+)`", message)
    if unknown:
        field = unknown.group(1)
        allowed = ", ".join(_field_names(root, key))
        key = f"{key}.{field}" if key else field
        return f"{key}: unknown key (allowed here: {allowed})"
    missing = re.match(r"Object missing required field `(.+)`", message)
    if missing:
        field = missing.group(1)
        key = f"{key}.{field}" if key else field
        return f"{key}: required key is missing"
    message = message[0].lower() + message[1:] if message else message
    # A check in __post_init__ names its field first ("max_restarts must be ..."): say it as a key.
    first = message.split(" ", 1)[0]
    if key and first in _field_names(root, key):
        key = f"{key}.{first}"
        message = message.split(" ", 1)[1] if " " in message else message
    return f"{key}: {message}" if key else message


def _field_names(root: type, key: str) -> list[str]:
    """The keys allowed at ``key`` (a path like ``actors[0].params``) under ``root``."""
    info: mi.Type = mi.type_info(root)
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", key):
        info = _unwrap(info)
        if part.startswith("[") and isinstance(info, mi.ListType):
            info = info.item_type
        elif isinstance(info, mi.StructType):
            match = [f.type for f in info.fields if f.encode_name == part]
            if not match:
                return []
            info = match[0]
    info = _unwrap(info)
    if isinstance(info, mi.StructType):
        return [f.encode_name for f in info.fields if f.encode_name != "path"]
    return []


def _unwrap(info: mi.Type) -> mi.Type:
    if isinstance(info, mi.UnionType):
        rest = [t for t in info.types if not isinstance(t, mi.NoneType)]
        if len(rest) == 1:
            return rest[0]
    return info


def _positive(section: msgspec.Struct, *names: str) -> None:
    for name in names:
        if getattr(section, name) <= 0:
            raise ValueError(f"{name} must be greater than 0")


def _unique(what: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what} lists {name!r} twice")
        seen.add(name)


def convert_params(spec: ActorSpec, params_type: type[msgspec.Struct], index: int) -> Any:
    """Validate an actor's ``params`` against its class's ``Params`` struct, naming the key."""
    try:
        return msgspec.convert(spec.params, params_type)
    except msgspec.ValidationError as exc:
        detail = explain(exc, params_type)
        raise ConfigError(f"actors[{index}].params.{detail}") from None
