"""The upload configuration file (``carbonwatch upload --config FILE``), validated with pydantic;
a bad file fails at start with the file, line and field named."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from carbonwatch.contracts.site import ID_PATTERN, SiteConfigError, parse_yaml_model

Period = Literal["15min", "day", "month"]
PERIODS: tuple[Period, ...] = ("15min", "day", "month")
_FILES = ("ca_file", "client_cert", "client_key", "token_file")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Destination(_Strict):
    name: str = Field(pattern=ID_PATTERN, description="short name, e.g. national or province")
    url: str = Field(description="HTTPS endpoint that receives indicator batches")
    ca_file: Path | None = Field(None, description="CA bundle to verify the platform (default: system CAs)")
    client_cert: Path | None = Field(None, description="client certificate, when the platform asks for one")
    client_key: Path | None = None
    token_file: Path | None = Field(None, description="file holding a bearer token sent as Authorization")
    timeout: float = Field(10.0, gt=0, description="seconds for one request")
    backoff_min: float = Field(1.0, gt=0, description="first retry delay, seconds")
    backoff_max: float = Field(300.0, gt=0, description="longest retry delay, seconds")

    @field_validator("url")
    @classmethod
    def _https(cls, v: str) -> str:
        if not v.startswith("https://"):
            raise ValueError("must be an https:// URL (the platforms require HTTPS)")
        return v

    @model_validator(mode="after")
    def _pairs(self) -> Destination:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together")
        if self.backoff_max < self.backoff_min:
            raise ValueError("backoff_max must be at least backoff_min")
        return self


class UploadConfig(_Strict):
    version: Literal[1] = 1
    database_url: str | None = Field(None, description="default: $CARBONWATCH_DATABASE_URL")
    since: AwareDatetime = Field(description="upload periods that end after this time (with its UTC offset)")
    until: AwareDatetime | None = Field(None, description="and end no later than this (a backfill); default: now")
    enterprises: list[str] | None = Field(None, description="unified social credit codes; default: all registered")
    periods: list[Period] = Field(default_factory=lambda: list(PERIODS))
    settle: float = Field(
        300.0, ge=0, description="seconds after a period ends before it is built (late readings land first)"
    )
    build_interval: float = Field(30.0, gt=0, description="seconds between looks for newly closed periods")
    batch_size: int = Field(50, ge=1, le=1000, description="indicators per request")
    destinations: list[Destination] = Field(min_length=1)

    @model_validator(mode="after")
    def _checks(self) -> UploadConfig:
        names = [d.name for d in self.destinations]
        if len(set(names)) != len(names):
            raise ValueError(f"destination names must be unique, got {names}")
        if self.until is not None and self.until <= self.since:
            raise ValueError("until must be after since")
        return self

    def resolve_paths(self, base: Path) -> UploadConfig:
        """Relative file names resolve against the configuration file's folder."""
        dests = [
            d.model_copy(update={k: base / p for k in _FILES if (p := getattr(d, k)) and not p.is_absolute()})
            for d in self.destinations
        ]
        return self.model_copy(update={"destinations": dests})


def load_upload_config(path: str | Path) -> UploadConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SiteConfigError(f"{path}: cannot read upload configuration: {exc.strerror}") from None
    config = parse_yaml_model(
        text, str(path), UploadConfig, "an upload configuration is a YAML mapping with since and destinations"
    )
    config = config.resolve_paths(path.parent)
    for i, d in enumerate(config.destinations):
        for field in _FILES:
            p = getattr(d, field)
            if p is not None and not p.is_file():
                raise SiteConfigError(f"{path}: destinations[{i}].{field}: no such file: {p}")
    return config
