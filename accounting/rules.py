"""The accounting rules applied to activity data (quantities per carrier): tce and CO2 totals.

- Fuel: CO2 = quantity x NCV x carbon content x oxidation rate x 44/12, one parameter family at a
  time; measured parameters take precedence: a record's own (:class:`MeasuredFuel`, e.g. a metering
  point's lab values from its site file) over carrier-wide overrides (``--factor``) over the family.
  A fuel the family has no row for (raw coal) needs a measured NCV and carbon content; its oxidation
  rate, unless measured, is taken as 1 (complete oxidation: never understates CO2). A measured NCV
  also sets the standard coal (NCV / 29.3076). Feedstock use (原料用能) is not combusted: no
  combustion CO2, and its energy is kept in the total but left out of dual-control energy.
- Electricity: location-based with the average factor of the place (data year Y-2); market-based
  with the national residual factor (excluding market-traded non-fossil power) applied to the
  net purchased electricity (imports minus exports) not covered by green certificates /
  green-power contracts. Certificates cover net purchased electricity at most; exports are
  netted against the uncovered imports and never make the market-based electricity figure
  negative (the official guidance is silent on exports under the market method: this is the
  conservative reading, see docs/accounting.md). Both are reported; ``method`` chooses which
  one is ``co2_t``.
- Heat, steam, hot water: GJ x 0.11 tCO2/GJ unless a measured factor is given; steam in tonnes is
  converted to GJ by its enthalpy.
- Exported electricity and heat are subtracted (location-based: at the factor of the place, as
  GB/T 32150 writes it; market-based electricity: netted as above).
- Biomass CO2 is reported and not counted.
- Dual control: total energy minus feedstock energy minus new renewable electricity evidenced by
  green certificates (capped at the net purchased electricity), never below zero. The total is
  always reported too.
- Warnings: a result names what a reader must know about it (stale electricity factors for an
  accounting year far beyond the latest data year, a floored dual-control figure) in
  ``warnings``; each is also logged (``carbonwatch.accounting``, on stderr from the CLI).
- Standard coal in the equivalent-value convention; the equal-value total only when the year's
  thermal-power coal rate is supplied.
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from carbonwatch.contracts.carriers import CARRIERS, UNITS, Dimension, convert, normalise_unit

from . import METHOD_VERSION
from .factors import (
    DEFAULT_FUEL_FAMILY,
    FactorNotFound,
    electricity_factor,
    fuel_parameters,
    stale_factor_warning,
    tce_coefficient,
)
from .tables import FactorSet, shipped

log = logging.getLogger("carbonwatch.accounting")

CO2_PER_C = 44.0 / 12.0
HEAT_CARRIERS = ("heat", "steam", "hot_water")
EXPORTABLE = ("electricity", *HEAT_CARRIERS)
OVERRIDE_PARAMS = ("co2", "ncv", "cc", "of", "tce")


class Method(StrEnum):
    LOCATION = "location"
    MARKET = "market"


class AccountingError(ValueError):
    """Bad activity data or a missing factor; ``label`` names the row (e.g. ``line 3``)."""

    def __init__(self, message: str, label: str | None = None) -> None:
        self.label = label
        super().__init__(f"{label}: {message}" if label else message)


@dataclass(frozen=True)
class MeasuredFuel:
    """Measured parameters of one record's fuel (a metering point's lab values): NCV in GJ per the
    carrier's canonical unit (t or 10^4Nm3), carbon content in tC/GJ, oxidation rate a fraction.

    They take precedence over carrier-wide overrides and the family defaults for that record only;
    a measured NCV also sets its standard coal. ``source`` (e.g. a lab report) is recorded with the
    factors.
    """

    ncv: float | None = None
    carbon_content: float | None = None
    oxidation_rate: float | None = None
    source: str | None = None

    def params(self) -> dict[str, float]:
        """The measured values by override parameter name (ncv, cc, of)."""
        pairs = (("ncv", self.ncv), ("cc", self.carbon_content), ("of", self.oxidation_rate))
        return {k: float(v) for k, v in pairs if v is not None}

    @property
    def origin(self) -> str:
        return f"site file: {self.source}" if self.source else "site file, no source given"

    def check(self, label: str | None = None) -> None:
        for name, v in self.params().items():
            if not (math.isfinite(v) and v > 0) or (name == "of" and v > 1):
                raise AccountingError(f"measured {name} {v!r} is out of range", label)


@dataclass(frozen=True)
class Activity:
    """One activity-data record: a quantity of one carrier."""

    carrier: str
    quantity: float
    unit: str
    province: str | None = None  # place of electricity consumption: province, grid region or "national"
    use: str = "fuel"  # fuel | feedstock
    direction: str = "import"  # import | export
    green_certificate_mwh: float = 0.0
    enthalpy_kj_per_kg: float | None = None  # steam or hot water metered in tonnes
    label: str | None = None  # where the record came from, for error messages
    measured: MeasuredFuel | None = None  # this record's own measured fuel parameters (fuels only)


@dataclass(frozen=True)
class FactorUsed:
    value: float
    unit: str
    source: str
    trust: str
    data_year: int | None = None
    document: str | None = None
    variant: str | None = None
    area: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class CarrierLine:
    """Activity of one carrier, direction and use sharing the same factors."""

    carrier: str
    direction: str
    use: str
    unit: str  # canonical unit of quantity
    factor: FactorUsed | None  # CO2 factor, location-based for electricity (None: no CO2, e.g. feedstock)
    tce_factor: FactorUsed
    market_factor: FactorUsed | None = None  # electricity only
    quantity: float = 0.0
    co2_t: float = 0.0  # counted CO2 by the chosen method, signed (exports negative)
    co2_location_t: float = 0.0
    co2_market_t: float = 0.0
    biomass_co2_t: float = 0.0
    tce: float = 0.0
    green_certificate_mwh: float = 0.0
    rows: list[str] = field(default_factory=list)
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "carrier": self.carrier,
            "chinese": CARRIERS[self.carrier].chinese,
            "direction": self.direction,
            "use": self.use,
            "quantity": self.quantity,
            "unit": self.unit,
            "co2_t": self.co2_t,
            "co2_location_t": self.co2_location_t,
            "co2_market_t": self.co2_market_t,
            "tce": self.tce,
            "factor": self.factor.as_dict() if self.factor else None,
            "tce_factor": self.tce_factor.as_dict(),
        }
        if self.market_factor is not None:
            out["market_factor"] = self.market_factor.as_dict()
            out["green_certificate_mwh"] = self.green_certificate_mwh
        if self.carrier == "biomass":
            out["biomass_co2_t"] = self.biomass_co2_t
        if self.note:
            out["note"] = self.note
        if self.rows:
            out["rows"] = self.rows
        return out


@dataclass
class AccountResult:
    accounting_year: int
    method: Method
    fuel_family: str
    factor_set: str
    method_version: str = METHOD_VERSION
    co2_t: float = 0.0
    co2_location_t: float = 0.0
    co2_market_t: float = 0.0
    biomass_co2_t: float = 0.0
    tce: float = 0.0
    tce_dual_control: float = 0.0
    tce_feedstock: float = 0.0
    tce_new_renewable: float = 0.0
    tce_equal_value: float | None = None
    green_certificate_mwh: float = 0.0
    green_certificate_mwh_unused: float = 0.0
    by_carrier: list[CarrierLine] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what a reader of the figures must know

    def as_dict(self) -> dict[str, Any]:
        return {
            "warnings": list(self.warnings),
            "co2_t": self.co2_t,
            "tce": self.tce,
            "tce_dual_control": self.tce_dual_control,
            "method": self.method.value,
            "accounting_year": self.accounting_year,
            "co2_location_t": self.co2_location_t,
            "co2_market_t": self.co2_market_t,
            "biomass_co2_t": self.biomass_co2_t,
            "tce_feedstock": self.tce_feedstock,
            "tce_new_renewable": self.tce_new_renewable,
            "tce_equal_value": self.tce_equal_value,
            "green_certificate_mwh": self.green_certificate_mwh,
            "green_certificate_mwh_unused": self.green_certificate_mwh_unused,
            "fuel_family": self.fuel_family,
            "factor_set": self.factor_set,
            "method_version": self.method_version,
            "by_carrier": [line.as_dict() for line in self.by_carrier],
        }


# --- overrides (measured values, --factor CARRIER[.PARAM]=VALUE) -------------------------------


def parse_override(text: str) -> tuple[str, float]:
    """``"natural_gas=21.5"`` or ``"raw_coal.ncv=20.5"`` -> (key, value), checked."""
    if "=" not in text:
        raise AccountingError(f"--factor {text!r}: expected CARRIER=VALUE or CARRIER.PARAM=VALUE")
    key, _, raw = text.partition("=")
    key = key.strip()
    carrier, _, param = key.partition(".")
    param = param or "co2"
    if carrier not in CARRIERS:
        raise AccountingError(f"--factor {text!r}: {_unknown_carrier(carrier)}")
    if param not in OVERRIDE_PARAMS:
        raise AccountingError(f"--factor {text!r}: parameter must be one of {', '.join(OVERRIDE_PARAMS)}")
    try:
        value = float(raw)
    except ValueError:
        raise AccountingError(f"--factor {text!r}: {raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0 or (param == "of" and value > 1):
        raise AccountingError(f"--factor {text!r}: out of range")
    return (carrier if param == "co2" else f"{carrier}.{param}"), value


def _unknown_carrier(name: str) -> str:
    close = difflib.get_close_matches(name, CARRIERS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown carrier {name!r}{hint} (known: {', '.join(sorted(CARRIERS))})"


# --- quantities -------------------------------------------------------------------------------


def steam_gj(tonnes: float, enthalpy_kj_per_kg: float, reference_enthalpy_kj_per_kg: float = 0.0) -> float:
    """GJ of steam or hot water from its mass: t x 1000 kg/t x (h - h_ref) kJ/kg x 1e-6 GJ/kJ.

    The default (no reference deduction) is the standard-table enthalpy of GB/T 32151.34—2024.
    """
    return tonnes * (enthalpy_kj_per_kg - reference_enthalpy_kj_per_kg) / 1000.0


def canonical_quantity(a: Activity) -> tuple[float, str]:
    """The quantity in the unit its factors are expressed in (MWh, GJ, t or 10^4Nm3)."""
    info = CARRIERS.get(a.carrier)
    if info is None:
        raise AccountingError(_unknown_carrier(a.carrier), a.label)
    unit = normalise_unit(a.unit)
    if unit is None:
        raise AccountingError(f"unknown unit {a.unit!r} (known: kWh, MWh, GJ, MJ, t, kg, m3, Nm3, 10^4Nm3)", a.label)
    if not info.accepts(unit):
        allowed = ", ".join(u for u in UNITS if info.accepts(u) and UNITS[u].dimension != Dimension.POWER)
        raise AccountingError(f"unit {unit!r} is not a quantity of {a.carrier} (use {allowed})", a.label)
    q = a.quantity
    if isinstance(q, bool) or not isinstance(q, int | float) or not math.isfinite(q):
        raise AccountingError(f"quantity {q!r} is not a finite number", a.label)
    if q < 0:
        raise AccountingError(f"quantity {q} is negative: give exports as direction=export", a.label)
    if a.carrier in ("steam", "hot_water") and UNITS[unit].dimension == Dimension.MASS:
        h = a.enthalpy_kj_per_kg
        if h is None:
            raise AccountingError(
                f"{a.carrier} in {unit} needs its enthalpy (column enthalpy_kj_per_kg, e.g. 2777 for saturated steam "
                "at about 1 MPa), or give the quantity in GJ",
                a.label,
            )
        if not (isinstance(h, int | float) and math.isfinite(h) and 0 < h <= 4000):
            raise AccountingError(f"enthalpy {h!r} kJ/kg is outside (0, 4000]", a.label)
        return steam_gj(convert(q, unit, "t"), h), "GJ"
    target = "GJ" if a.carrier in HEAT_CARRIERS else info.canonical_unit
    return convert(q, unit, target), target


# --- factors per record -----------------------------------------------------------------------


def _fuel_factor(
    a: Activity, overrides: Mapping[str, float], family: str, fs: FactorSet
) -> tuple[FactorUsed, float | None, str | None]:
    """CO2 factor of a fuel, the measured NCV when one was given (it also sets the tce) and where
    that NCV came from.

    Precedence, parameter by parameter: the record's own measured values (``a.measured``), then
    carrier-wide overrides (``--factor coke.ncv=``), then the family. A whole-factor override
    (``--factor coke=``) applies to records without measured values of their own.
    """
    info = CARRIERS[a.carrier]
    unit = f"tCO2/{info.canonical_unit}"
    own = a.measured.params() if a.measured is not None else {}
    if a.carrier in overrides and not own:
        ncv_override = overrides.get(f"{a.carrier}.ncv")
        return FactorUsed(overrides[a.carrier], unit, "given (--factor)", "given"), ncv_override, "--factor"
    # parameter -> (value, origin)
    given: dict[str, tuple[float, str]] = {
        p: (overrides[f"{a.carrier}.{p}"], "--factor") for p in ("ncv", "cc", "of") if f"{a.carrier}.{p}" in overrides
    }
    for p, v in own.items():
        given[p] = (v, a.measured.origin)
    values = {p: v for p, (v, _) in given.items()}
    assumed = ""
    try:
        params = fuel_parameters(a.carrier, family, fs)
        defaults = {"ncv": params.ncv, "cc": params.carbon_content, "of": params.oxidation_rate}
    except FactorNotFound as exc:
        missing = [p for p in ("ncv", "cc") if p not in values]
        if missing:
            raise AccountingError(
                f"{exc} (e.g. --factor {a.carrier}=tCO2/{info.canonical_unit}, or the measured {a.carrier}.ncv= and "
                ".cc= (.of= when measured); a metering point takes them from its site file: "
                "fuel: {ncv, carbon_content})",
                a.label,
            ) from None
        params, defaults = None, {"of": 1.0}
        if "of" not in values:
            assumed = (
                f"; oxidation rate 1 assumed: family {family} has no default for {a.carrier} (complete oxidation, "
                "never understates CO2; give the measured oxidation rate)"
            )
    ncv, cc, of = (values.get(p, defaults.get(p)) for p in ("ncv", "cc", "of"))
    value = ncv * cc * of * CO2_PER_C
    parts = f"ncv {ncv} GJ/{info.canonical_unit} x cc {cc} tC/GJ x of {of} x 44/12"
    origins = sorted({o for _, o in given.values()})
    measured_ncv, ncv_origin = given.get("ncv", (None, None))
    if params is None:
        source = f"{parts}; measured {', '.join(sorted(given))} ({'; '.join(origins)}){assumed}"
        trust = "measured" if own else "given"
        return FactorUsed(value, unit, source, trust, document=_document(a)), measured_ncv, ncv_origin
    if given:
        source = f"{parts}; measured {', '.join(sorted(given))} ({'; '.join(origins)}), rest from family {family} "
        source += f"({params.document})"
        trust = "measured" if own else "given"
        document = _document(a) if own else params.document
    else:
        source = f"{parts}; fuel family {family}: {params.document} [{params.trust}]"
        trust, document = params.trust, params.document
    return FactorUsed(value, unit, source, trust, document=document), measured_ncv, ncv_origin


def _document(a: Activity) -> str | None:
    """The document behind a record's own measured values (its source note), if any."""
    if a.measured is None:
        return None
    return a.measured.source or "measured fuel parameters (site file)"


def _electricity_factors(
    a: Activity, year: int, overrides: Mapping[str, float], fs: FactorSet
) -> tuple[FactorUsed, FactorUsed]:
    if "electricity" in overrides:
        f = FactorUsed(overrides["electricity"], "tCO2/MWh", "given (--factor)", "given")
        return f, f
    if not a.province:
        raise AccountingError("electricity needs a province (or a grid region, or 'national')", a.label)
    out = []
    for variant in ("average", "excluding_market_non_fossil"):
        try:
            ef = electricity_factor(a.province, year, variant=variant, factor_set=fs)
        except FactorNotFound as exc:
            raise AccountingError(str(exc), a.label) from None
        out.append(FactorUsed(ef.value, ef.unit, ef.source, ef.trust, ef.data_year, ef.document, variant, ef.area))
    return out[0], out[1]


def _tce_factor(
    a: Activity,
    overrides: Mapping[str, float],
    family: str,
    fs: FactorSet,
    measured_ncv: float | None,
    ncv_origin: str | None = None,
) -> FactorUsed:
    """Standard coal per canonical unit: the record's own measured NCV first, then a ``.tce``
    override, then a carrier-wide measured NCV, then GB/T 2589 (or the family NCV / 29.3076)."""
    info = CARRIERS[a.carrier]
    unit = "GJ" if a.carrier in HEAT_CARRIERS else info.canonical_unit
    own_ncv = a.measured is not None and a.measured.ncv is not None
    if f"{a.carrier}.tce" in overrides and not own_ncv:
        return FactorUsed(overrides[f"{a.carrier}.tce"], f"tce/{unit}", "given (--factor)", "given")
    if measured_ncv is not None:
        gj = fs.standard_coal.gj_per_tce
        origin = f" ({ncv_origin})" if ncv_origin else ""
        return FactorUsed(
            measured_ncv / gj,
            f"tce/{unit}",
            f"measured NCV {measured_ncv}{origin} / {gj} GJ/tce (GB/T 2589)",
            "measured" if own_ncv else "given",
            document=_document(a) if own_ncv else None,
        )
    try:
        c = tce_coefficient(a.carrier, family, fs)
    except FactorNotFound as exc:
        raise AccountingError(str(exc), a.label) from None
    return FactorUsed(c.value, c.unit, c.source, c.trust, document=fs.standard_coal.document)


@dataclass(frozen=True)
class RecordFactors:
    """The factors one activity record is accounted with."""

    co2: FactorUsed | None  # tCO2 per canonical unit; None: no combustion CO2 (feedstock)
    market: FactorUsed | None  # electricity: the residual factor of the market-based method
    tce: FactorUsed  # tce per canonical unit
    biomass: bool = False  # CO2 reported, not counted
    note: str | None = None


def check_activity(a: Activity) -> None:
    """Direction, use and certificates that make sense for the carrier (raises AccountingError)."""
    if a.direction not in ("import", "export"):
        raise AccountingError(f"direction must be import or export, got {a.direction!r}", a.label)
    if a.direction == "export" and a.carrier not in EXPORTABLE:
        raise AccountingError(f"only {', '.join(EXPORTABLE)} can be exported, not {a.carrier}", a.label)
    if a.use not in ("fuel", "feedstock"):
        raise AccountingError(f"use must be fuel or feedstock, got {a.use!r}", a.label)
    info = CARRIERS[a.carrier]
    if a.use == "feedstock" and not (info.fossil or info.biomass):
        raise AccountingError(f"{a.carrier} cannot be feedstock (原料用能 is coal, oil, gas and products)", a.label)
    gc = a.green_certificate_mwh or 0.0
    if not (math.isfinite(gc) and gc >= 0):
        raise AccountingError(f"green_certificate_mwh {gc!r} must be a number >= 0", a.label)
    if gc and not (a.carrier == "electricity" and a.direction == "import"):
        raise AccountingError("green certificates apply to imported electricity only", a.label)


def record_factors(
    a: Activity, year: int, overrides: Mapping[str, float], fuel_family: str, fs: FactorSet
) -> RecordFactors:
    """CO2 and tce factors of one record for accounting year ``year`` (raises AccountingError)."""
    market: FactorUsed | None = None
    measured_ncv: float | None = None
    ncv_origin: str | None = None
    biomass = False
    note = None
    if a.measured is not None:
        a.measured.check(a.label)
        if a.carrier in ("electricity", "biomass", *HEAT_CARRIERS):
            raise AccountingError(f"measured fuel parameters apply to fuels, not to {a.carrier}", a.label)
    if a.use == "feedstock":
        co2 = None
        if a.measured is not None and a.measured.ncv is not None:
            measured_ncv, ncv_origin = a.measured.ncv, a.measured.origin
        elif f"{a.carrier}.ncv" in overrides:
            measured_ncv, ncv_origin = overrides[f"{a.carrier}.ncv"], "--factor"
        note = "feedstock (原料用能): not combusted, no combustion CO2; energy excluded from dual control"
    elif a.carrier == "electricity":
        co2, market = _electricity_factors(a, year, overrides, fs)
    elif a.carrier in HEAT_CARRIERS:
        if a.carrier in overrides:
            co2 = FactorUsed(overrides[a.carrier], "tCO2/GJ", "given (--factor)", "given")
        else:
            h = fs.heat
            co2 = FactorUsed(h.value, h.unit, f"default heat factor, {h.document} [{h.trust}]", h.trust)
    elif a.carrier == "biomass":
        if "biomass" not in overrides:
            raise AccountingError(
                "no default biomass CO2 factor is shipped: give --factor biomass=tCO2/t (reported, not counted)",
                a.label,
            )
        co2 = FactorUsed(overrides["biomass"], "tCO2/t", "given (--factor)", "given")
        biomass = True
        note = "biomass CO2 is reported and not counted in co2_t"
    else:
        co2, measured_ncv, ncv_origin = _fuel_factor(a, overrides, fuel_family, fs)
    tce = _tce_factor(a, overrides, fuel_family, fs, measured_ncv, ncv_origin)
    return RecordFactors(co2, market, tce, biomass, note)


# --- the account ------------------------------------------------------------------------------


def account(
    activities: Iterable[Activity],
    year: int,
    method: Method | str = Method.LOCATION,
    overrides: Mapping[str, float] | None = None,
    fuel_family: str = DEFAULT_FUEL_FAMILY,
    electricity_equal_value_tce_per_mwh: float | None = None,
    factor_set: FactorSet | None = None,
) -> AccountResult:
    """tce and CO2 of activity data for accounting year ``year``; raises :class:`AccountingError`."""
    fs = factor_set or shipped()
    method = Method(method)
    overrides = dict(overrides or {})
    fs.fuels(fuel_family)  # refuse an unknown family before any row
    result = AccountResult(accounting_year=year, method=method, fuel_family=fuel_family, factor_set=fs.id)
    lines: dict[tuple, CarrierLine] = {}
    elec_tce = elec_mwh = 0.0  # signed, for the equal-value total
    # electricity under the market method is settled on the totals, after every row is read:
    # market factor -> [(line, quantity, direction, certificates, tce factor)]
    market_rows: dict[FactorUsed, list[tuple[CarrierLine, float, str, float, float]]] = {}
    data_years: set[int] = set()

    for a in activities:
        qty, unit = canonical_quantity(a)
        check_activity(a)
        gc = a.green_certificate_mwh or 0.0
        sign = -1.0 if a.direction == "export" else 1.0
        rf = record_factors(a, year, overrides, fuel_family, fs)
        factor, market_factor, tce_factor = rf.co2, rf.market, rf.tce
        note = rf.note

        key = (a.carrier, a.direction, a.use, factor, market_factor, tce_factor)
        line = lines.get(key)
        if line is None:
            line = lines[key] = CarrierLine(
                a.carrier, a.direction, a.use, unit, factor, tce_factor, market_factor, note=note
            )
        line.quantity += qty
        if a.label:
            line.rows.append(a.label)

        tce = sign * qty * tce_factor.value
        line.tce += tce
        result.tce += tce
        if factor is None:  # feedstock: no combustion CO2
            result.tce_feedstock += tce
        elif rf.biomass:
            line.biomass_co2_t += qty * factor.value
            result.biomass_co2_t += qty * factor.value
        else:
            location = sign * qty * factor.value
            if market_factor is not None:
                market_rows.setdefault(market_factor, []).append((line, qty, a.direction, gc, tce_factor.value))
            else:
                line.co2_market_t += location
                result.co2_market_t += location
            line.co2_location_t += location
            result.co2_location_t += location
        for f in (factor, market_factor):
            if f is not None and f.data_year is not None:
                data_years.add(f.data_year)
        if a.carrier == "electricity":
            elec_tce += tce
            elec_mwh += sign * qty

    for market_factor, rows in market_rows.items():
        _settle_market_electricity(result, market_factor, rows)
    for line in lines.values():
        line.co2_t = line.co2_market_t if method is Method.MARKET else line.co2_location_t
    result.co2_t = result.co2_market_t if method is Method.MARKET else result.co2_location_t
    dual = result.tce - result.tce_feedstock - result.tce_new_renewable
    result.tce_dual_control = max(dual, 0.0)
    # a hair below zero is rounding (certificates covering exactly the net purchase), not a net export
    if dual < -1e-9 * (abs(result.tce) + result.tce_feedstock + result.tce_new_renewable):
        result.warnings.append(
            f"exported energy exceeds the energy consumed: dual-control energy {dual:.6g} tce is reported as 0 "
            "(tce keeps the signed total)"
        )
    for data_year in sorted(data_years):
        warning = stale_factor_warning(year, data_year)
        if warning:
            result.warnings.insert(0, warning)
    for warning in result.warnings:
        log.warning("%s", warning)
    if electricity_equal_value_tce_per_mwh is not None:
        # Equal value: the same total with electricity at the year's thermal-power coal rate.
        result.tce_equal_value = result.tce - elec_tce + elec_mwh * electricity_equal_value_tce_per_mwh
    result.by_carrier = list(lines.values())
    return result


def _settle_market_electricity(
    result: AccountResult, market_factor: FactorUsed, rows: list[tuple[CarrierLine, float, str, float, float]]
) -> None:
    """Market-based CO2 of electricity, certificates and new renewable energy, from the totals.

    Net purchased electricity N = imports - exports. Certificates cover at most N (exported power
    is not consumed, so no certificate can cover it): used = min(certificates, max(N, 0)). The
    uncovered net purchase times the residual factor is the market-based CO2, never negative:
    exports are netted against the uncovered imports only, and a net exporter's market-based
    electricity CO2 is 0 (no credit; the location-based figure keeps the GB/T 32150 subtraction).
    Used certificates are shared among the import rows in proportion to their certificates, the
    export credit among the export rows in proportion to their quantity.
    """
    imports = sum(q for _, q, d, _, _ in rows if d == "import")
    exports = sum(q for _, q, d, _, _ in rows if d == "export")
    certificates = sum(gc for _, _, _, gc, _ in rows)
    used = min(certificates, max(imports - exports, 0.0))
    credited = min(exports, imports - used)  # exports netted against the imports left uncovered
    cert_share = used / certificates if certificates > 0 else 0.0
    export_share = credited / exports if exports > 0 else 0.0
    r = market_factor.value
    for line, qty, direction, gc, tce_per_mwh in rows:
        if direction == "import":
            covered = gc * cert_share
            market = (qty - covered) * r
            line.green_certificate_mwh += gc
            result.tce_new_renewable += covered * tce_per_mwh
        else:
            market = -qty * export_share * r
        line.co2_market_t += market
    # the total from the totals, so rounding in the shares can never leave it a hair below zero
    result.co2_market_t += max(imports - used - credited, 0.0) * r
    result.green_certificate_mwh += certificates
    result.green_certificate_mwh_unused += certificates - used


def read_overrides(items: Iterable[str]) -> dict[str, float]:
    """Parse ``--factor`` arguments; a carrier given twice is an error, not a silent last-wins."""
    out: dict[str, float] = {}
    for item in items:
        key, value = parse_override(item)
        if key in out:
            raise AccountingError(f"--factor {key} given twice")
        out[key] = value
    return out
