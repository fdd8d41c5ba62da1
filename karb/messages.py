"""The whole bus schema: every message any actor publishes or sends over REQ/REP.

Messages are msgspec Structs in one tagged union, encoded as msgpack arrays (the tag first,
then the fields; the envelope fields ``src, inc, seq, ts_event, ts_init`` last). One Encoder and
one typed Decoder are built here once and shared. The publisher stamps ``src`` (actor name),
``inc`` (incarnation, new on every restart) and ``seq`` (+1 per message, counted per publisher and topic);
``ts_event`` / ``ts_init`` are integer nanoseconds (``time.time_ns`` for records; latency probes
put ``time.monotonic_ns`` in ``ts_event`` and say so).
"""

from __future__ import annotations

from typing import Literal

import msgspec

ActorState = Literal["STARTING", "RUNNING", "STOPPING"]
# What the strategy did with an opportunity: sent an intent, or why not. ``not_valid`` and
# ``stale`` name the venue whose top of book was unusable in ``Signal.venue``.
Decision = Literal["sent", "below_min_order", "not_valid", "stale", "halted", "cooldown",
                   "in_flight_cap", "volatile", "skew_blocked"]
AlertLevel = Literal["warning", "critical"]


class Msg(msgspec.Struct, tag=True, array_like=True, kw_only=True, gc=False):
    """Envelope shared by every bus message."""

    src: str = ""
    inc: int = 0
    seq: int = 0
    ts_event: int = 0
    ts_init: int = 0


class Heartbeat(Msg, tag="hb"):
    """``hb.<actor>``: liveness, readiness and load of one actor process."""

    state: ActorState
    pid: int
    loop_lag_us: int = 0
    msgs_in: int = 0
    msgs_out: int = 0
    gaps: int = 0
    publisher_restarts: int = 0
    malformed: int = 0
    rss_bytes: int = 0
    # Per-actor figures (e.g. a feed's data age per market, in ms); small and flat.
    extra: dict[str, float] = {}


class Probe(Msg, tag="probe"):
    """A latency probe; ``ts_event`` holds the sender's ``time.monotonic_ns()``."""

    n: int


class ProbeReport(Msg, tag="probe_report"):
    """What a probe sink measured: one-way hop latencies in ns, in arrival order."""

    hops_ns: list[int]


class ControlRequest(Msg, tag="ctl"):
    """Sent to an actor's control REP socket."""

    req_id: str
    cmd: str  # status | stop, or an actor's own command (execution: kill, resume)


class ActorStatus(msgspec.Struct, frozen=True, gc=False):
    name: str
    pid: int
    inc: int
    state: ActorState
    msgs_in: int
    msgs_out: int
    gaps: int
    publisher_restarts: int
    malformed: int


class ControlReply(Msg, tag="ctl_reply"):
    req_id: str
    ok: bool
    status: ActorStatus | None = None
    error: str = ""
    detail: str = ""


# -- market data -------------------------------------------------------------------------------
# recv_mono: time.monotonic_ns() when the feed received the venue frame; latency figures
# (book update, tick to trade) are measured from it, on one clock for every process on a host.


class BookUpdate(Msg, tag="md"):
    """``md.<venue>.<market>``: one whole normalised book from a feed (best first)."""

    venue: str
    market: str
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]
    recv_mono: int = 0


class TradeTick(Msg, tag="trade"):
    """``trade.<venue>.<market>``: one print on the venue's public trade stream, from a feed.

    ``ts_event`` is the venue's trade time (``trade_timestamp``), ``ts_init`` our receipt.
    ``side`` is the taker's: ``buy`` (a buyer lifted the ask) or ``sell`` (a seller hit the
    bid). ``sequential_id`` is the venue's trade number (unique, not ordered; the feed drops
    repeats; ``seq`` is the envelope's, per publisher). ``snapshot``: sent as the
    subscription's SNAPSHOT, i.e. the venue's last trade before we subscribed (or
    reconnected), not one seen happening."""

    venue: str
    market: str
    price: float
    volume: float
    side: Literal["buy", "sell"]
    sequential_id: int
    snapshot: bool = False
    recv_mono: int = 0


class TopOfBookUpdate(Msg, tag="tob"):
    """``tob.<venue>.<market>``: the top changed (also in shared memory)."""

    venue: str
    market: str
    bid_px: float
    bid_size: float
    ask_px: float
    ask_size: float
    flags: int
    recv_mono: int = 0
    shm_mono: int = 0  # when the new top became visible in shared memory


class DepthUpdate(Msg, tag="depth"):
    """``depth.<venue>.<market>``: the top N levels of a validated book."""

    venue: str
    market: str
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]
    recv_mono: int = 0


# -- strategy and execution -------------------------------------------------------------------


class Signal(Msg, tag="sig"):
    """``sig.<market>``: an opportunity and every number the strategy used on it."""

    market: str
    buy_venue: str
    sell_venue: str
    best_ask: float
    best_bid: float
    gross_bps: float
    net_bps: float
    volume: float
    buy_limit: float
    sell_limit: float
    expected_pnl_krw: float
    decision: Decision
    intent_id: str = ""
    venue: str = ""  # for not_valid / stale: the venue whose book was unusable
    # The skew-aware threshold that applied (karb.trading.skew.EdgeAdjustment): the edge this
    # direction had to beat, its rule (neutral | worsens | restores | budget_floor | blocked)
    # and the skew pressure in band widths. Empty rule: no skew adjustment was made.
    threshold_bps: float = 0.0
    skew_rule: str = ""
    skew_pressure: float = 0.0


class Intent(Msg, tag="intent"):
    """Strategy → execution over REQ: trade both legs of one arbitrage."""

    intent_id: str
    market: str
    buy_venue: str
    sell_venue: str
    volume: float
    buy_limit: float
    sell_limit: float
    net_bps: float
    recv_mono: int = 0


class IntentAck(Msg, tag="intent_ack"):
    intent_id: str
    accepted: bool
    reason: str = ""


class OrderEvent(Msg, tag="ord"):
    """``ord.<venue>``: a leg's state changed."""

    intent_id: str
    role: str  # buy | sell | hedge
    venue: str
    market: str
    side: str
    client_id: str
    order_id: str
    state: str  # PENDING SENT OPEN DONE CANCELLED REJECTED NOT_SENT UNKNOWN DRY_RUN
    price: float
    volume: float
    executed_volume: float = 0.0
    executed_funds: float = 0.0
    fee: float = 0.0
    reason: str = ""
    recv_mono: int = 0  # of the frame that opened the window
    sent_mono: int = 0  # when the request left for the venue


class FillEvent(Msg, tag="fill"):
    """``fill.<venue>``: one execution of a leg."""

    intent_id: str
    venue: str
    market: str
    side: str
    client_id: str
    trade_id: str
    price: float
    volume: float
    funds: float
    fee: float


class Position(Msg, tag="pos"):
    """``pos``: balances and inventory per venue, realised PnL net of fees."""

    balances: dict[str, dict[str, float]]  # venue → currency → free
    inventory: dict[str, dict[str, float]]  # market → venue → coin (free + locked)
    pnl_krw: dict[str, float]  # market → realised PnL net of fees
    pnl_total_krw: float
    intents_done: int
    fills: int
    halted: list[str] = []
    open_intents: list[str] = []
    # coin → destination venue → amount withdrawn and not yet credited (the rebalancer's
    # transfers): still ours, counted in inventory and PnL, spendable nowhere yet.
    in_transit: dict[str, dict[str, float]] = {}


class Alert(Msg, tag="alert"):
    level: AlertLevel
    market: str
    text: str
    # What it is about, for the notifier's rules (karb.ops.alerts): halt, reconcile_mismatch,
    # balance_mismatch, fee_check, or "" (any other).
    kind: str = ""


# -- monitors (karb.ops) ---------------------------------------------------------------------


class MarketStateUpdate(Msg, tag="mstate"):
    """``mstate.<market>``: the market-state monitor's verdict and the figures behind it
    (rules: ``karb.ops.marketstate``). ``state``: normal | volatile | trending | illiquid | ranging."""

    market: str
    state: str
    volatility_bps: float  # stdev of sample-to-sample mid returns
    trend_bps: float  # net move of the mid over the window (signed)
    efficiency: float  # |net move| / sum of |moves|, 0..1
    range_bps: float  # high - low of the mid over the window
    spread_bps: float  # median spread, worst venue
    depth_krw: float  # median top-of-book depth (min of bid and ask side), thinnest venue
    samples: int
    # From the public trade streams (karb.ops.volume), both venues summed, in coin: traded
    # volume per ``profile_bucket_s`` bucket, oldest first, finished buckets only (vwap's
    # profile), and their sum. Empty / 0 without trade streams (and in older recordings).
    volume_profile: tuple[float, ...] = ()
    recent_volume: float = 0.0
    trades: int = 0  # prints counted in the profile's span


class LegQuality(Msg, tag="xq"):
    """``xq.<venue>.<market>``: one leg reached a final state, as the execution-quality monitor
    measured it (``karb.ops.execquality``)."""

    intent_id: str
    client_id: str
    role: str  # buy | sell | hedge
    venue: str
    market: str
    side: str
    state: str
    reference_px: float  # the signal's price for this side (0: no signal seen)
    avg_px: float  # executed funds / executed volume (0: nothing filled)
    slippage_bps: float  # against the reference; positive = worse for us
    fill_ratio: float  # executed / ordered volume
    latency_s: float  # sent → final state (-1: the send was not seen)
    hedge_cost_krw: float = 0.0  # a hedge leg: what it cost against the signal's price, fees in


BusMessage = (Heartbeat | Probe | ProbeReport | ControlRequest | ControlReply | BookUpdate
              | TradeTick | TopOfBookUpdate | DepthUpdate | Signal | Intent | IntentAck | OrderEvent
              | FillEvent | Position | Alert | MarketStateUpdate | LegQuality)

ENCODER = msgspec.msgpack.Encoder()
DECODER = msgspec.msgpack.Decoder(BusMessage)


def encode(msg: Msg) -> bytes:
    return ENCODER.encode(msg)


def decode(payload: bytes) -> BusMessage:
    """Decode one payload; raises ``msgspec.DecodeError`` (incl. ValidationError) if malformed."""
    return DECODER.decode(payload)
