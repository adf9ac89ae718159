"""MQTT topics and payloads between gateway agents and collectors (schema version 1).

Topics::

    cw/v1/{enterprise}/{gateway}/telemetry   batches of readings, QoS 1, not retained
    cw/v1/{enterprise}/{gateway}/status      retained; the broker publishes the last will (offline)
    cw/v1/{enterprise}/{gateway}/events      device faults and counter events, QoS 1

Telemetry payload (JSON, UTF-8)::

    {"v": 1, "enterprise": "911401...", "gateway": "gw-01", "seq": 42,
     "sent": "2026-11-21T02:15:00.120Z",
     "readings": [{"p": "incomer.import_kwh", "t": "2026-11-21T02:15:00.012Z", "v": 1234.5, "q": "good"}]}

``seq`` increases by one per message for the life of a gateway (it survives restarts), so the
collector can see gaps and redeliveries. ``t`` is when the agent read the register, in UTC;
it is never the send time, so a reading replayed from the buffer a day later still says when
it was true. ``q`` is ``good``, ``uncertain`` (decoded but implausible: a counter that went
backwards, e.g. a transient 0 or a replaced meter) or ``bad`` (the read failed or decoded to
NaN or infinity; ``v`` is null).

Events payload (same envelope, its own ``seq``)::

    {"v": 1, "enterprise": "911401...", "gateway": "gw-01", "seq": 7, "sent": "...",
     "events": [{"kind": "counter_backwards", "t": "2026-11-21T02:15:00.012Z", "device": "incomer",
                 "point": "incomer.import_kwh", "value": 0.0, "previous": 1234.5, "detail": "..."}]}
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from .site import ID_PATTERN

PAYLOAD_VERSION = 1
TOPIC_PREFIX = "cw/v1"
MAX_READINGS_PER_MESSAGE = 10_000


class TopicKind(StrEnum):
    TELEMETRY = "telemetry"
    STATUS = "status"
    EVENTS = "events"


def topic(enterprise: str, gateway: str, kind: TopicKind | str) -> str:
    return f"{TOPIC_PREFIX}/{enterprise}/{gateway}/{TopicKind(kind).value}"


def telemetry_filter(shared_group: str | None = None) -> str:
    """Subscription filter for all telemetry, optionally as an MQTT 5 shared subscription."""
    f = f"{TOPIC_PREFIX}/+/+/{TopicKind.TELEMETRY.value}"
    return f"$share/{shared_group}/{f}" if shared_group else f


def parse_topic(name: str) -> tuple[str, str, TopicKind]:
    """Split a topic into (enterprise, gateway, kind); ValueError if it is not ours."""
    parts = name.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != TOPIC_PREFIX:
        raise ValueError(f"topic {name!r} is not cw/v1/<enterprise>/<gateway>/<kind>")
    try:
        kind = TopicKind(parts[4])
    except ValueError:
        raise ValueError(f"topic {name!r}: unknown kind {parts[4]!r}") from None
    return parts[2], parts[3], kind


class Quality(StrEnum):
    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


QUALITY_CODES = {Quality.GOOD: 0, Quality.UNCERTAIN: 1, Quality.BAD: 2}


def utc_iso(ts: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and a Z, the one timestamp form on the wire."""
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Reading(_Wire):
    point: str = Field(alias="p", pattern=ID_PATTERN)
    ts: AwareDatetime = Field(alias="t")
    value: float | None = Field(alias="v", allow_inf_nan=False)
    quality: Quality = Field(Quality.GOOD, alias="q")

    @model_validator(mode="after")
    def _value_matches_quality(self) -> Reading:
        if self.quality is Quality.BAD and self.value is not None:
            raise ValueError("a bad reading carries no value (v must be null)")
        if self.quality is not Quality.BAD and self.value is None:
            raise ValueError("a good or uncertain reading needs a value")
        return self


class Telemetry(_Wire):
    v: Literal[1]
    enterprise: str = Field(min_length=18, max_length=18)
    gateway: str = Field(pattern=ID_PATTERN)
    seq: int = Field(ge=0)
    sent: AwareDatetime
    readings: Annotated[list[Reading], Field(min_length=1, max_length=MAX_READINGS_PER_MESSAGE)]

    @field_validator("sent")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        return v.astimezone(UTC)


def encode_telemetry(enterprise: str, gateway: str, seq: int, readings: list[dict], sent: datetime) -> bytes:
    """Serialise a batch. ``readings`` are wire dicts ({"p","t","v","q"}) as the buffer stores them."""
    doc = {
        "v": PAYLOAD_VERSION,
        "enterprise": enterprise,
        "gateway": gateway,
        "seq": seq,
        "sent": utc_iso(sent),
        "readings": readings,
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def decode_telemetry(payload: bytes | str) -> Telemetry:
    """Parse and validate a telemetry payload; raises pydantic.ValidationError or ValueError."""
    return Telemetry.model_validate_json(payload)


class EventKind(StrEnum):
    DEVICE_DOWN = "device_down"  # a device stopped answering (or its bus is unreachable)
    DEVICE_UP = "device_up"  # it answers again
    COUNTER_BACKWARDS = "counter_backwards"  # a counter read less than before: the reading is uncertain
    COUNTER_ROLLOVER = "counter_rollover"  # a counter wrapped at its register width: the reading is good
    BUFFER_DROPPED = "buffer_dropped"  # the outbox hit its bound and dropped its oldest data
    TASK_RESTARTED = "task_restarted"  # an agent task crashed and was restarted


class Event(_Wire):
    kind: EventKind
    ts: AwareDatetime = Field(alias="t")
    device: str | None = None
    point: str | None = Field(None, pattern=ID_PATTERN)
    value: float | None = Field(None, allow_inf_nan=False)
    previous: float | None = Field(None, allow_inf_nan=False)
    detail: str | None = Field(None, max_length=1000)


class Events(_Wire):
    v: Literal[1]
    enterprise: str = Field(min_length=18, max_length=18)
    gateway: str = Field(pattern=ID_PATTERN)
    seq: int = Field(ge=0)
    sent: AwareDatetime
    events: Annotated[list[Event], Field(min_length=1, max_length=MAX_READINGS_PER_MESSAGE)]


def decode_events(payload: bytes | str) -> Events:
    """Parse and validate an events payload; raises pydantic.ValidationError or ValueError."""
    return Events.model_validate_json(payload)


class DeviceHealth(_Wire):
    state: Literal["ok", "degraded", "down"]
    last_success: AwareDatetime | None = None
    consecutive_failures: int = 0
    last_error: str | None = None


class BufferHealth(_Wire):
    depth: int = Field(ge=0, description="messages waiting to be acknowledged by the broker")
    bytes: int = Field(ge=0)
    oldest: AwareDatetime | None = None
    dropped_total: int = 0


class Status(_Wire):
    v: Literal[1]
    enterprise: str
    gateway: str
    state: Literal["online", "offline"]
    ts: AwareDatetime
    agent_version: str | None = None
    devices: dict[str, DeviceHealth] = {}
    buffer: BufferHealth | None = None


def decode_status(payload: bytes | str) -> Status:
    """Parse and validate a status payload; raises pydantic.ValidationError or ValueError."""
    return Status.model_validate_json(payload)


def offline_status(enterprise: str, gateway: str) -> bytes:
    """The last-will payload: published by the broker when the agent vanishes."""
    doc = {
        "v": 1,
        "enterprise": enterprise,
        "gateway": gateway,
        "state": "offline",
        "ts": utc_iso(datetime.now(UTC)),
    }
    return json.dumps(doc, separators=(",", ":")).encode()
