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


AUTH_NAMES = {"jwt_verification", "expired_access_key", "expired_jwt", "nonce_used",
              "no_authorization_ip", "no_authorization_i_p", "out_of_scope", "invalid_access_key",
              "NotAllowIP", "blocked_member_id", "invalid_query_payload"}
FUNDS_PREFIX = "insufficient_funds"
NOT_FOUND_NAMES = {"order_not_found"}


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
    if status >= 500:
        return VenueUnavailable(venue, name, message, status)
    return InvalidOrder(venue, name, message, status)
