"""As of when the model's requirements are resolved (``--resolve-as-of model|now|<date>``), or that they are not
resolved at all because the model carries its own lock.

- ``model`` (the default): no file uploaded after the end of the day (UTC) the model was logged on (MLmodel's
  ``utc_time_created``) is considered for the model's own requirements, so every init of one model, on any day,
  resolves the same versions. A model without that timestamp resolves as of now, with a warning.
- a date (``2024-02-15``: its end, UTC) or an instant (``2024-02-15T10:00:00Z``, with a zone): the same, as of it.
- ``now``: the index as it is at this moment (and never served from the resolution memo).
- ``lock``: the model carries ``uv.lock`` (with ``pyproject.toml``) or ``pylock.toml``; its versions are taken as
  locked (modellock.py) and the date does not apply.

The cut-off is an RFC 3339 UTC instant, ``2024-02-16T00:00:00Z``: files uploaded before it are considered (uv
``--exclude-newer``, pip >= 26 ``--uploaded-prior-to``). What the operator and the backend add is exempt: lock.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from mlflow_kserve.errors import ConfigError
from mlflow_kserve.modelfiles import quote

MODES = ("model", "now", "date", "lock")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")
# What the chart's schema accepts for model.resolveAsOf (kept equal to it by a test).
PATTERN = r"^(model|now|\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?)$"
_FIX = "use model, now, a date (2024-02-15: its end, UTC) or an instant with a zone (2024-02-15T10:00:00Z)"


@dataclass(frozen=True)
class Resolution:
    """Plain fields, so a cache key can take them as they are."""

    mode: str  # model | date | now | lock
    as_of: str | None = None  # the cut-off, RFC 3339 UTC ("2024-02-16T00:00:00Z"); None for now and lock
    basis: str = ""  # why this cut-off, one line ("MLmodel utc_time_created 2024-02-15 10:11:12.123456")
    at: str | None = None  # now: the moment the plan was made
    lock_source: str | None = None  # lock: "uv.lock" or "pylock.toml"
    lock_digest: str | None = None  # lock: sha256 of the lock file(s) as the model carries them

    def describe(self) -> str:
        """One line for logs and ``check``: the date used, or the lock."""
        if self.mode == "lock":
            return f"from the model's {self.lock_source} (sha256 {(self.lock_digest or '')[:16]}…), as locked"
        if self.mode == "now":
            return f"as of now ({self.at}){'; ' + self.basis if self.basis else ''}"
        return f"as of {self.as_of} ({self.basis})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "as_of": self.as_of,
            "basis": self.basis,
            "at": self.at,
            "lock_source": self.lock_source,
            "lock_digest": self.lock_digest,
        }


def validate_setting(text: str) -> str:
    """The value of --resolve-as-of, checked (ConfigError, exit 2, otherwise)."""
    value = text.strip()
    if value in ("model", "now"):
        return value
    _parse_explicit(value)
    return value


def decide(setting: str, utc_time_created: str | None, *, now: datetime | None = None) -> tuple[Resolution, str | None]:
    """The resolution for ``setting`` and the model's ``utc_time_created``; a warning when ``model`` cannot be
    honoured (no timestamp, or one that is not a time)."""
    moment = now or datetime.now(timezone.utc)
    at = _rfc3339(moment)
    if setting == "now":
        return Resolution("now", at=at, basis="--resolve-as-of now"), None
    if setting != "model":
        cutoff, basis = _parse_explicit(setting)
        return Resolution("date", _rfc3339(cutoff), basis), None
    if not utc_time_created:
        warning = "MLmodel has no utc_time_created: resolving as of now (pass --resolve-as-of <date> to fix one)"
        return Resolution("now", at=at, basis="MLmodel has no utc_time_created"), warning
    logged = _parse_logged(utc_time_created)
    if logged is None:
        warning = (
            f"MLmodel's utc_time_created {quote(utc_time_created)} is not a time: resolving as of now "
            "(pass --resolve-as-of <date> to fix one)"
        )
        return Resolution("now", at=at, basis="MLmodel's utc_time_created is not a time"), warning
    basis = f"the end of the day the model was logged: {utc_time_created} UTC"
    return Resolution("model", _rfc3339(_end_of_day(logged)), basis), None


def lock(source: str, digest: str) -> Resolution:
    return Resolution("lock", lock_source=source, lock_digest=digest)


def _parse_explicit(value: str) -> tuple[datetime, str]:
    if _DATE.match(value):
        try:
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=timezone.utc)
        except ValueError as exc:
            raise ConfigError(f"{value!r} is not a date", _FIX) from exc
        return _end_of_day(day), f"--resolve-as-of {value}: the end of that day, UTC"
    if _INSTANT.match(value):
        try:
            instant = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ConfigError(f"{value!r} is not a time", _FIX) from exc
        return instant.astimezone(timezone.utc), f"--resolve-as-of {value}"
    raise ConfigError(f"{quote(value)} is neither model, now, nor a date", _FIX)


def _parse_logged(text: str) -> datetime | None:
    """MLflow writes ``str(datetime.utcnow())``: "2024-02-15 10:11:12.123456", naive, UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _end_of_day(moment: datetime) -> datetime:
    """The first instant of the next day (UTC): files uploaded before it were there at the end of ``moment``'s."""
    day = moment.astimezone(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return day + timedelta(days=1)


def _rfc3339(moment: datetime) -> str:
    moment = moment.astimezone(timezone.utc)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond:06d}".rstrip("0")
    return text + "Z"
