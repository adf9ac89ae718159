"""Read planning: fetch a meter's points in as few Modbus requests as the limits allow.

Points of one register area are sorted by address and merged into one request while the
request stays within ``max_registers_per_request`` (125 by the protocol, lower for devices
that need it) and no unused gap between neighbours exceeds ``max_gap`` registers. Coil and
discrete areas merge up to ``max_bits_per_request`` bits. ``one_request_per_point`` turns
merging off for devices that return garbage on multi-register reads: each request then reads
the registers of one point, and only points lying within those registers come with it (the
bits of one status word, the two bytes of one register are one read, whatever the setting).
A point narrower than a register (a ``bit``, a ``byte``) occupies its whole register here, so
several of them in one register are one read of it, decoded once per point.

Starting each request at the lowest unread point and extending it as far as the limits allow
gives the fewest requests: the allowed groups are runs of neighbouring points, and any run that
fits still fits with points taken off either end, so no other grouping needs fewer runs, as
long as points either do not overlap or share exactly the same registers (several bits of one
status word); tests/edge/test_read_plan.py checks this against an exhaustive search.
"""

from __future__ import annotations

from dataclasses import dataclass

from carbonwatch.contracts.site import Area, Meter, Point


@dataclass(frozen=True)
class Read:
    """One Modbus request: ``count`` registers (or bits) of ``area`` from protocol address ``address``."""

    area: Area
    address: int
    count: int
    points: tuple[tuple[Point, int], ...]  # (point, offset of its first register within the response)


def plan_reads(meter: Meter, points: list[Point] | None = None) -> list[Read]:
    """The requests that read ``points`` (default: all of the meter's points)."""
    points = meter.points if points is None else points
    reads: list[Read] = []
    for area in Area:
        # Widest first at one address, so that under one_request_per_point the points lying
        # within a point's registers (bits of its register) follow it into its request.
        in_area = sorted((p for p in points if p.area is area), key=lambda p: (meter.protocol_address(p), -p.registers))
        limit = meter.max_bits_per_request if area.is_bit else meter.max_registers_per_request
        group: list[Point] = []
        start = end = 0  # protocol addresses, end exclusive
        for p in in_area:
            addr = meter.protocol_address(p)
            p_end = addr + p.registers
            if group and (
                (meter.one_request_per_point and p_end > end)
                or addr - end > meter.max_gap
                or max(end, p_end) - start > limit
            ):
                reads.append(_read(meter, area, start, end, group))
                group = []
            if not group:
                start, end = addr, p_end
            group.append(p)
            end = max(end, p_end)
        if group:
            reads.append(_read(meter, area, start, end, group))
    return reads


def _read(meter: Meter, area: Area, start: int, end: int, group: list[Point]) -> Read:
    return Read(area, start, end - start, tuple((p, meter.protocol_address(p) - start) for p in group))
