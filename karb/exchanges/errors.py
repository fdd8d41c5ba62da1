"""Typed venue errors. Each carries the venue, the HTTP status and the venue's own error name
and message, so a log line says exactly what the exchange said (never a key or a token)."""

from __future__ import annotations


class VenueError(Exception):
    def __init__(self, venue: str, name: str, message: str, status: int = 0) -> None:
        super().__init__(f"{venue}: {name}: {message}" + (f" (HTTP {status})" if status else ""))
        self.venue = venue
        self.name = name
        self.message = message
        self.status = status


class AuthError(VenueError):
    """The keys were refused: wrong key, wrong secret, expired or replayed token, IP not allowed."""


class InsufficientFunds(VenueError):
    pass


class InvalidOrder(VenueError):
    """The order is wrong as sent (tick, minimum, parameters) — or refused locally before sending."""


class OrderNotFound(VenueError):
    pass


class RateLimited(VenueError):
    def __init__(self, venue: str, name: str, message: str, status: int = 429,
                 retry_after_s: float = 1.0) -> None:
        super().__init__(venue, name, message, status)
        self.retry_after_s = retry_after_s


class VenueUnavailable(VenueError):
    """5xx, timeouts, refused connections: the venue did not answer usefully."""


class OrderNotReady(VenueUnavailable):
    """Bithumb's 422 ``order_not_ready``: the order exists but cannot be read or cancelled yet.
    Retryable, like an unavailable venue; never a final answer about the order."""


class OutcomeUnknown(VenueError):
    """An order POST got no usable answer (timeout, 5xx, 504, reset, garbage): the order may or
    may not exist. The client never resends and never decides; the leg runner resolves it by
    ``client_id`` (karb.execution.legs)."""

    def __init__(self, venue: str, client_id: str, cause: VenueError) -> None:
        super().__init__(venue, cause.name, f"order {client_id}: outcome unknown ({cause.message})",
                         cause.status)
        self.client_id = client_id


class DuplicateClientId(InvalidOrder):
    """The venue refused an order because its client id was used before: the order it names
    exists (or existed). It means "look it up", never "rejected"."""


class AlreadyFinal(InvalidOrder):
    """A cancel refused because the order is already done or cancelled: a final answer about the
    order (look it up for its fills), not a failure."""


AUTH_NAMES = {"jwt_verification", "expired_access_key", "expired_jwt", "nonce_used",
              "no_authorization_ip", "no_authorization_i_p", "out_of_scope", "invalid_access_key",
              "NotAllowIP", "blocked_member_id", "invalid_query_payload"}
FUNDS_PREFIX = "insufficient_funds"
NOT_FOUND_NAMES = {"order_not_found"}
NOT_READY_NAMES = {"order_not_ready"}
# The venues' refusal of a reused client id. Neither venue documents a dedicated error name
# (exchanges.md §5): both answer a 400 whose message names the id as used/existing.
DUPLICATE_NAMES = {"duplicate_identifier", "duplicate_client_order_id", "identifier_duplicated"}
DUPLICATE_WORDS = ("already used", "already exists", "duplicate")
# Cancelling an order that is no longer open (Upbit/Bithumb; ccxt maps these to OrderNotFound or
# InvalidOrder). The message tells "done/cancelled" apart from other 400s.
FINAL_NAMES = {"order_already_done", "order_already_canceled", "order_already_cancelled",
               "canceled_order", "done_order"}
FINAL_WORDS = ("already done", "already cancel", "already canceled", "already cancelled",
               "is already done", "is already cancel")


def classify(venue: str, status: int, name: str, message: str) -> VenueError:
    """Map a venue's JSON error to our typed error."""
    if status == 401 or name in AUTH_NAMES:
        return AuthError(venue, name, message, status)
    if status in (418, 429):
        return RateLimited(venue, name, message, status)
    if name.startswith(FUNDS_PREFIX):
        return InsufficientFunds(venue, name, message, status)
    if status == 404 or name in NOT_FOUND_NAMES:
        return OrderNotFound(venue, name, message, status)
    if status == 422:
        return OrderNotReady(venue, name, message, status)
    if status >= 500:
        return VenueUnavailable(venue, name, message, status)
    text = message.lower()
    # Before "not ready": Bithumb answers a cancel of a filled order with a 400 named
    # order_not_ready whose message says it is already done — a final answer.
    if name in FINAL_NAMES or any(w in text for w in FINAL_WORDS):
        return AlreadyFinal(venue, name, message, status)
    if name in DUPLICATE_NAMES or (("identifier" in text or "client_order_id" in text)
                                   and any(w in text for w in DUPLICATE_WORDS)):
        return DuplicateClientId(venue, name, message, status)
    if name in NOT_READY_NAMES:
        return OrderNotReady(venue, name, message, status)
    return InvalidOrder(venue, name, message, status)
