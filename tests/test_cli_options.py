"""Options and their MLFLOW_KSERVE_* env vars (how the chart configures the init container), and exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow_kserve import cli
from mlflow_kserve.settings import Settings, default_model_name

MLFLOW_KSERVE = [str(Path(sys.executable).with_name("mlflow-kserve"))]


def _settings(env: dict[str, str]) -> Settings:
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        ctx = cli.init.make_context("init", [])
        return Settings.from_options(**ctx.params)


def test_every_init_option_reads_its_env_var() -> None:
    for param in cli.init.params:
        if param.name in ("help",):
            continue
        flag = max(param.opts, key=len)
        assert param.envvar == "MLFLOW_KSERVE_" + flag.lstrip("-").replace("-", "_").upper(), flag


def test_env_configures_settings_like_the_chart_does() -> None:
    settings = _settings(
        {
            "MLFLOW_KSERVE_MODEL_URI": "models:/Fraud_Model@champion",
            "MLFLOW_KSERVE_EXTRA_REQUIREMENT": "prometheus-client<1; python_version >= '3.8'\nrequests",
            "MLFLOW_KSERVE_CONSTRAINT": "numpy<2",
            "MLFLOW_KSERVE_EXTRA_INDEX_URL": "https://a.example/simple https://b.example/simple",
            "MLFLOW_KSERVE_ALLOW": "vcs url",
            "MLFLOW_KSERVE_SLIM": "true",
            "MLFLOW_KSERVE_CACHE_DIR": "/mnt/cache",
        }
    )
    assert settings.model_uri == "models:/Fraud_Model@champion"
    assert settings.name == "fraud-model"
    assert settings.extra_requirement == ("prometheus-client<1; python_version >= '3.8'", "requests")
    assert settings.constraint == ("numpy<2",)
    assert settings.extra_index_url == ("https://a.example/simple", "https://b.example/simple")
    assert settings.allow == frozenset({"vcs", "url"})
    assert settings.slim is True
    assert settings.cache_dir == Path("/mnt/cache")
    assert settings.model_dir == Path("/mnt/models/model")
    assert settings.venv_dir == Path("/mnt/env/venv")


@pytest.mark.parametrize(
    ("uri", "name"),
    [
        ("s3://bucket/models/iris/", "iris"),
        ("models:/credit@prod", "credit"),
        ("models:/credit/3", "credit"),
        ("runs:/abc123/model", "model"),
        ("/tmp/My_Model", "my-model"),
    ],
)
def test_default_model_name(uri: str, name: str) -> None:
    assert default_model_name(uri) == name


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["init"], "--model-uri"),
        (["init", "--model-uri", "s3://b/m", "--installer", "conda"], "--installer"),
        (["check", "--model-uri", "s3://b/m", "--python-policy", "lenient"], "--python-policy"),
        (["init", "--model-uri", "s3://b/m", "--name", "bad name!"], "--name"),
        (["run", "--model-uri", "s3://b/m", "--port", "0"], "--port"),
        (["init", "--model-uri", "s3://b/m", "--env-store", "ftp://host/envs"], "--env-store"),
        (["build", "--model-uri", "s3://b/m", "--env-store", "s3:///envs"], "names no bucket"),
        (["init", "--model-uri", "s3://b/m", "--env-store-publish"], "--env-store-publish without a store"),
    ],
)
def test_bad_flags_exit_2_with_a_one_line_cause(args: list[str], needle: str) -> None:
    env = {"PATH": "/usr/bin:/bin"}
    proc = subprocess.run([*MLFLOW_KSERVE, *args], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
