"""Kubernetes manifests, offline: render with kustomize, validate strictly against the 1.32
schemas, and check the policies an SRE would review."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from evolver.bus import topology

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.32.0"
TARGETS = {"base": ROOT / "k8s" / "base", "dev": ROOT / "k8s" / "overlays" / "dev", "gpu": ROOT / "k8s" / "overlays" / "gpu",
           "tls": ROOT / "k8s" / "overlays" / "tls"}
SERVICE_USERS = {"explorer": "explorer", "task-gen": "task_gen", "memory": "memory", "attributor": "attributor",
                 "trainer": "trainer"}
WORKLOADS = ("Deployment", "StatefulSet", "Job")


@pytest.fixture(scope="module", params=list(TARGETS))
def rendered(request):
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with built-in kustomize) is needed to render k8s/"
    out = subprocess.run([kubectl, "kustomize", str(TARGETS[request.param])], capture_output=True, text=True, check=True)
    return request.param, [d for d in yaml.safe_load_all(out.stdout) if d]


def pods(docs):
    for d in docs:
        if d["kind"] in WORKLOADS:
            yield d, d["spec"]["template"]


def test_every_object_validates_strictly(rendered):
    import kubernetes_validate
    _, docs = rendered
    checked = 0
    for d in docs:
        if d["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: no bundled schema (checked by the KEDA tests below)
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)
        checked += 1
    assert checked >= 40


def test_deployments_have_probes_resources_and_run_non_root(rendered):
    target, docs = rendered
    for d, tpl in pods(docs):
        spec = tpl["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, d["metadata"]["name"]
        for c in spec["containers"]:
            name = f"{d['kind']}/{d['metadata']['name']}"
            assert c["resources"]["requests"] and c["resources"]["limits"], name
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"], name
            assert sc["readOnlyRootFilesystem"] is True, name
            if d["kind"] != "Job":
                assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(c), name
            if d["kind"] == "Deployment" and tpl["metadata"]["labels"].get("app.kubernetes.io/component") == "service":
                # The API port, or with TLS on it the plaintext health port (grpc.health_port).
                assert c["readinessProbe"]["grpc"]["port"] == (50052 if target == "tls" else 50051), name


def test_termination_grace_covers_the_shutdown_sequence(rendered):
    _, docs = rendered
    cfg = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "evolver-config")
                         ["data"]["config.yaml"])
    needed = cfg["grpc"]["shutdown_notice_s"] + cfg["bus"]["drain_timeout_s"] + cfg["grpc"]["shutdown_grace_s"]
    for d, tpl in pods(docs):
        if tpl["metadata"]["labels"].get("app.kubernetes.io/component") == "service":
            assert tpl["spec"]["terminationGracePeriodSeconds"] > needed, d["metadata"]["name"]


def _selects(selector: dict, labels: dict) -> bool:
    if not selector:
        return True
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        if e["operator"] == "In" and labels.get(e["key"]) not in e["values"]:
            return False
    return True


def test_default_deny_and_every_workload_has_its_own_network_policy(rendered):
    _, docs = rendered
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    deny = [p for p in policies if p["spec"]["podSelector"] == {} and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress") and not p["spec"].get("egress")]
    assert deny, "a default-deny policy"
    specific = [p for p in policies if p["spec"]["podSelector"]]
    for d, tpl in pods(docs):
        labels = tpl["metadata"]["labels"]
        assert any(_selects(p["spec"]["podSelector"], labels) for p in specific), d["metadata"]["name"]


def test_every_multi_replica_deployment_has_a_pdb_and_anti_affinity(rendered):
    _, docs = rendered
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    for d, tpl in pods(docs):
        if d["kind"] == "Deployment" and d["spec"].get("replicas", 1) > 1:
            assert any(_selects(p["spec"]["selector"], tpl["metadata"]["labels"]) for p in pdbs), d["metadata"]["name"]
            assert tpl["spec"]["affinity"]["podAntiAffinity"], d["metadata"]["name"]


def test_keda_consumers_are_the_topologys(rendered):
    _, docs = rendered
    scaled = [d for d in docs if d["kind"] == "ScaledObject"]
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled} == {"explorer", "memory", "attributor"}
    for s in scaled:
        target = s["spec"]["scaleTargetRef"]["name"].replace("-", "_")
        for t in s["spec"]["triggers"]:
            spec = topology.consumer(t["metadata"]["consumer"])  # KeyError = a name KEDA would not find
            assert spec.stream.name == t["metadata"]["stream"]
            assert spec.service == target
            assert s["spec"]["maxReplicaCount"] <= spec.max_ack_pending


def test_only_trainer_and_inference_request_gpus(rendered):
    name, docs = rendered
    gpu_users = set()
    for d, tpl in pods(docs):
        for c in tpl["spec"]["containers"]:
            res = c["resources"]
            if "nvidia.com/gpu" in res.get("limits", {}) or "nvidia.com/gpu" in res.get("requests", {}):
                assert res["limits"]["nvidia.com/gpu"] == res["requests"]["nvidia.com/gpu"]
                assert tpl["spec"].get("tolerations") and tpl["spec"].get("nodeSelector")
                gpu_users.add(d["metadata"]["name"])
    assert gpu_users == ({"trainer", "vllm"} if name == "gpu" else set())


def test_nats_has_one_user_per_service_with_the_topologys_permissions_and_no_default_credentials(rendered):
    from evolver.bus.permissions import nats_authorization
    _, docs = rendered
    conf = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "nats-config")["data"]["nats.conf"]
    # The manifest carries exactly what the topology derives (regenerate: python -m evolver.bus.permissions).
    assert nats_authorization() in conf
    # No credentials ship with the manifests: every secret is the operator's.
    assert not [d for d in docs if d["kind"] == "Secret"]
    nats = next(d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "nats")
    env = {e["name"]: e for e in nats["spec"]["template"]["spec"]["containers"][0]["env"]}
    for user in [*SERVICE_USERS.values(), "admin"]:
        ref = env[f"NATS_{user.upper()}_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "nats-users", "key": user}
    for d, tpl in pods(docs):
        name = d["metadata"]["name"]
        if name not in SERVICE_USERS:
            continue
        env = {e["name"]: e for e in tpl["spec"]["containers"][0]["env"]}
        assert env["EVOLVER_NATS__USER"]["value"] == SERVICE_USERS[name], name
        assert env["EVOLVER_NATS__PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "nats-users",
                                                                              "key": SERVICE_USERS[name]}


def test_every_grpc_server_and_client_has_the_token(rendered):
    _, docs = rendered
    cfg = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap"
                              and d["metadata"]["name"] == "evolver-config")["data"]["config.yaml"])
    token_file = cfg["grpc"]["auth_token_file"]
    assert token_file.startswith("/etc/evolver-auth/")
    for d, tpl in pods(docs):
        if d["metadata"]["name"] in ("nats", "qdrant", "otel-collector", "jaeger", "vllm"):
            continue
        c = tpl["spec"]["containers"][0]
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in tpl["spec"]["volumes"]}
        assert mounts.get("/etc/evolver-auth") == "grpc-token", d["metadata"]["name"]
        assert volumes["grpc-token"]["secret"]["secretName"] == "evolver-grpc-token"
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        if "EVOLVER_CONFIG" not in env:  # processes without the config name the token directly
            assert env.get("EVOLVER_GRPC__AUTH_TOKEN_FILE") == token_file, d["metadata"]["name"]


def test_tls_overlay_switches_nats_and_grpc_to_tls_with_plaintext_health_for_probes(rendered, tmp_path):
    name, docs = rendered
    grpc_servers = [(d, tpl) for d, tpl in pods(docs) if d["kind"] == "Deployment"
                    and tpl["metadata"]["labels"].get("app.kubernetes.io/component") in ("service", "environment")]
    assert len(grpc_servers) == 6
    for d, tpl in grpc_servers:
        c = tpl["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in c["env"]}
        probes = {p: c[p]["grpc"]["port"] for p in ("startupProbe", "readinessProbe", "livenessProbe")}
        if name == "tls":
            assert env["EVOLVER_NATS__URL"].startswith("tls://") and env["EVOLVER_GRPC__TLS_CERT_FILE"]
            assert env["EVOLVER_GRPC__HEALTH_PORT"] == "50052" and set(probes.values()) == {50052}
        else:
            assert "EVOLVER_GRPC__TLS_CERT_FILE" not in env and set(probes.values()) == {50051}
    if name != "tls":
        return
    # The NATS configuration the overlay builds is one nats-server accepts (certificates made here).
    import subprocess
    from evolver.stack import processes as proc
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "nats-config")["data"]
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / "tls.key"),
                    "-out", str(tmp_path / "tls.crt"), "-days", "1", "-subj", "/CN=nats",
                    "-addext", "subjectAltName=DNS:nats"], check=True, capture_output=True)
    (tmp_path / "ca.crt").write_text((tmp_path / "tls.crt").read_text())
    (tmp_path / "nats.conf").write_text(cm["nats.conf"].replace("/data", str(tmp_path / "js")))
    (tmp_path / "nats-tls.conf").write_text(cm["nats-tls.conf"].replace("/etc/nats-tls", str(tmp_path)))
    env = {f"NATS_{u.upper()}_PASSWORD": "x" * 20 for u in [*SERVICE_USERS.values(), "admin"]}
    r = subprocess.run([proc.nats_server_binary(), "-c", str(tmp_path / "nats-tls.conf"), "-t"], capture_output=True,
                       text=True, env=env, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr


def test_explorers_use_vllm_in_the_gpu_overlay(rendered):
    name, docs = rendered
    explorer = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "explorer")
    env = {e["name"]: e.get("value") for e in explorer["spec"]["template"]["spec"]["containers"][0]["env"]}
    if name == "gpu":
        assert env["EVOLVER_POLICY__BACKEND"] == "openai" and env["EVOLVER_POLICY__ENDPOINT"] == "http://vllm:8000/v1"
        from evolver.config import load_settings
        load_settings(environ={k: v for k, v in env.items() if k.startswith("EVOLVER_POLICY")})  # valid settings
        # Adapters reach vLLM through one volume, at the same path on both sides (the explorer
        # hands vLLM the path it wrote: policy.server_adapter_dir is empty).
        vllm = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "vllm")

        def claim_at(pod, path):
            mounts = {m["mountPath"]: m["name"] for m in pod["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
            vols = {v["name"]: v for v in pod["spec"]["template"]["spec"]["volumes"]}
            return vols[mounts[path]]["persistentVolumeClaim"]["claimName"]
        adapter_dir = env["EVOLVER_POLICY__ADAPTER_DIR"]
        assert claim_at(explorer, adapter_dir) == claim_at(vllm, adapter_dir)
        pvc = next(d for d in docs if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == claim_at(vllm, adapter_dir))
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
        c = vllm["spec"]["template"]["spec"]["containers"][0]
        args, venv = " ".join(c["args"]), {e["name"]: e.get("value") for e in c["env"]}
        assert "--enable-lora" in args and "--logprobs-mode processed_logprobs" in args
        assert f"--served-model-name {env['EVOLVER_POLICY__MODEL']}" in args
        assert venv["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "true"
    else:
        assert "EVOLVER_POLICY__BACKEND" not in env


def test_config_map_is_valid_evolver_settings(rendered, tmp_path):
    from evolver.config import load_settings
    _, docs = rendered
    cfg = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "evolver-config")
    f = tmp_path / "config.yaml"
    f.write_text(cfg["data"]["config.yaml"])
    s = load_settings(f, environ={})
    assert s.nats.url == "nats://nats:4222" and s.grpc.port == 50051


def test_dockerfile_installs_through_the_readme_path():
    from dockerfile_parse import DockerfileParser
    df = DockerfileParser(path=str(ROOT / "Dockerfile"))
    runs = [i["value"] for i in df.structure if i["instruction"] == "RUN"]
    assert any(r.strip() == "bash scripts/bootstrap.sh" for r in runs)
    stages = [i["value"] for i in df.structure if i["instruction"] == "FROM"]
    assert len(stages) == 2 and stages[0].endswith("AS build")
    users = [i["value"] for i in df.structure if i["instruction"] == "USER"]
    assert users and not users[-1].startswith(("0", "root"))
    assert any("VARIANT" in i["value"] for i in df.structure if i["instruction"] == "ARG")
