"""Response models of /api/v1: what the OpenAPI description promises and the responses are checked against."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class Me(BaseModel):
    role: str = Field(description="enterprise, province, operator or admin")
    scope: str | None = Field(description="the enterprise code or province code the token may read")
    label: str
    reads_energy: bool


class Enterprise(BaseModel):
    code: str = Field(description="unified social credit code (统一社会信用代码)")
    name: str
    name_en: str | None
    region: str = Field(description="GB/T 2260 county or city code")
    province: str
    city: str
    industry: str = Field(description="GB/T 4754 industry code")


class EnterpriseDetail(Enterprise):
    gateways: int
    meters: int
    points: int


class MeasuredFuel(BaseModel):
    carrier: str
    ncv: float | None = Field(description="net calorific value, GJ/t or GJ/10^4Nm3")
    carbon_content: float | None = Field(description="tC/GJ")
    oxidation_rate: float | None = Field(description="fraction; null: the family default (raw coal: 1)")
    source: str | None = Field(description="where the values come from, e.g. a lab report")
    co2_factor: dict | None = Field(description="the CO2 factor they gave: value, unit, source, trust, document")
    tce_factor: dict = Field(description="the standard-coal factor: value, unit, source")


class Provenance(BaseModel):
    method_version: str = Field(description="accounting method version, e.g. cw-2026.1")
    factor_set: str = Field(description="factor tables used: version + content hash")
    fuel_family: str
    electricity_data_years: dict[str, int] = Field(description="accounting year -> electricity factor data year")
    measured_fuel: list[MeasuredFuel] = Field(
        default_factory=list,
        description="measured fuel parameters of points in the figures (site file fuel), used instead of the family",
    )


class EnergyRow(BaseModel):
    key: str = Field(
        description="the level's key: point id, meter, carrier, enterprise code, industry, city or province"
    )
    period: str = Field(description="Beijing-time label: 2025, 2025-03, 2025-03-10, 2025-03-10T08:15")
    period_start: datetime
    tce: float = Field(description="standard coal, equivalent value (total)")
    tce_dual_control: float = Field(description="less feedstock and new renewable electricity")
    co2_location_t: float
    co2_market_t: float
    flags: int = Field(
        description="OR of the 15-minute anomaly flags (1 rollover, 2 backwards, 4 reset, 8 spike, 16 partial)"
    )


class EnergyResponse(Provenance):
    level: str
    period: str
    start: datetime
    end: datetime
    rows: list[EnergyRow]


class Fleet(BaseModel):
    enterprises: int
    gateways: int
    gateways_online: int
    gateways_stale: int
    meters_by_state: dict[str, int]


class Gateway(BaseModel):
    enterprise: str
    name: str
    province: str
    city: str
    gateway: str
    state: str | None
    last_seen: datetime | None
    status_at: datetime | None
    last_seq: int | None
    stale: bool
    meters: int
    meters_not_ok: int


class Alert(BaseModel):
    kind: str = Field(
        description="gateway_stale, meter_down, meter_degraded, point_stale, counter_anomaly, completeness_low"
    )
    severity: str = Field(description="critical or warning")
    enterprise: str
    name: str
    gateway: str | None
    meter: str | None
    point: str | None
    since: datetime | None
    detail: str | None


class Alerts(BaseModel):
    counts: dict[str, int]
    alerts: list[Alert]


class Target(BaseModel):
    region: str
    province: str
    year: int
    indicator: str
    name: str
    comparator: str = Field(description="about, at_least, more_than, at_most, less_than or reduce_by")
    value: float
    unit: str
    document: str
    quote: str = Field(description="the source phrase, quoted exactly")
    base_year: int | None
    note: str | None
    measured_by: str | None


class Targets(BaseModel):
    version: str
    documents: dict[str, dict]
    targets: list[Target]


class Problem(BaseModel):
    """An error: a message, or FastAPI's list of validation errors naming each parameter."""

    detail: str | list[dict] = Field(description="what was wrong, naming the parameter")


ERRORS = {
    401: {"model": Problem, "description": "missing, unknown or revoked token"},
    403: {"model": Problem, "description": "the token's role may not read this (operators: energy figures)"},
    404: {"model": Problem, "description": "no such object in the token's scope"},
    422: {"model": Problem, "description": "a parameter is invalid; the message names it"},
}
