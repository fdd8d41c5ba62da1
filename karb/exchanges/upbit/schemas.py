"""Upbit's wire shapes, in Upbit's own field names (converted to ours in rest.py / ws.py)."""

from __future__ import annotations

import msgspec

from karb.exchanges.v1api.schemas import OrderFields


class UpbitMarket(msgspec.Struct, gc=False):
    market: str
    korean_name: str = ""
    english_name: str = ""


class UpbitOrder(OrderFields, gc=False):
    identifier: str | None = None
