"""The user-facing examples under docker/ stay valid as waitfor's config keys evolve.

No container runtime needed: the configs are checked with `waitfor validate`, the compose
file with `docker-compose config`, the Kubernetes manifests for consistency (the probe
port and paths, the init container's command). The image itself is built and run by
test_container.py.
"""

import importlib.util
import json
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
    """`waitfor validate` of a config, its password_file pointed at a real file and its
    template sources at docker/templates (the image copies them to /etc/waitfor/templates)."""
    if importlib.util.find_spec("psycopg") is None or importlib.util.find_spec("redis") is None:
        pytest.skip("the example configs need waitfor[postgres,redis] installed")
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    for path in ("/run/secrets/postgres_password", "/run/secrets/postgres/password"):
        text = text.replace(path, str(secret))
    text = text.replace("/etc/waitfor/templates/", f"{DOCKER}/templates/")
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


MANIFESTS = ("deployment.yaml", "sidecar.yaml", "init-container.yaml")
# Pod Security Standards (kubernetes.io/docs/concepts/security/pod-security-standards),
# "restricted" (which includes "baseline"): the volume types it allows.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


def test_every_k8s_manifest_is_listed_here():
    assert sorted(p.name for p in (DOCKER / "k8s").glob("*.yaml")) == sorted(MANIFESTS + ("configmap.yaml",))


@pytest.mark.parametrize("manifest", MANIFESTS)
def test_the_k8s_pod_meets_pod_security_restricted(manifest):
    """Pod Security Standards, "restricted" (and so "baseline"), for every container, the
    init containers and native sidecars included: non-root, no privilege escalation, every
    capability dropped, the runtime's seccomp profile, no host namespaces, ports or paths,
    only the allowed volume types; plus a read-only root (ours, not the standard's)."""
    dep = next(d for d in _k8s(manifest) if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] != 0
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), manifest
    assert "sysctls" not in psc and "windowsOptions" not in psc
    for v in pod.get("volumes", []):
        kinds = set(v) - {"name"}
        assert kinds <= RESTRICTED_VOLUMES, (manifest, v)
    for c in pod.get("initContainers", []) + pod["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False, c["name"]
        assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
        assert sc["readOnlyRootFilesystem"] is True, c["name"]
        assert not sc.get("privileged") and "add" not in sc["capabilities"], c["name"]
        assert sc.get("runAsUser", 1) != 0 and sc.get("runAsNonRoot", True) is True, c["name"]
        assert sc.get("seccompProfile", {"type": "RuntimeDefault"})["type"] in ("RuntimeDefault", "Localhost")
        assert "procMount" not in sc and "seLinuxOptions" not in sc, c["name"]
        assert not any("hostPort" in p for p in c.get("ports", [])), c["name"]


def _sidecar_pod():
    dep = next(d for d in _k8s("sidecar.yaml") if d["kind"] == "Deployment")
    return dep["spec"]["template"]["spec"]


def _config_of(manifest):
    cm = next(d for d in _k8s(manifest) if d["kind"] == "ConfigMap")
    return cm["data"]["waitfor.yaml"]


def _entrypoint(dockerfile):
    line, = [x for x in (DOCKER / dockerfile).read_text().splitlines() if x.startswith("ENTRYPOINT ")]
    return json.loads(line.split(" ", 1)[1])


def test_the_sidecar_manifest_is_a_native_sidecar_gating_the_app(tmp_path):
    pod = _sidecar_pod()
    gate, = pod["initContainers"]
    # A native sidecar (Kubernetes 1.29+): an init container that keeps running.
    assert gate["restartPolicy"] == "Always"
    assert _entrypoint("Dockerfile.sidecar") == ["waitfor", "sidecar"] and "command" not in gate
    ports = {p["name"]: p["containerPort"] for p in gate["ports"]}
    config = _config_of("sidecar.yaml")
    assert f'probe_addr: ":{ports["gate"]}"' in config
    probes = {"startupProbe": "/startupz", "readinessProbe": "/readyz", "livenessProbe": "/livez"}
    for probe, path in probes.items():
        assert gate[probe]["httpGet"] == {"path": path, "port": "gate"}, probe
    # the startupProbe allows the whole wait: the sidecar exits 124 first, and says why
    start = gate["startupProbe"]
    assert start["periodSeconds"] * start["failureThreshold"] >= 300 and "timeout: 5m" in config
    # the app's image knows nothing of waitfor
    app, = pod["containers"]
    assert "waitfor" not in json.dumps(app)
    # the sidecar's argv is one `waitfor sidecar` accepts (a bad flag would be exit 2)
    out = _validate(config, tmp_path)
    assert "probe_addr: 0.0.0.0:9090" in out
    from waitfor.args import parse

    assert parse(["sidecar", *gate["args"]]).mode == "sidecar"  # a flag it does not take: UsageError
    mounts = {m["mountPath"]: m["name"] for m in gate["volumeMounts"]}
    assert gate["args"] == ["-c", "/etc/waitfor/waitfor.yaml"] and mounts["/etc/waitfor"] == "waitfor-config"
    assert {e["name"]: e["value"] for e in gate["env"]}["WAITFOR_CONFIG"] == "/etc/waitfor/waitfor.yaml"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]], "a writable /tmp for the state file on a read-only root"


def test_the_init_container_manifest_waits_with_waitfor_wait(tmp_path):
    dep = next(d for d in _k8s("init-container.yaml") if d["kind"] == "Deployment")
    pod = dep["spec"]["template"]["spec"]
    init, = pod["initContainers"]
    assert init["command"] == ["waitfor", "wait", "-c", "/etc/waitfor/waitfor.yaml"]
    assert "restartPolicy" not in init, "a classic init container: runs to its end first"
    app, = pod["containers"]
    assert "waitfor" not in json.dumps(app)
    out = _validate(_config_of("init-container.yaml"), tmp_path)
    assert "kind: postgres" in out and "kind: redis" in out
    # the Secret it mounts is the one sidecar.yaml defines
    secret = next(d for d in _k8s("sidecar.yaml") if d["kind"] == "Secret")
    assert {v["name"]: v for v in pod["volumes"]}["postgres-password"]["secret"]["secretName"] == \
        secret["metadata"]["name"]


def test_the_sidecar_image_runs_the_sidecar_as_a_non_root_user():
    text = (DOCKER / "Dockerfile.sidecar").read_text()
    assert "COPY --from=waitfor /opt/waitfor /opt/waitfor" in text
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root"), users
    assert 'CMD ["waitfor", "health"]' in text
    # the start period covers the default 60s wait (compose gives up on "unhealthy")
    assert "--start-period=60s" in text


def test_the_sidecar_config_validates(tmp_path):
    out = _validate((DOCKER / "sidecar.yaml").read_text(), tmp_path)
    assert "kind: postgres" in out and "kind: redis" in out and "watch:" in out


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_the_compose_sidecar_example_is_valid():
    p = subprocess.run(["docker-compose", "-f", str(DOCKER / "compose.sidecar.yaml"), "config"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    config = yaml.safe_load(p.stdout)
    gate = config["services"]["waitfor"]
    assert gate["entrypoint"] == ["waitfor", "sidecar"]
    assert gate["healthcheck"]["test"] == ["CMD", "waitfor", "health"]
    assert config["services"]["app"]["depends_on"] == {"waitfor": {"condition": "service_healthy"}}
    for svc in ("db", "cache"):
        assert "healthcheck" not in config["services"][svc], "the gate checks them"
    # the wait's timeout lies within the healthcheck's start period
    assert "timeout: 2m" in (DOCKER / "sidecar.yaml").read_text()
    assert gate["healthcheck"]["start_period"] in ("2m", "2m0s", "120s")


def test_the_images_run_as_a_non_root_user_and_never_resolve_waitfor_on_an_index():
    bundle = (DOCKER / "Dockerfile").read_text()
    assert "FROM scratch AS waitfor" in bundle
    assert "COPY --from=waitfor /opt/waitfor /opt/waitfor" in bundle
    pip = (DOCKER / "Dockerfile.pip").read_text()
    for text in (bundle, pip):
        users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
        assert users and users[-1].split(":")[0] not in ("0", "root"), users
    # every `pip install` of waitfor is --no-index (the wheel built from this checkout)
    installs = [line for line in pip.replace("\\\n", " ").splitlines()
                if "pip install" in line and not line.startswith("#")]
    assert installs and all("--no-index" in line for line in installs), installs


def test_the_build_context_leaves_out_history_builds_and_secrets():
    ignored = (DOCKER.parent / ".dockerignore").read_text().split()
    for entry in (".git", "dist/", "build/", ".venv", "**/*.pem", "**/*.key"):
        assert entry in ignored, entry
    assert not any(e in ignored for e in ("waitfor/", "**/*secret*")), "would drop waitfor/secrets.py"
