"""Coin transfers between venues, journaled and never sent twice (the rebalancer's money path).

:class:`TransferManager` owns every transfer from the decision to send to the credit at the
destination:

- :meth:`start`: the amount is fixed (``withdraws/chance`` gives fee, minimum and what is
  free), the address is the allow-listed one from ``rebalance.addresses``, the travel-rule
  receiver fields are added where the sending venue asks for them (Bithumb); the transfer is
  written ``REQUESTED`` to the journal, and only then is the withdrawal asked for — once.
- :meth:`advance`: every open transfer is followed: a ``REQUESTED`` one (answer lost, or a crash
  between journal and answer) is looked up by currency, amount and time
  (``TransferClient.find_withdrawal``) and called ``NOT_SENT`` only when it is still not found
  ``settle_s`` after it was requested; ``ACCEPTED`` follows the withdrawal to ``DONE`` (``SENT``,
  with its txid) and ``SENT`` follows the deposit at the destination to ``ACCEPTED``
  (``CREDITED``). A transfer open past its expected time raises one ``transfer_stuck`` alert.

At most one transfer per coin is open at a time: the venues' withdrawal lists carry no client
id and no address, so two of one coin in flight could not be told apart after a crash.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping

from karb import clock
from karb.config import RebalanceConfig
from karb.exchanges.errors import VenueError, VenueUnavailable
from karb.exchanges.transfers import TransferApi, TravelRule, Withdrawal
from karb.execution.transfer_journal import (
    TransferJournal,
    TransferRecord,
    TransferState,
    new_transfer_id,
)
from karb.trading.skew import Skew, transfer_amount

log = logging.getLogger("karb.rebalancer")

AlertFn = Callable[[str, str, str, str], None]  # level, coin, text, kind

# Withdrawals from these venues need the travel-rule receiver fields (exchanges.md §6).
TRAVEL_RULE_VENUES = frozenset({"bithumb"})


def floor_amount(amount: float, decimals: int = 6) -> float:
    """Coin amounts go out with a few decimals, floored (never more than we meant)."""
    scale = 10 ** decimals
    return math.floor(amount * scale + 1e-9) / scale


class TransferManager:
    def __init__(self, journal: TransferJournal, clients: Mapping[str, TransferApi],
                 cfg: RebalanceConfig, alert: AlertFn, settle_s: float = 10.0) -> None:
        self.journal = journal
        self.clients = clients
        self.cfg = cfg
        self.alert = alert
        self.settle_s = settle_s
        self.sending: set[str] = set()  # REQUESTED by this incarnation, answer not yet back
        self.sent = 0
        self.credited = 0
        self.failed = 0

    # -- what is open -------------------------------------------------------------------------------

    def open(self) -> list[TransferRecord]:
        return self.journal.all(only_open=True)

    def open_for(self, coin: str) -> TransferRecord | None:
        return next((t for t in self.open() if t.coin == coin), None)

    def in_transit(self, opened: list[TransferRecord] | None = None) -> dict[str, dict[str, float]]:
        """coin → destination venue → amount on its way (counted where it will land);
        ``opened``: the open transfers when the caller has just read them."""
        out: dict[str, dict[str, float]] = {}
        for t in self.open() if opened is None else opened:
            if t.in_transit or t.state == TransferState.REQUESTED:
                per = out.setdefault(t.coin, {})
                per[t.to_venue] = per.get(t.to_venue, 0.0) + t.amount
        return out

    # -- starting one -------------------------------------------------------------------------------

    async def plan(self, coin: str, skew: Skew) -> tuple[float, float, str]:
        """(amount, fee, why not) for moving ``coin`` from its heavy venue to its light one."""
        source = skew.heavy
        chance = await self.clients[source].withdraw_chance(coin)
        if not chance.can_withdraw:
            return 0.0, chance.fee, f"{source} does not allow {coin} withdrawals now"
        amount = floor_amount(transfer_amount(skew, chance.fee, chance.minimum, chance.free))
        if amount <= 0:
            return 0.0, chance.fee, (f"below {source}'s minimum {chance.minimum:g} {coin} or not "
                                     f"enough free ({chance.free:g})")
        return amount, chance.fee, ""

    async def start(self, coin: str, from_venue: str, to_venue: str, amount: float, fee: float,
                    purpose: str = "coin") -> TransferRecord | None:
        """Journal, then ask once. Returns the record (REQUESTED when the answer was lost,
        FAILED when the venue refused), None when no transfer may start."""
        if self.open_for(coin) is not None:
            return None  # one per coin: see the module docstring
        dest = self.cfg.addresses.get(to_venue, {}).get(coin)
        if dest is None:
            log.warning("no allow-listed %s address on %s in rebalance.addresses: not sent",
                        coin, to_venue)
            return None
        rec = TransferRecord(new_transfer_id(), coin, from_venue, to_venue, amount, fee,
                             dest.net_type or coin, dest.address, purpose,
                             TransferState.REQUESTED, expected_s=self.cfg.stuck_after_s)
        travel = None
        rule = self.cfg.travel_rule.get(to_venue)
        if from_venue in TRAVEL_RULE_VENUES and rule is not None:
            travel = TravelRule(rule.exchange_name, rule.receiver_type, rule.receiver_ko_name,
                                rule.receiver_en_name, rule.receiver_corp_ko_name,
                                rule.receiver_corp_en_name)
        self.journal.request(rec)
        self.sending.add(rec.transfer_id)
        try:
            w = await self.clients[from_venue].withdraw(coin, rec.net_type, amount, dest.address,
                                                        dest.secondary_address, travel)
        except VenueUnavailable as exc:
            log.warning("transfer %s: no answer (%s); it will be looked up, never resent",
                        rec.transfer_id, exc)
            return rec
        except VenueError as exc:
            rec.state, rec.reason = TransferState.FAILED, f"refused: {exc}"
            self.journal.update(rec, "refused", {"error": str(exc)})
            self.failed += 1
            self.alert("warning", coin, f"transfer of {amount:g} {coin} {from_venue}→{to_venue} "
                       f"refused: {exc}", "transfer_failed")
            return rec
        finally:
            self.sending.discard(rec.transfer_id)
        self._accepted(rec, w, "accepted")
        self.sent += 1
        log.info("transfer %s: %g %s %s→%s accepted (%s)", rec.transfer_id, amount, coin,
                 from_venue, to_venue, w.uuid)
        return rec

    # -- following them -----------------------------------------------------------------------------

    async def advance(self) -> None:
        """One pass over every open transfer (after a restart: the recovery too)."""
        for rec in self.open():
            if rec.transfer_id in self.sending:
                continue
            try:
                await self._advance(rec)
            except VenueError as exc:
                log.warning("transfer %s: %s not followed this time (%s)", rec.transfer_id,
                            rec.state, exc)
            self._check_stuck(rec)

    async def _advance(self, rec: TransferRecord) -> None:
        source = self.clients[rec.from_venue]
        if rec.state == TransferState.REQUESTED:
            found = await source.find_withdrawal(rec.coin, rec.amount, rec.requested_ns // 1_000_000)
            if found is not None:
                self._accepted(rec, found, "found")
                log.warning("transfer %s: its lost answer found at %s (%s)", rec.transfer_id,
                            rec.from_venue, found.uuid)
            elif clock.time_ns() - rec.requested_ns > self.settle_s * 1e9:
                rec.state, rec.reason = TransferState.NOT_SENT, "not found after the settle window"
                self.journal.update(rec, "not_sent")
                log.warning("transfer %s: not at %s after %.0f s: NOT_SENT", rec.transfer_id,
                            rec.from_venue, self.settle_s)
            return
        if rec.state == TransferState.ACCEPTED:
            self._withdrawal_state(rec, await source.get_withdrawal(rec.uuid))
            if rec.state != TransferState.SENT:
                return
        if rec.state == TransferState.SENT and rec.txid:
            for d in await self.clients[rec.to_venue].deposits(rec.coin):
                if d.txid == rec.txid and d.state == "ACCEPTED":
                    rec.state = TransferState.CREDITED
                    self.journal.update(rec, "credited", {"deposit": d.uuid, "amount": d.amount})
                    self.credited += 1
                    log.info("transfer %s: %g %s credited at %s", rec.transfer_id, d.amount,
                             rec.coin, rec.to_venue)
                    if rec.alerted:
                        self.alert("warning", rec.coin, f"transfer {rec.transfer_id} credited at "
                                   "last", "transfer_stuck_resolved")
                    return

    def _accepted(self, rec: TransferRecord, w: Withdrawal, kind: str) -> None:
        rec.state, rec.uuid, rec.fee = TransferState.ACCEPTED, w.uuid, w.fee
        self.journal.update(rec, kind, {"uuid": w.uuid, "state": w.state})
        self._withdrawal_state(rec, w)

    def _withdrawal_state(self, rec: TransferRecord, w: Withdrawal) -> None:
        if w.state == "DONE":
            rec.state, rec.txid = TransferState.SENT, w.txid or ""
            self.journal.update(rec, "sent", {"txid": rec.txid})
        elif w.state in ("FAILED", "CANCELLED", "REJECTED"):
            rec.state, rec.reason = TransferState.FAILED, f"withdrawal {w.state}"
            self.journal.update(rec, "failed", {"state": w.state})
            self.failed += 1
            self.alert("warning", rec.coin, f"transfer {rec.transfer_id} of {rec.amount:g} "
                       f"{rec.coin} {rec.from_venue}→{rec.to_venue}: withdrawal {w.state}",
                       "transfer_failed")

    def _check_stuck(self, rec: TransferRecord) -> None:
        if rec.final or rec.alerted or not rec.overdue(clock.time_ns()):
            return
        rec.alerted = 1
        self.journal.update(rec, "stuck", {"state": str(rec.state)})
        self.alert("critical", rec.coin,
                   f"transfer {rec.transfer_id} of {rec.amount:g} {rec.coin} "
                   f"{rec.from_venue}→{rec.to_venue} still {rec.state} after "
                   f"{rec.expected_s:.0f} s (uuid {rec.uuid or '?'})", "transfer_stuck")
