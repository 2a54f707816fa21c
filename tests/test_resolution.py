"""--resolve-as-of: the cut-off each setting means (the end of the model's UTC day by default), the plan's and the
lock request's fields a cache key takes, what is exempt from the date (everything not the model's own, however it
was added), and bad values (exit 2, also through an annotation). The resolutions themselves, against a real index:
test_asof.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from mlflow_kserve.errors import ConfigError
from mlflow_kserve.index import IndexConfig
from mlflow_kserve.lock import LockRequest
from mlflow_kserve.resolution import PATTERN, decide, validate_setting
from test_mlmodel import write_model
from test_plan import plan

ROOT = Path(__file__).resolve().parents[1]
MLFLOW_KSERVE = str(Path(sys.executable).with_name("mlflow-kserve"))
NOW = datetime(2026, 12, 6, 12, 0, 5, tzinfo=timezone.utc)


def test_model_resolves_as_of_the_end_of_its_utc_day() -> None:
    resolution, warning = decide("model", "2024-02-15 23:59:59.999999", now=NOW)
    assert (resolution.mode, resolution.as_of, warning) == ("model", "2024-02-16T00:00:00Z", None)
    assert "2024-02-15 23:59:59.999999" in resolution.basis
    assert decide("model", "2024-02-15 00:00:00", now=NOW)[0].as_of == "2024-02-16T00:00:00Z"


@pytest.mark.parametrize(
    ("created", "why"),
    [(None, "MLmodel has no utc_time_created"), ("last tuesday", "'last tuesday' is not a time")],
)
def test_a_model_without_a_usable_timestamp_resolves_as_of_now_with_a_warning(created: str | None, why: str) -> None:
    resolution, warning = decide("model", created, now=NOW)
    assert (resolution.mode, resolution.as_of, resolution.at) == ("now", None, "2026-12-06T12:00:05Z")
    assert warning is not None and why in warning and "resolving as of now" in warning


@pytest.mark.parametrize(
    ("setting", "cutoff"),
    [
        ("2024-02-15", "2024-02-16T00:00:00Z"),  # a date: its end, UTC
        ("2024-02-15T10:00:00Z", "2024-02-15T10:00:00Z"),
        ("2024-02-15T10:00+02:00", "2024-02-15T08:00:00Z"),
        ("2024-02-15T10:00:00.25-01:00", "2024-02-15T11:00:00.25Z"),
    ],
)
def test_an_explicit_date_or_instant(setting: str, cutoff: str) -> None:
    resolution, warning = decide(validate_setting(setting), "2020-01-01 00:00:00", now=NOW)
    assert (resolution.mode, resolution.as_of, warning) == ("date", cutoff, None)
    assert re.fullmatch(PATTERN, setting)


def test_now_has_no_cutoff_and_says_when() -> None:
    resolution, _ = decide("now", "2024-02-15 10:11:12", now=NOW)
    assert (resolution.mode, resolution.as_of) == ("now", None)
    assert resolution.describe() == "as of now (2026-12-06T12:00:05Z); --resolve-as-of now"


@pytest.mark.parametrize("bad", ["yesterday", "2024-02-30", "2024-02-15T10:00:00", "2024-2-15", "Model", ""])
def test_a_bad_setting_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_setting(bad)
    assert info.value.exit_code == 2 and "2024-02-15T10:00:00Z" in str(info.value)
    assert not re.fullmatch(PATTERN, bad) or bad == "2024-02-30"  # the schema checks the shape, the CLI the date


def test_the_chart_schemas_accept_what_the_cli_accepts() -> None:
    main = json.loads((ROOT / "charts/mlflow-kserve/values.schema.json").read_text())
    runtime = json.loads((ROOT / "charts/mlflow-kserve-runtime/values.schema.json").read_text())
    assert main["properties"]["model"]["properties"]["resolveAsOf"]["pattern"] == PATTERN
    assert runtime["properties"]["dependencies"]["properties"]["resolveAsOf"]["pattern"] == PATTERN


def test_the_plan_carries_the_mode_and_date(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m")  # utc_time_created: '2026-11-24 21:18:32.747608'
    assert plan(model).resolution.as_of == "2026-11-25T00:00:00Z"
    assert plan(model, resolve_as_of="2025-01-31").resolution.to_dict()["as_of"] == "2025-02-01T00:00:00Z"
    assert plan(model, resolve_as_of="now").resolution.mode == "now"
    mlmodel = model / "MLmodel"
    mlmodel.write_text(re.sub(r"utc_time_created: .*\n", "", mlmodel.read_text()))
    undated = plan(model)
    assert undated.resolution.mode == "now"
    assert any("no utc_time_created" in warning for warning in undated.warnings)


def test_everything_not_the_models_own_is_exempt_however_it_was_added() -> None:
    model = ("mlflow==2.10.2", "scikit-learn", "numpy")
    request = LockRequest(
        (*model, "mlserver==1.6.1", "uvloop<0.22", "grpcio>=1.60", "prometheus-client<1"),
        ("numpy<2", "setuptools<82", "Urllib3>=2.2.2"),
        resolve_mode="model", resolve_as_of="2024-02-16T00:00:00Z",
        model_requirements=model, model_constraints=("numpy<2",),
    )  # fmt: skip
    # grpcio stands for any addition a later change makes (gRPC on): exempt because it is not the model's
    assert request.exempt == ("grpcio", "mlserver", "prometheus-client", "setuptools", "urllib3", "uvloop")


def test_the_memo_key_keeps_modes_dates_and_locks_apart() -> None:
    def key(**fields: object) -> str:
        request = LockRequest(("six",), index=IndexConfig(), model_requirements=("six",), **fields)  # type: ignore[arg-type]
        return json.dumps(request.cache_parts("3.11.7", "linux"), sort_keys=True)

    keys = [
        key(resolve_mode="model", resolve_as_of="2024-02-16T00:00:00Z"),
        key(resolve_mode="model", resolve_as_of="2024-02-17T00:00:00Z"),
        key(resolve_mode="date", resolve_as_of="2024-02-16T00:00:00Z"),
        key(resolve_mode="now"),
        key(resolve_mode="lock", lock_digest="a" * 64),
        key(resolve_mode="lock", lock_digest="b" * 64),
    ]
    assert len(set(keys)) == len(keys)


def test_check_refuses_a_bad_date_with_exit_2(tmp_path: Path) -> None:
    model = write_model(tmp_path / "m")
    args = [MLFLOW_KSERVE, "check", "--model-uri", str(model), "--env-dir", str(tmp_path / "e"),
            "--models-dir", str(tmp_path / "ms")]  # fmt: skip
    proc = subprocess.run([*args, "--resolve-as-of", "2024-13-01"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "'2024-13-01' is not a date" in proc.stderr and "MLFLOW_KSERVE_RESOLVE_AS_OF" in proc.stderr


def test_a_bad_annotation_is_refused_naming_it(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "MLFLOW_KSERVE_ANNOTATION_RESOLVE_AS_OF": "last week"}
    proc = subprocess.run(
        [MLFLOW_KSERVE, "storage-initializer", "s3://models/m", str(tmp_path / "dest")],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "annotation mlflow-kserve.io/resolve-as-of" in proc.stderr and "'last week'" in proc.stderr
