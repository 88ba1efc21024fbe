"""W3C trace context in NATS headers. nats-py headers are a case-sensitive dict, while the W3C
spec says accept any case: inject lowercase, extract case-insensitively."""

from __future__ import annotations

from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter, Setter


class _Setter(Setter[dict]):
    def set(self, carrier: dict, key: str, value: str) -> None:
        carrier[key.lower()] = value


class _Getter(Getter[dict]):
    def get(self, carrier: dict, key: str) -> list[str] | None:
        if not carrier:
            return None
        value = carrier.get(key)
        if value is None:
            lk = key.lower()
            value = next((v for k, v in carrier.items() if k.lower() == lk), None)
        return [value] if value is not None else None

    def keys(self, carrier: dict) -> list[str]:
        return list(carrier or {})


_SETTER, _GETTER = _Setter(), _Getter()


def inject(headers: dict[str, str], context: Context | None = None) -> None:
    propagate.inject(headers, context=context, setter=_SETTER)


def extract(headers: dict[str, str] | None) -> Context:
    return propagate.extract(headers or {}, getter=_GETTER)
