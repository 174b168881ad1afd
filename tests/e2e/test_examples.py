"""The user-facing examples under docker/ stay valid as waitfor's config keys evolve.

No container runtime needed: the configs are checked with `waitfor validate`, the compose
file with `docker-compose config`, the Kubernetes manifests for consistency (the probe
port and paths, the init container's command). The image itself is built and run by
test_container.py.
"""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def _k8s(name):
    return list(yaml.safe_load_all((DOCKER / "k8s" / name).read_text()))


def _configmap_config():
    cm = next(d for d in _k8s("configmap.yaml") if d["kind"] == "ConfigMap")
    return cm["data"]["waitfor.yaml"]


def _validate(text, tmp_path):
    """`waitfor validate` of a config, its password_file pointed at a real file."""
    if importlib.util.find_spec("psycopg") is None or importlib.util.find_spec("redis") is None:
        pytest.skip("the example configs need waitfor[postgres,redis] installed")
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    for path in ("/run/secrets/postgres_password", "/run/secrets/postgres/password"):
        text = text.replace(path, str(secret))
    cfg = tmp_path / "waitfor.yaml"
    cfg.write_text(text)
    p = subprocess.run([sys.executable, "-m", "waitfor", "validate", "-c", str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "s3cret" not in p.stdout
    return p.stdout


def test_the_image_config_validates(tmp_path):
    out = _validate((DOCKER / "waitfor.yaml").read_text(), tmp_path)
    assert "kind: postgres" in out and "kind: redis" in out and "kind: http" in out


def test_the_k8s_config_validates(tmp_path):
    out = _validate(_configmap_config(), tmp_path)
    assert "probe_addr: 0.0.0.0:8081" in out
    assert "watch:" in out


def test_the_k8s_manifests_match_the_image_and_the_config():
    dep = next(d for d in _k8s("deployment.yaml") if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    init, = pod["initContainers"]
    assert init["command"][:2] == ["waitfor", "wait"]
    app, = pod["containers"]
    assert "command" not in app, "the app container keeps the image's ENTRYPOINT (waitfor run)"
    assert app["args"]
    ports = {p["name"]: p["containerPort"] for p in app["ports"]}
    assert ports["probes"] == 8081 and '":8081"' in _configmap_config()
    for probe, path in (("startupProbe", "/startupz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        assert app[probe]["httpGet"] == {"path": path, "port": "probes"}, probe
    volumes = {v["name"]: v for v in pod["volumes"]}
    for c in (init, app):
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert mounts["/etc/waitfor.yaml"]["subPath"] == "waitfor.yaml"  # where ENTRYPOINT looks
        if c["securityContext"].get("readOnlyRootFilesystem"):
            # waitfor's state file (and tempfile) need a writable /tmp
            assert "emptyDir" in volumes[mounts["/tmp"]["name"]], c["name"]
    # the app must be stopped by waitfor (stop_timeout) before the kubelet's SIGKILL
    assert "stop_timeout: 20s" in _configmap_config() and pod["terminationGracePeriodSeconds"] > 20


def test_the_dockerfile_runs_waitfor_as_pid1_with_a_healthcheck():
    text = (DOCKER / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["waitfor", "run", "-c", "/etc/waitfor.yaml", "--"]' in text
    assert 'CMD ["waitfor", "health"]' in text
    assert "ENV WAITFOR_CONFIG=/etc/waitfor.yaml" in text


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_the_compose_example_is_valid():
    p = subprocess.run(["docker-compose", "-f", str(DOCKER / "compose.yaml"), "config"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    config = yaml.safe_load(p.stdout)
    app = config["services"]["app"]
    assert app["depends_on"] == {"db": {"condition": "service_healthy"}, "cache": {"condition": "service_healthy"}}
    assert config["services"]["db"]["image"].startswith("postgres:")
    assert config["services"]["cache"]["image"].startswith("redis:")
    for svc in ("app", "db", "cache"):
        assert config["services"][svc]["healthcheck"]["test"], svc
