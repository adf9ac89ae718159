"""Activity-data CSV (the input of ``carbonwatch account``) to :class:`~.rules.Activity` records.

Columns: ``carrier,quantity,unit,province`` and optionally ``use`` (fuel | feedstock),
``direction`` (import | export), ``green_certificate_mwh``, ``enthalpy_kj_per_kg`` (steam or hot
water in tonnes) and ``period`` (kept for the reader, not used). Every error names the line.
Province is a GB/T 2260 code (140000), a Chinese name (山西 / 山西省), pinyin (shanxi), a grid
region (华北 / north) or ``national``; it is required for electricity only, and checked wherever given.
"""

from __future__ import annotations

import csv
import io
import math

from carbonwatch.contracts.regions import UnknownRegion

from .factors import resolve_area
from .rules import AccountingError, Activity

REQUIRED = ("carrier", "quantity", "unit", "province")
OPTIONAL = ("use", "direction", "green_certificate_mwh", "enthalpy_kj_per_kg", "period")


def _number(text: str, column: str, label: str, default: float | None) -> float | None:
    text = text.strip()
    if not text:
        return default
    try:
        value = float(text.replace(",", ""))  # 1,234.5 as a spreadsheet writes it
    except ValueError:
        raise AccountingError(f"{column} {text!r} is not a number", label) from None
    if not math.isfinite(value):
        raise AccountingError(f"{column} {text!r} is not a finite number", label)
    return value


def read_activities(text: str, source: str = "input") -> list[Activity]:
    """Parse activity CSV text; raises :class:`AccountingError` naming ``source:line``."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header: list[str] | None = None
    out: list[Activity] = []
    for row in reader:
        line = reader.line_num
        if not row or not any(cell.strip() for cell in row) or row[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [h.strip().lower() for h in row]
            missing = [c for c in REQUIRED if c not in header]
            unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
            if missing or unknown:
                parts = []
                if missing:
                    parts.append(f"missing column(s) {', '.join(missing)}")
                if unknown:
                    parts.append(f"unknown column(s) {', '.join(repr(c) for c in unknown)}")
                raise AccountingError(
                    f"{'; '.join(parts)} (columns: {', '.join(REQUIRED)}; optional {', '.join(OPTIONAL)})",
                    f"{source}:{line}",
                )
            if len(set(header)) != len(header):
                raise AccountingError("a column appears twice", f"{source}:{line}")
            continue
        label = f"{source}:{line}"
        if len(row) != len(header):
            raise AccountingError(f"{len(row)} fields, the header has {len(header)}", label)
        cells = {h: c.strip() for h, c in zip(header, row, strict=True)}
        if not cells["carrier"]:
            raise AccountingError("carrier is empty", label)
        quantity = _number(cells["quantity"], "quantity", label, None)
        if quantity is None:
            raise AccountingError("quantity is empty", label)
        place = cells["province"] or None
        if place is not None:
            try:
                resolve_area(place)
            except UnknownRegion as exc:
                raise AccountingError(str(exc), label) from None
        out.append(
            Activity(
                carrier=cells["carrier"].lower(),
                quantity=quantity,
                unit=cells["unit"],
                province=place,
                use=(cells.get("use") or "fuel").lower(),
                direction=(cells.get("direction") or "import").lower(),
                green_certificate_mwh=_number(
                    cells.get("green_certificate_mwh", ""), "green_certificate_mwh", label, 0.0
                )
                or 0.0,
                enthalpy_kj_per_kg=_number(cells.get("enthalpy_kj_per_kg", ""), "enthalpy_kj_per_kg", label, None),
                label=label,
            )
        )
    if header is None:
        raise AccountingError(f"{source}: no data (expected a header line: {','.join(REQUIRED)})")
    if not out:
        raise AccountingError(f"{source}: a header but no data rows")
    return out
