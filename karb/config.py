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
    # An order POST's own timeout: the venues answer an order in tens of ms, and until an
    # unanswered order is resolved (karb.execution.legs) a position may stand one-sided.
    order_timeout_ms: int = 1000
    # Taker fee as a fraction; default: the venue's base KRW rate (Upbit 0.05 %, Bithumb 0.25 %,
    # 0.04 % with Bithumb's coupon: set it to what your account really pays).
    taker_fee: float | None = None

    @property
    def fee(self) -> float:
        if self.taker_fee is not None:
            return self.taker_fee
        return 0.0005 if self.name == "upbit" else 0.0025

    def __post_init__(self) -> None:
        _positive(self, "stale_after_ms", "request_timeout_ms", "order_timeout_ms")
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
    """Random episodes in which one venue's prices move away from the other's.

    They arrive as a Poisson process at ``rate_per_min`` over the whole model, each on a
    random market and venue, up or down. ``size_dist``: ``fixed`` (every one ``size_bps``),
    ``pareto`` (``size_bps`` the smallest, tail index ``pareto_alpha``) or ``lognormal``
    (``size_bps`` the median, ``lognormal_sigma`` the spread), capped at ``max_bps``.
    ``half_life_ms`` 0: a flat window of ``duration_ms``; above 0, each decays exponentially
    with its own half-life (median ``half_life_ms``, lognormal spread ``half_life_sigma``) and
    ends below 0.5 bps or after ``duration_ms``. See ``karb/sim/dislocations.py``.
    """

    rate_per_min: float = 2.0
    size_bps: float = 60.0
    duration_ms: int = 3000
    size_dist: Literal["fixed", "pareto", "lognormal"] = "fixed"
    pareto_alpha: float = 1.5
    lognormal_sigma: float = 1.0
    max_bps: float = 1000.0
    half_life_ms: int = 0
    half_life_sigma: float = 0.0

    def __post_init__(self) -> None:
        _positive(self, "size_bps", "duration_ms", "pareto_alpha", "max_bps")
        if self.rate_per_min < 0 or self.half_life_ms < 0:
            raise ValueError("rate_per_min and half_life_ms must not be negative")
        if self.lognormal_sigma < 0 or self.half_life_sigma < 0:
            raise ValueError("lognormal_sigma and half_life_sigma must not be negative")


def _check_chain(levels: list[float], hold_s: list[float], transition: list[list[float]]) -> None:
    if not levels or len(hold_s) != len(levels):
        raise ValueError("levels and hold_s must be non-empty lists of the same length")
    if any(h <= 0 for h in hold_s):
        raise ValueError("every hold_s must be greater than 0")
    if transition:
        n = len(levels)
        if len(transition) != n or any(len(row) != n for row in transition):
            raise ValueError(f"transition must be {n} rows of {n} probabilities")
        for i, row in enumerate(transition):
            if any(p < 0 for p in row) or sum(p for j, p in enumerate(row) if j != i) <= 0:
                raise ValueError(f"transition row {i} must give some weight to another level")


class PremiumConfig(_Section, frozen=True):
    """Persistent premium regimes: Upbit dearer than Bithumb by a level (bps; negative:
    cheaper), a Markov chain. Each level holds an exponential time of mean ``hold_s`` (one per
    level), then the chain moves by its row of ``transition`` (empty: to any other level
    alike). ``per_market``: an independent chain per market, else one for all."""

    levels_bps: list[float] = msgspec.field(default_factory=lambda: [0.0])
    hold_s: list[float] = msgspec.field(default_factory=lambda: [3600.0])
    transition: list[list[float]] = []
    per_market: bool = True

    def __post_init__(self) -> None:
        _check_chain(self.levels_bps, self.hold_s, self.transition)


class VolatilityRegimeConfig(_Section, frozen=True):
    """Volatility regimes: a multiplier of ``volatility_bps`` for the whole market (coins move
    together), a Markov chain as in :class:`PremiumConfig`. ``scale_dislocations``: the
    dislocation rate is multiplied too (turbulence opens more gaps)."""

    multipliers: list[float] = msgspec.field(default_factory=lambda: [1.0])
    hold_s: list[float] = msgspec.field(default_factory=lambda: [3600.0])
    transition: list[list[float]] = []
    scale_dislocations: bool = True

    def __post_init__(self) -> None:
        _check_chain(self.multipliers, self.hold_s, self.transition)
        if any(m < 0 for m in self.multipliers):
            raise ValueError("multipliers must not be negative")


class CompetitorConfig(_Section, frozen=True):
    """Other arbitrageurs. When one venue's bid beats the other's ask by more than
    ``min_edge_bps`` (gross), ``count`` competitors arrive, each ``latency_ms`` after the gap
    showed (median; lognormal spread ``latency_sigma``), and take the levels that still pay
    them, up to ``notional_krw`` each a step (median; lognormal ``notional_sigma``).
    See ``karb/sim/competitors.py``."""

    count: int = 0
    min_edge_bps: float = 12.0
    latency_ms: float = 50.0
    latency_sigma: float = 0.7
    notional_krw: float = 3_000_000.0
    notional_sigma: float = 1.0

    def __post_init__(self) -> None:
        _positive(self, "latency_ms", "notional_krw")
        if self.count < 0 or self.latency_sigma < 0 or self.notional_sigma < 0:
            raise ValueError("count, latency_sigma and notional_sigma must not be negative")


class OutageConfig(_Section, frozen=True):
    """Venue outages, scheduled per venue as Poisson processes on the fault set: WebSocket
    drops (every socket closed), WebSocket stalls (open and silent for an exponential time of
    mean ``ws_stall_s``) and REST outages (every request answers ``rest_status`` for a mean
    ``rest_outage_s``). See ``karb/sim/outages.py``."""

    ws_drops_per_hour: float = 0.0
    ws_stalls_per_hour: float = 0.0
    ws_stall_s: float = 20.0
    rest_outages_per_hour: float = 0.0
    rest_outage_s: float = 30.0
    rest_status: Literal[500, 502, 503, 504] = 503

    def __post_init__(self) -> None:
        _positive(self, "ws_stall_s", "rest_outage_s")
        if min(self.ws_drops_per_hour, self.ws_stalls_per_hour, self.rest_outages_per_hour) < 0:
            raise ValueError("outage rates must not be negative")


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


class SimCoinTransferConfig(_Section, frozen=True):
    """One coin's withdrawal terms on the simulated venues (both venues charge the same)."""

    fee: float  # in the coin, taken from the withdrawing account on top of the amount
    minimum: float  # in the coin
    confirm_s: float = 3.0  # from the withdrawal's DONE to the deposit's ACCEPTED
    net_type: str = ""  # "" = the currency code (BTC on BTC, XRP on XRP, …)

    def __post_init__(self) -> None:
        if self.fee < 0 or self.minimum < 0 or self.confirm_s < 0:
            raise ValueError("fee, minimum and confirm_s must not be negative")


class SimTransfersConfig(_Section, frozen=True):
    """Coin transfers between the two simulated venues: a withdrawal from one becomes a deposit
    on the other. Real venues take minutes (BTC ~30-60 min, XRP ~1 min); tests use seconds."""

    # WAITING → PROCESSING and PROCESSING → DONE each take this long.
    processing_s: float = 1.0
    # Coins not listed below: confirm after this, fee worth ~fee_krw and minimum worth
    # ~minimum_krw at the coin's starting price.
    default_confirm_s: float = 3.0
    default_fee_krw: float = 1_000.0
    default_minimum_krw: float = 5_000.0
    # Withdrawals worth at least this need the travel-rule receiver data (Bithumb's fields;
    # Upbit's allow-listed addresses carry it).
    travel_rule_krw: float = 1_000_000.0
    coins: dict[str, SimCoinTransferConfig] = {}

    def __post_init__(self) -> None:
        if self.processing_s < 0 or self.default_confirm_s < 0:
            raise ValueError("processing_s and default_confirm_s must not be negative")


# The simulator's demo account when ``sim.accounts`` lists none: test data, not secrets.
SIM_DEMO_ACCESS_KEY = "sim-access"
SIM_DEMO_SECRET_KEY = "sim-secret"


class SimConfig(_Section, frozen=True):
    """The built-in exchange simulator (``python -m karb.sim`` or the ``sim`` actor)."""

    seed: int = 7
    step_ms: int = 100
    volatility_bps: float = 2.0
    noise_bps: float = 3.0
    prices: dict[str, float] = {}  # initial fair value per market; defaults built in
    dislocation: DislocationConfig = msgspec.field(default_factory=DislocationConfig)
    premium: PremiumConfig = msgspec.field(default_factory=PremiumConfig)
    volatility_regimes: VolatilityRegimeConfig = msgspec.field(
        default_factory=VolatilityRegimeConfig)
    competitors: CompetitorConfig = msgspec.field(default_factory=CompetitorConfig)
    outages: OutageConfig = msgspec.field(default_factory=OutageConfig)
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
    transfers: SimTransfersConfig = msgspec.field(default_factory=SimTransfersConfig)

    def __post_init__(self) -> None:
        _positive(self, "step_ms", "ws_idle_timeout_s")

    def demo_keys(self) -> tuple[str, str]:
        """(access, secret) of the account clients use against the simulator: the first one
        listed, else the built-in demo account."""
        if self.accounts:
            return self.accounts[0].access_key, self.accounts[0].secret_key
        return SIM_DEMO_ACCESS_KEY, SIM_DEMO_SECRET_KEY


class ActorSpec(_Section, frozen=True):
    """One supervised actor: ``kind`` is a built-in name or ``package.module:Class``."""

    name: str
    kind: str
    restart: RestartType = "permanent"
    params: dict[str, Any] = {}

    def __post_init__(self) -> None:
        if not _ACTOR_NAME.match(self.name):
            raise ValueError(f"actor name {self.name!r} must be lower-case words joined by dots")


# -- ops: dashboard, /metrics, alerts and their sinks (karb/ops) ---------------------------------


class SinkConfig(_Section, frozen=True):
    """One place alerts go besides the log. Secrets (bot tokens, webhook URLs) come only from the
    environment variables named here and never reach a log."""

    kind: Literal["telegram", "slack", "webhook"]  # slack: Slack- or Discord-compatible webhook
    token_env: str | None = None  # telegram: the bot token; webhook: an optional bearer token
    url_env: str | None = None  # slack/webhook: the URL (a Slack/Discord URL is itself a secret)
    url: str = ""  # webhook: a URL that is not secret
    chat_id: str = ""  # telegram
    api_url: str = "https://api.telegram.org"  # telegram; tests point it at a local server
    timeout_ms: int = 5000

    def __post_init__(self) -> None:
        _positive(self, "timeout_ms")
        if self.kind == "telegram" and not (self.token_env and self.chat_id):
            raise ValueError("a telegram sink needs token_env and chat_id")
        if self.kind == "slack" and not self.url_env:
            raise ValueError("a slack sink needs url_env (the webhook URL is a secret)")
        if self.kind == "webhook" and not (self.url or self.url_env):
            raise ValueError("a webhook sink needs url or url_env")


class AlertsConfig(_Section, frozen=True):
    """Alert rules (karb/ops/alerts.py) and where they are sent."""

    enabled: bool = True
    balance_floors: dict[str, dict[str, float]] = {}  # venue → currency → lowest free amount
    failed_intents: int = 5  # consecutive failed intents
    stream_down_s: float = 60.0
    restarts: int = 3  # restarts of one actor within restarts_window_s
    restarts_window_s: float = 600.0
    event_hold_s: float = 300.0  # a one-off bus alert (mismatch, fee check) resolves after this
    min_interval_s: float = 300.0  # per rule and subject: at most one notification per interval
    check_interval_ms: int = 1000
    queue_size: int = 100  # per sink; a full queue drops (counted), never blocks
    sinks: list[SinkConfig] = []

    def __post_init__(self) -> None:
        _positive(self, "failed_intents", "stream_down_s", "restarts", "restarts_window_s",
                  "event_hold_s", "check_interval_ms", "queue_size")
        if self.min_interval_s < 0:
            raise ValueError("min_interval_s must be 0 or more")


class DashboardConfig(_Section, frozen=True):
    """The live page at ``/`` of the status server."""

    # Controls that change trading (kill switch, unhalt) need this variable's value as a token;
    # unset, the controls are refused.
    token_env: str = "KARB_DASHBOARD_TOKEN"
    push_interval_ms: int = 100  # how often the page's event stream looks for changes

    def __post_init__(self) -> None:
        _positive(self, "push_interval_ms")


class OpsConfig(_Section, frozen=True):
    """Running it for real: ``/metrics``, the page, alerts (all served by the supervisor)."""

    metrics: bool = True
    dashboard: DashboardConfig = msgspec.field(default_factory=DashboardConfig)
    alerts: AlertsConfig = msgspec.field(default_factory=AlertsConfig)


# -- end of ops ------------------------------------------------------------------------------------


class Config(_Section, frozen=True, kw_only=True):
    """The whole configuration tree."""

    supervisor: SupervisorConfig = msgspec.field(default_factory=SupervisorConfig)
    bus: BusConfig = msgspec.field(default_factory=BusConfig)
    venues: list[VenueConfig] = []
    markets: list[str] = []
    sim: SimConfig | None = None
    ops: OpsConfig = msgspec.field(default_factory=OpsConfig)
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
