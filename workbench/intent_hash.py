"""The intent hash, fast: a writer of an intent's canonical JSON specialised to ``OrderIntent``.

``OrderIntent.intent_hash`` (the general ``canonical.digest``) stays the definition; this writer
gives byte for byte the same JSON for the known models and steps aside for anything else (a
subclass, or a model whose fields changed). Tests pin the equality with hypothesis.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal

from pydantic import BaseModel

from workbench.canonical import quote as _quote
from workbench.fastpath import per_object
from workbench.models import Instrument, IntentConstraints, OrderIntent, ProtectiveStop

# The fields (sorted) that the specialised writer below spells out. If a model gains or loses a
# field, the writer is switched off and the general canonical writer is used instead.
_INTENT_SHAPE: dict[type[BaseModel], tuple[str, ...]] = {
    OrderIntent: (
        "account", "constraints", "instrument", "is_propagated", "limit_price", "order_type",
        "protective_stop", "quantity", "reason", "side", "source", "stop_price", "strategy_tag",
        "time_in_force",
    ),
    IntentConstraints: ("max_notional", "max_slippage_bps"),
    Instrument: ("con_id", "currency", "exchange", "primary_exchange", "symbol", "type"),
    ProtectiveStop: ("limit_price", "stop_price"),
}  # fmt: skip
FAST_INTENT_HASH = all(tuple(sorted(m.model_fields)) == f for m, f in _INTENT_SHAPE.items())


def plain_decimal(value: Decimal) -> str:
    """``canonical.decimal_str`` of a finite Decimal: fixed point, no exponent, no trailing 0."""
    if not value:
        return "0"
    text = str(value)  # exact digits; scientific only for large exponents, handled below
    if "E" in text:
        text = format(value, "f")  # 'f' without a precision never rounds
    return text.rstrip("0").rstrip(".") if "." in text else text


def _dec(value: Decimal | None) -> str:
    return "null" if value is None else f'"{plain_decimal(value)}"'


def _text(value: str | None) -> str:
    """A JSON string; a StrEnum member is written as its value (its str content)."""
    return "null" if value is None else _quote(value)


def _stop_json(p: ProtectiveStop | None) -> str:
    if p is None:
        return "null"
    return f'{{"limit_price":{_dec(p.limit_price)},"stop_price":{_dec(p.stop_price)}}}'


def _instrument_json(n: Instrument) -> str:
    con_id = "null" if n.con_id is None else str(n.con_id)
    return (
        f'{{"con_id":{con_id},"currency":{_quote(n.currency)},"exchange":{_quote(n.exchange)},'
        f'"primary_exchange":{_text(n.primary_exchange)},"symbol":{_quote(n.symbol)},'
        f'"type":{_quote(n.type)}}}'
    )


def intent_json(i: OrderIntent) -> str:
    """Canonical JSON of an intent, byte for byte what ``canonical.dumps`` writes, but faster."""
    c, limit, stop = i.constraints, i.limit_price, i.stop_price
    limit_json = "null" if limit is None else '"' + plain_decimal(limit) + '"'  # _dec, inline
    stop_json = "null" if stop is None else '"' + plain_decimal(stop) + '"'
    return (
        f'{{"account":{_quote(i.account)},"constraints":{{"max_notional":{_dec(c.max_notional)},'
        f'"max_slippage_bps":{_dec(c.max_slippage_bps)}}},'
        f'"instrument":{_instrument_json(i.instrument)},'
        f'"is_propagated":{"true" if i.is_propagated else "false"},'
        f'"limit_price":{limit_json},"order_type":{_quote(i.order_type)},'
        f'"protective_stop":{_stop_json(i.protective_stop)},"quantity":{_dec(i.quantity)},'
        f'"reason":{_quote(i.reason)},"side":{_quote(i.side)},"source":{_quote(i.source)},'
        f'"stop_price":{stop_json},"strategy_tag":{_quote(i.strategy_tag)},'
        f'"time_in_force":{_quote(i.time_in_force)}}}'
    )


def _plain_types(i: OrderIntent) -> bool:
    return (
        type(i) is OrderIntent
        and type(i.instrument) is Instrument
        and type(i.constraints) is IntentConstraints
        and (i.protective_stop is None or type(i.protective_stop) is ProtectiveStop)
    )


def _intent_hash(intent: OrderIntent) -> str:
    """``intent.intent_hash``, through the specialised writer when the models are the known ones."""
    if not (FAST_INTENT_HASH and _plain_types(intent)):
        return intent.intent_hash
    return hashlib.sha256(intent_json(intent).encode("ascii")).hexdigest()


# Remembered for the last few hundred intents: the simulator and the gate both need it.
intent_hash = per_object(_intent_hash, size=512)
