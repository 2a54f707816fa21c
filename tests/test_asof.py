"""The same environment every time: a model's requirements resolve as of the day it was logged.

- Determinism, against a package index the test controls (support.pyindex: PEP 691 JSON pages with upload times,
  served on 127.0.0.1, in front of PyPI for everything else): init a model that needs ``mlflow-kserve-probe``
  (which needs ``mlflow-kserve-probe-dep``), publish a newer probe-dep after the model's day, init again. As of the
  model's day the two locks are identical (the second init a cache hit, and a fresh resolution without the cache
  agrees); as of now the newer probe-dep is taken. What the operator adds (``--extra-requirement``) is exempt: it
  resolves although its only release is newer than the model.
- An old model: logged on 2024-02-15 by a builder installed as of that day, with loose requirements (``mlflow``,
  ``scikit-learn``, ``pandas``): served (MLServer 1.6.1, whose own dependencies need releases from after that day:
  they are exempt) with the versions of its day, answering as its local predict did; as of now it resolves today's
  scikit-learn instead (whose pickle format still loads this model: see the report).
- ``--installer pip`` on a pip without ``--uploaded-prior-to``: exit 2 under an explicit date; under ``model``,
  as of now with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from mlflow_kserve.mlmodel import read_mlmodel
from mlflow_kserve.resolution import decide
from mlflow_kserve.tools import pip_resolves_as_of, uv_binary
from packaging.version import Version
from support.cli import last_error, mlflow_kserve, report, served, v2_request
from support.models import build
from support.pyindex import LocalIndex, build_wheel, serve
from support.services import free_port
from test_mlmodel import write_model
from test_plan import plan

OLD = datetime(2024, 1, 1, tzinfo=timezone.utc)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.mark.e2e
def test_as_of_the_models_day_the_lock_stays_as_of_now_it_moves(shared_cache: Path, tmp_path: Path) -> None:
    model = build("asof-probe")
    cutoff = decide("model", read_mlmodel(model.path).utc_time_created)[0].as_of
    assert cutoff is not None
    after_the_models_day = max(datetime.now(timezone.utc), datetime.fromisoformat(cutoff)) + timedelta(hours=1)
    index = LocalIndex(tmp_path / "index")
    wheels = tmp_path / "wheels"
    index.publish(build_wheel(wheels, "mlflow-kserve-probe", "1.0", ["mlflow-kserve-probe-dep>=1.0"]), OLD)
    index.publish(build_wheel(wheels, "mlflow-kserve-probe-dep", "1.0"), OLD)
    index.publish(build_wheel(wheels, "mlflow-kserve-probe-extra", "1.0"), after_the_models_day)

    with serve(index) as url:
        env = {**os.environ, "MLFLOW_KSERVE_EXTRA_INDEX_URL": url}
        common = ["--model-uri", str(model.path), "--backend", "mlflow",
                  "--extra-requirement", "mlflow-kserve-probe-extra"]  # fmt: skip

        def run(command: str, name: str, *extra: str) -> tuple[dict, str]:
            dirs = ["--models-dir", str(tmp_path / name / "models"), "--env-dir", str(tmp_path / name / "env")]
            json_out = ["--json"] if command == "check" else []
            proc = mlflow_kserve([command, *common, *dirs, *json_out, *extra], env)
            assert proc.returncode == 0, proc.stderr[-3000:]
            lock = (tmp_path / name / "env" / "requirements.lock").read_text()
            facts = report(tmp_path / name / "env") if command == "init" else json.loads(proc.stdout)
            return facts, lock

        first, lock1 = run("init", "first", "--cache-dir", str(shared_cache))
        assert first["resolution"]["mode"] == "model" and first["resolution"]["as_of"] == cutoff
        assert first["packages"]["mlflow-kserve-probe-dep"] == "1.0"
        assert first["packages"]["mlflow-kserve-probe-extra"] == "1.0", "the operator's addition is exempt"
        assert first["resolution"]["exempt"] == {
            "mlflow-kserve-probe-extra": "operator (--extra-requirement)", "orjson": "mlflow backend (optional)",
        }  # fmt: skip

        index.publish(build_wheel(wheels, "mlflow-kserve-probe-dep", "1.1"), after_the_models_day)
        second, lock2 = run("init", "second", "--cache-dir", str(shared_cache))
        fresh, lock3 = run("check", "fresh")  # no cache: resolved again, against the index as it is now
        now, lock4 = run("check", "now", "--cache-dir", str(shared_cache), "--resolve-as-of", "now")

    print(f"\nmodel: {digest(lock1)} then {digest(lock2)} (fresh {digest(lock3)}); now: {digest(lock4)}")
    assert lock2 == lock1 and lock3 == lock1, "as of the model's day, the newer probe-dep is not considered"
    assert second["cache"] == {"enabled": True, "hit": True, "lock_hit": True}
    assert fresh["packages"]["mlflow-kserve-probe-dep"] == "1.0"
    assert now["resolution"]["mode"] == "now" and now["resolution"]["as_of"] is None
    assert now["packages"]["mlflow-kserve-probe-dep"] == "1.1", "as of now, not served from the model's memo"
    assert lock4 != lock1


@pytest.mark.e2e
def test_an_old_model_is_served_with_the_versions_of_its_day(
    shared_cache: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    model = build("sklearn-2024")
    day = model.expected["environment"]  # what it was trained and logged with, installed as of 2024-02-15
    assert read_mlmodel(model.path).utc_time_created == "2024-02-15 12:00:00.000000"
    assert "scikit-learn\n" in (model.path / "requirements.txt").read_text() + "\n", "loose requirements"
    args = ["--model-uri", str(model.path), "--work-dir", str(tmp_path / "work"), "--cache-dir", str(shared_cache)]
    with served(args, env, free_port(), "old", tmp_path / "run.log") as server:
        answer = server.infer(v2_request(model.expected))
        facts = report(next((tmp_path / "work" / "models").glob("*/env")))
    assert answer["outputs"][0]["data"] == pytest.approx(model.expected["output"])
    assert facts["resolution"]["as_of"] == "2024-02-16T00:00:00Z"
    assert "mlserver==1.6.1" in facts["serving_stack"]
    packages, exempt = facts["packages"], facts["resolution"]["exempt"]
    for name in ("mlflow", "scikit-learn", "pandas", "numpy", "scipy"):
        assert packages[name] == day[name], name
    newer = {n: v for n, v in packages.items() if n in day and n not in exempt and Version(v) > Version(day[n])}
    assert newer == {}, "nothing of the model's is newer than its day"
    assert Version(packages["pydantic"]) >= Version("2.7.1"), "MLServer 1.6.1's own pin, released after the day"

    dirs = ["--models-dir", str(tmp_path / "now" / "m"), "--env-dir", str(tmp_path / "now" / "e")]
    today = mlflow_kserve(["check", "--model-uri", str(model.path), "--json", "--resolve-as-of", "now", *dirs], env)
    assert today.returncode == 0, today.stderr
    assert Version(json.loads(today.stdout)["packages"]["scikit-learn"]) > Version(day["scikit-learn"])


@pytest.mark.e2e
def test_a_pip_without_uploaded_prior_to(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real pip 25 (no --uploaded-prior-to), put first on the path of the CLI and the pips it runs."""
    old_pip = tmp_path / "pip25"
    subprocess.run([uv_binary(), "pip", "install", "-q", "--target", old_pip, "pip==25.0.1"], check=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(old_pip)}
    version = subprocess.run([sys.executable, "-m", "pip", "--version"], env=env, capture_output=True, text=True)
    assert version.stdout.startswith("pip 25.0.1"), version.stdout
    model = write_model(tmp_path / "m")
    dirs = ["--models-dir", str(tmp_path / "ms"), "--env-dir", str(tmp_path / "e")]
    dated = mlflow_kserve(["check", "--model-uri", str(model), "--installer", "pip", "--resolve-as-of", "2025-06-01",
                           *dirs], env)  # fmt: skip
    assert dated.returncode == 2, dated.stderr
    assert "this pip cannot resolve as of a date" in last_error(dated) and "--installer uv" in last_error(dated)

    pip_resolves_as_of.cache_clear()
    try:
        with monkeypatch.context() as patched:
            patched.setenv("PYTHONPATH", str(old_pip))
            default = plan(model, installer="pip")
        assert default.resolution.mode == "now"
        assert any("cannot resolve as of the model's day" in warning for warning in default.warnings)
        pip_resolves_as_of.cache_clear()
        assert plan(model, installer="pip").resolution.mode == "model", "this environment's own pip (>= 26) can"
    finally:
        pip_resolves_as_of.cache_clear()
