"""k8s/ and the Dockerfile: offline schema validation (scripts/k8s-validate.sh) and invariants.

The script renders the base (k8s/) and the inject overlay (k8s/inject/), validates them against
the Kubernetes schemas and lints the Dockerfile; the tests here read what it rendered and check
what the schemas cannot: that the sidecar is a native sidecar, that the probes point at the
ports, paths and gRPC service the sidecar really serves, that the drain fits in the pod's grace
period, that the Secret provides every ``env:`` value of the config, that the image is the one
the Dockerfile builds, and that base and overlay carry the same sidecar.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sidecar.config import build_config, parse_address
from sidecar.grpc_api.server import SERVICE_NAME

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "k8s-validate.sh"
SIDECAR = "anyllm-sidecar"
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")

Doc = dict[str, Any]


def run_script(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=300,  # the first run installs the tools with pip
        env={**os.environ, **env},
        check=False,
    )


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Doc]]:
    out = tmp_path_factory.mktemp("k8s-rendered")
    proc = run_script(K8S_OUT=str(out))
    assert proc.returncode == 0, f"scripts/k8s-validate.sh failed:\n{proc.stdout}{proc.stderr}"
    return {
        name: [d for d in yaml.safe_load_all((out / f"{name}.yaml").read_text()) if d]
        for name in ("k8s", "inject")
    }


def one(docs: list[Doc], kind: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec(docs: list[Doc]) -> Doc:
    spec: Doc = one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def sidecar(docs: list[Doc]) -> Doc:
    (container,) = [c for c in pod_spec(docs).get("initContainers", []) if c["name"] == SIDECAR]
    return container


def sidecar_config_text(docs: list[Doc]) -> str:
    text: str = one(docs, "ConfigMap")["data"]["config.yaml"]
    return text


def sidecar_config(docs: list[Doc]) -> Doc:
    data: Doc = yaml.safe_load(sidecar_config_text(docs))
    return data


def env_refs(value: Any) -> set[str]:
    """Every VAR of an ``env:VAR`` / ``os.environ/VAR`` value in the config."""
    if isinstance(value, dict):
        return set().union(*(env_refs(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(env_refs(v) for v in value))
    if isinstance(value, str):
        for prefix in ("env:", "os.environ/"):
            if value.startswith(prefix):
                return {value[len(prefix) :]}
    return set()


def port_number(container: Doc, port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return int(number)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    lines: list[str] = []
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1] + " " + line
        else:
            lines.append(line)
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instr in dockerfile_instructions():
        if instr[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instr)
    return stages


# ------------------------------------------------------------------------- validation itself


def test_manifests_and_dockerfile_validate(rendered: dict[str, list[Doc]]) -> None:
    assert {d["kind"] for d in rendered["k8s"]} == {
        "ConfigMap",
        "Secret",
        "Deployment",
        "NetworkPolicy",
    }
    assert {d["kind"] for d in rendered["inject"]} == {"ConfigMap", "Secret", "Deployment"}


def test_a_broken_manifest_fails_clearly(tmp_path: Path) -> None:
    broken = tmp_path / "k8s"
    shutil.copytree(ROOT / "k8s", broken)
    deployment = broken / "deployment.yaml"
    text = deployment.read_text()
    text = re.sub(
        r"^(\s+)restartPolicy: Always", r"\1restartPolicy: Alwayz", text, count=1, flags=re.M
    )
    text = text.replace("periodSeconds: 1\n", "periodSecond: 1\n", 1)
    deployment.write_text(text)
    proc = run_script(str(broken))
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "'periodSecond' was unexpected" in output  # kubernetes-validate --strict
    assert "not a native sidecar" in output  # the script's own check
    assert "FAIL" in output and "1 failed" in output


@pytest.mark.parametrize("overlay", ["k8s", "inject"])
def test_builtin_renderer_matches_kubectl(overlay: str) -> None:
    """Machines without kubectl render with the script's kustomize-lite: it must agree."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed: nothing to compare the built-in renderer with")
    directory = str(ROOT / "k8s") if overlay == "k8s" else str(ROOT / "k8s" / overlay)

    def render(how: str) -> list[Doc]:
        proc = run_script("--render", directory, K8S_RENDER=how)
        assert proc.returncode == 0, proc.stderr
        docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
        return sorted(docs, key=lambda d: (d["kind"], d["metadata"]["name"]))

    assert render("lite") == render("kubectl")


# ------------------------------------------------------------------------- the pod


@pytest.mark.parametrize("overlay", ["k8s", "inject"])
def test_sidecar_is_a_native_sidecar(rendered: dict[str, list[Doc]], overlay: str) -> None:
    pod = pod_spec(rendered[overlay])
    container = sidecar(rendered[overlay])
    assert container["restartPolicy"] == "Always"
    assert SIDECAR not in [c["name"] for c in pod["containers"]]
    assert container["args"][0] == "--config"


@pytest.mark.parametrize("overlay", ["k8s", "inject"])
def test_config_is_valid_and_mounted(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    container, pod = sidecar(docs), pod_spec(docs)
    configmap = one(docs, "ConfigMap")
    # The real loader accepts it (with the Secret's variables set).
    refs = env_refs(sidecar_config(docs))
    build_config(sidecar_config(docs), "configmap", {var: "x" for var in refs})
    # --config FILE is the ConfigMap's key in a read-only directory mount (no subPath: edits
    # of the ConfigMap reach the file).
    path = Path(container["args"][container["args"].index("--config") + 1])
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(path.parent)]
    assert mount.get("readOnly") is True and "subPath" not in mount
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert path.name in configmap["data"]


@pytest.mark.parametrize("overlay", ["k8s", "inject"])
def test_probes_match_what_the_sidecar_serves(rendered: dict[str, list[Doc]], overlay: str) -> None:
    container = sidecar(rendered[overlay])
    server = sidecar_config(rendered[overlay])["server"]
    http_host, http_port = parse_address(server["http"], "server.http")
    grpc_host, grpc_port = parse_address(server["grpc"], "server.grpc")
    # kubelet probes connect to the pod IP: a loopback-only listener would never be probed.
    assert http_host not in LOOPBACK and grpc_host not in LOOPBACK
    assert {p["containerPort"] for p in container["ports"]} == {http_port, grpc_port}

    startup, ready, live = (
        container[p] for p in ("startupProbe", "readinessProbe", "livenessProbe")
    )
    assert startup["httpGet"]["path"] == "/readyz"
    assert port_number(container, startup["httpGet"]["port"]) == http_port
    assert ready["grpc"] == {"port": grpc_port, "service": SERVICE_NAME}
    assert live["httpGet"]["path"] == "/healthz"
    assert port_number(container, live["httpGet"]["port"]) == http_port
    # A drain (listeners closed) must not look like a dead process.
    assert live["periodSeconds"] * live["failureThreshold"] > server["grace"]


@pytest.mark.parametrize("overlay", ["k8s", "inject"])
def test_grace_period_covers_the_drain(rendered: dict[str, list[Doc]], overlay: str) -> None:
    grace = sidecar_config(rendered[overlay])["server"]["grace"]
    assert pod_spec(rendered[overlay])["terminationGracePeriodSeconds"] >= grace + 5


@pytest.mark.parametrize("overlay", ["k8s", "inject"])
def test_secret_provides_every_env_reference(rendered: dict[str, list[Doc]], overlay: str) -> None:
    docs = rendered[overlay]
    secret = one(docs, "Secret")
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    from_secret = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in sidecar(docs).get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert env_refs(sidecar_config(docs)) == set(from_secret)
    for ref in from_secret.values():
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in keys


@pytest.mark.parametrize("overlay", ["k8s", "inject"])
def test_security_context_is_locked_down(rendered: dict[str, list[Doc]], overlay: str) -> None:
    pod = pod_spec(rendered[overlay])
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        ctx = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
        where = container["name"]
        assert ctx.get("runAsNonRoot") is True, where
        assert ctx.get("readOnlyRootFilesystem") is True, where
        assert ctx.get("allowPrivilegeEscalation") is False, where
        assert ctx.get("capabilities", {}).get("drop") == ["ALL"], where
        assert not ctx.get("capabilities", {}).get("add"), where
        assert not ctx.get("privileged"), where
        assert ctx.get("seccompProfile") == {"type": "RuntimeDefault"}, where
    ctx = sidecar(rendered[overlay])["securityContext"]
    assert ctx["runAsUser"] == 10001 and ctx["runAsGroup"] == 10001
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize("overlay", ["k8s", "inject"])
def test_resources_are_set(rendered: dict[str, list[Doc]], overlay: str) -> None:
    pod = pod_spec(rendered[overlay])
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        resources = container.get("resources", {})
        assert {"cpu", "memory"} <= set(resources.get("requests", {})), container["name"]
        assert "memory" in resources.get("limits", {}), container["name"]


def test_base_and_inject_carry_the_same_sidecar(rendered: dict[str, list[Doc]]) -> None:
    base, inject = rendered["k8s"], rendered["inject"]
    assert sidecar(base) == sidecar(inject)
    names = {m["name"] for m in sidecar(base)["volumeMounts"]}
    volumes = [[v for v in pod_spec(d)["volumes"] if v["name"] in names] for d in (base, inject)]
    assert volumes[0] == volumes[1]
    assert (
        pod_spec(base)["terminationGracePeriodSeconds"]
        == (pod_spec(inject)["terminationGracePeriodSeconds"])
    )
    assert one(base, "ConfigMap") == one(inject, "ConfigMap")
    # The overlay keeps the existing Deployment's own container.
    assert [c["name"] for c in pod_spec(inject)["containers"]] == ["my-service"]


def test_app_calls_the_sidecar_on_loopback(rendered: dict[str, list[Doc]]) -> None:
    server = sidecar_config(rendered["k8s"])["server"]
    _, http_port = parse_address(server["http"], "server.http")
    _, grpc_port = parse_address(server["grpc"], "server.grpc")
    (app,) = pod_spec(rendered["k8s"])["containers"]
    env = {e["name"]: e.get("value") for e in app["env"]}
    assert env["ANTHROPIC_BASE_URL"] == f"http://127.0.0.1:{http_port}"
    assert env["ANYLLM_GRPC_ADDR"] == f"127.0.0.1:{grpc_port}"


def test_network_policy_selects_the_pod(rendered: dict[str, list[Doc]]) -> None:
    policy = one(rendered["k8s"], "NetworkPolicy")["spec"]
    labels = one(rendered["k8s"], "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["policyTypes"] == ["Ingress"] and policy["ingress"] == []


# ------------------------------------------------------------------------- the image


def test_image_is_the_one_the_dockerfile_builds(rendered: dict[str, list[Doc]]) -> None:
    text = (ROOT / "Dockerfile").read_text()
    match = re.search(r"^# Image: (\S+)$", text, re.MULTILINE)
    assert match, "the Dockerfile documents its tag on a `# Image: NAME:TAG` line"
    image = match.group(1)
    assert f"docker build -t {image} ." in text
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert image.endswith(f":{version}")
    assert f'org.opencontainers.image.version="{version}"' in text
    for overlay in ("k8s", "inject"):
        assert sidecar(rendered[overlay])["image"] == image


def test_dockerfile_structure() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage build"
    builder, final = stages[0], stages[-1]
    builder_name = builder[0][1].split()[-1]
    assert builder[0][1].split()[-2].upper() == "AS"
    assert any(i == "RUN" and "pip install ." in a for i, a in builder)

    assert re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim|python:3\.11[.\d]*-slim\S*", final[0][1])
    # The final stage adds nothing but the builder's venv: no RUN (so no apt-get, no compiler).
    assert [i for i, _ in final if i == "RUN"] == []
    copies = [a for i, a in final if i in ("COPY", "ADD")]
    assert copies == [f"--from={builder_name} /opt/venv /opt/venv"]
    users = [a for i, a in final if i == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and int(users[-1].split(":")[0]) >= 10000
    assert ("ENTRYPOINT", '["anyllm-sidecar"]') in final
    exposed = {p for i, a in final if i == "EXPOSE" for p in a.split()}
    assert exposed == {"8080", "50051"}
    assert not [i for i, _ in dockerfile_instructions() if i == "HEALTHCHECK"]
    assert not re.search(r"\b(gcc|g\+\+|build-essential|make)\b", " ".join(a for _, a in final))


def test_dockerignore_admits_what_the_build_copies() -> None:
    rules = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert rules[0] == "*", "an allow-list: nothing but the package gets into the build context"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    copied = set()
    for instr, args in dockerfile_stages()[0]:
        if instr == "COPY" and "--from" not in args:
            copied.update(args.split()[:-1])
    assert copied == allowed


# ------------------------------------------------------------------------- the probes, live


@pytest.mark.integration
def test_probes_answer_on_the_configmap_config(
    rendered: dict[str, list[Doc]], sidecar_factory: Any
) -> None:
    """The ConfigMap's config starts the real sidecar, and each probe gets the answer it wants."""
    docs = rendered["k8s"]
    env = {var: "placeholder" for var in env_refs(sidecar_config(docs))}
    proc = sidecar_factory(
        None,
        config_text=sidecar_config_text(docs),
        args=["--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"],
        env=env,
    )
    container = sidecar(docs)
    for probe in ("startupProbe", "livenessProbe"):
        path = container[probe]["httpGet"]["path"]
        assert httpx.get(proc.http_url + path, timeout=5).status_code == 200, probe
    service = container["readinessProbe"]["grpc"]["service"]
    with grpc.insecure_channel(proc.grpc_target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
