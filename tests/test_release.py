"""`make release` against a real OCI registry (Debian's docker-registry on 127.0.0.1, plain HTTP): the images of
every Python minor this machine can build and the chart are pushed under one version; the chart pulled back
renders exactly those images (helm 3 and helm 4); the SBOMs name the packages each image holds; the container
e2e passes on images pulled from the registry into an empty image store. Bad input fails before any build.

One release run serves the module (~4 min with warm base images and layers, ~15 min from nothing: two
debootstraps and two builds of each image).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from support.services import free_port, oci_registry

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools" / "bin"
VERSION = "0.1.0-e2e.1"  # not the chart's own appVersion: the tags the chart renders must come from the release
MINORS = ("3.10", "3.11", "3.13")  # here: 3.11 (bookworm) and 3.13 (trixie) build, 3.10 has no base image
INDEX_TYPES = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json"


@dataclass(frozen=True)
class Release:
    host: str  # 127.0.0.1:PORT
    registry: str  # host/mlflow-kserve
    out: Path  # SBOMs, chart .tgz, digests
    log: str
    built: tuple[str, ...]  # Python minors whose images were pushed
    skipped: dict[str, str]  # "3.10" or "3.11 linux/arm64" -> reason

    def get(self, path: str, accept: str = "application/json") -> dict:
        request = urllib.request.Request(f"http://{self.host}/v2/{path}", headers={"Accept": accept})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    work = tmp_path_factory.mktemp("release")
    with oci_registry(work) as host:
        registry, out = f"{host}/mlflow-kserve", work / "out"
        proc = subprocess.run(
            ["make", "release", f"REGISTRY={registry}", f"VERSION={VERSION}", f"PYTHON_VERSIONS={' '.join(MINORS)}"],
            cwd=ROOT, env={**os.environ, "RELEASE_OUT": str(out)}, capture_output=True, text=True, timeout=3600,
        )  # fmt: skip
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-4000:]
        print("\n".join(line for line in log.splitlines() if line.startswith(("built", "SKIPPED", "released"))))
        built = tuple(re.findall(rf"^built {re.escape(registry)}/mlflow-kserve-init:{VERSION}-py(3\.\d+) ", log, re.M))
        skipped = dict(re.findall(r"^SKIPPED python (3\.\d+(?: linux/\w+)?): (.+)$", log, re.M))
        yield Release(host, registry, out, log, built, skipped)


@pytest.mark.e2e
@pytest.mark.timeout(3600)
def test_every_minor_is_pushed_or_skipped_with_its_reason(release: Release) -> None:
    assert "3.11" in release.built, release.log[-3000:]
    for minor in MINORS:
        assert (minor in release.built) != (minor in release.skipped), (minor, release.log[-3000:])
    assert all(reason.strip() for reason in release.skipped.values())
    arm64_built = f"{VERSION}-py3.11 (linux/arm64)" in release.log
    assert arm64_built != ("3.11 linux/arm64" in release.skipped)  # built where the engine can, else the reason
    tags = {f"{VERSION}-py{minor}" for minor in release.built}
    for image in ("mlflow-kserve-init", "mlflow-kserve-server"):
        assert set(release.get(f"mlflow-kserve/{image}/tags/list")["tags"]) == tags
        for tag in tags:  # one manifest list per tag, holding at least the linux/amd64 image
            index = release.get(f"mlflow-kserve/{image}/manifests/{tag}", INDEX_TYPES)
            platforms = {f"{m['platform']['os']}/{m['platform']['architecture']}" for m in index["manifests"]}
            assert "linux/amd64" in platforms, index
            amd64 = next(m for m in index["manifests"] if m["platform"]["architecture"] == "amd64")
            manifest = release.get(f"mlflow-kserve/{image}/manifests/{amd64['digest']}", amd64["mediaType"])
            config = release.get(f"mlflow-kserve/{image}/blobs/{manifest['config']['digest']}")
            assert config["config"]["Labels"]["org.opencontainers.image.version"] == VERSION
    assert release.get("mlflow-kserve/charts/mlflow-kserve/tags/list")["tags"] == [VERSION]
    digests = (release.out / "digests.txt").read_text().split()
    assert len(digests) == 2 * len(tags) + 1 and all("@sha256:" in line for line in digests)
    assert "not signed: " in release.log  # no cosign here: says so instead of pretending


@pytest.mark.e2e
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("helm", ["helm", "helm4"])
def test_the_published_chart_renders_the_published_images(release: Release, helm: str) -> None:
    chart = f"oci://{release.registry}/charts/mlflow-kserve"
    flags = ["--version", VERSION, "--plain-http"]
    meta = yaml.safe_load(_run(TOOLS / helm, "show", "chart", chart, *flags))
    assert (meta["version"], meta["appVersion"]) == (VERSION, VERSION)
    rendered = _run(TOOLS / helm, "template", "fraud", chart, *flags, "--set", "model.uri=s3://models/fraud")
    images = {line.split()[1] for line in rendered.splitlines() if line.strip().startswith("image:")}
    assert images == {f"{release.registry}/mlflow-kserve-{image}:{VERSION}-py3.11" for image in ("init", "server")}


@pytest.mark.e2e
@pytest.mark.timeout(3600)
def test_the_sboms_name_each_images_python_packages(release: Release) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for minor in release.built:
        tag = f"{VERSION}-py{minor}"
        init = json.loads((release.out / f"mlflow-kserve-init-{tag}.amd64.cdx.json").read_text())
        assert init["bomFormat"] == "CycloneDX"
        assert init["metadata"]["component"]["name"] == "mlflow-kserve"
        names = {canonicalize_name(c["name"]): c["version"] for c in init["components"]}
        wanted = [Requirement(line) for line in project["dependencies"]]
        for req in wanted:
            if req.marker is None or req.marker.evaluate({"python_version": minor}):
                assert canonicalize_name(req.name) in names, (minor, req.name)
                assert req.specifier.contains(names[canonicalize_name(req.name)], prereleases=True), (minor, req)
        server = json.loads((release.out / f"mlflow-kserve-server-{tag}.amd64.cdx.json").read_text())
        assert server["bomFormat"] == "CycloneDX"
        held = {canonicalize_name(c["name"]) for c in server.get("components", [])}
        assert not held & {"mlserver", "mlflow", "mlflow-skinny"}, held  # they come from the model's venv


@pytest.mark.e2e
@pytest.mark.timeout(3600)
def test_the_e2e_passes_on_images_pulled_from_the_registry(release: Release, tmp_path: Path) -> None:
    _run(TOOLS / "helm", "pull", f"oci://{release.registry}/charts/mlflow-kserve", "--version", VERSION,
         "--plain-http", "-d", str(tmp_path))  # fmt: skip
    store = tmp_path / "store"  # an empty image store: the images can only come from the registry
    store.mkdir()
    conf = store / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{store}/graph"\nrunroot = "{store}/run"\n')
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf), "CONTAINERS_CONF": str(ROOT / "ci" / "containers.conf")}
    chart = tmp_path / f"mlflow-kserve-{VERSION}.tgz"  # its default images: the release's
    # its own host port: the container e2e (ci/test.sh's other lane) may be serving on the default one right now
    e2e = {**env, "E2E_PULL": "1", "E2E_CHART": str(chart), "E2E_SCENARIOS": "1", "E2E_HOST_PORT": str(free_port())}
    try:
        proc = subprocess.run(["bash", "ci/e2e"], cwd=ROOT, env=e2e, capture_output=True, text=True, timeout=1800)
    finally:
        subprocess.run(["podman", "system", "reset", "-f"], env=env, capture_output=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    for image in ("init", "server"):
        assert f"pulled {release.registry}/mlflow-kserve-{image}:{VERSION}-py3.11" in out
    assert not re.search(r"^built \S+ in \d+s", out, re.M), "no image was built: both came from the registry"
    assert re.search(r"^1 passed, 0 failed$", out, re.M), out[-4000:]


@pytest.mark.parametrize(
    ("registry", "version", "python_versions", "message"),
    [
        ("https://ghcr.io/mlflow-kserve", "0.2.0", "3.11", "has a scheme"),
        ("ghcr.io/MLflow-KServe", "0.2.0", "3.11", "has upper case"),
        ("", "0.2.0", "3.11", "is not a registry path"),
        ("ghcr.io/mlflow-kserve", "v0.2.0", "3.11", "no leading v"),
        ("ghcr.io/mlflow-kserve", "0.2", "3.11", "is not a SemVer version"),
        ("ghcr.io/mlflow-kserve", "0.2.0", "3.11 py3.12", "'py3.12' is not a Python minor"),
    ],
)
def test_bad_input_fails_before_anything_is_built(registry: str, version: str, python_versions: str, message: str):
    env = {**os.environ, "REGISTRY": registry, "VERSION": version, "PYTHON_VERSIONS": python_versions}
    proc = subprocess.run(["bash", "ci/release.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert proc.stdout == ""


def _run(*cmd: object) -> str:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout
