"""Issue 15, point 4: deploy/ checked without Docker or a Kubernetes cluster.

- deploy/compose.yaml against the compose-spec JSON schema (the copy that
  ``check-jsonschema`` ships, run as its command), and for the topology the
  issue asks for: 3 NATS nodes, a PostgreSQL primary and standby, 2 ``serve``
  behind a load balancer, 2 relays, one ``project`` worker per read model;
- every file it mounts exists in the repository (the NATS and PostgreSQL ones
  are those the cluster tests start);
- the HAProxy configuration with ``haproxy -c``, balancing over the compose
  file's API services;
- deploy/k8s/ against the Kubernetes schemas ``kubernetes-validate`` ships
  (strict: an unknown field fails), except the CloudNativePG ``Cluster``, whose
  CRD schema no registry package ships: its metadata and resources are checked
  against the Kubernetes types they are, and its replication settings by name.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import referencing
import yaml
from kubernetes_validate.utils import schema_contents

from projections import PROJECTION_NAMES

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
BIN = Path(sys.executable).parent
#: the Kubernetes version the manifests are checked against (the oldest still supported)
K8S_VERSION = "1.30"


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def _k8s() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "nats-values.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def _check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


# -- Compose ---------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_spec() -> None:
    run = _check_jsonschema(COMPOSE)
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_compose_check_catches_a_misspelt_key(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("    command: [omniledger, relay]",
                                                  "    comand: [omniledger, relay]"))  # fmt: skip
    assert broken.read_text() != COMPOSE.read_text()
    run = _check_jsonschema(broken)
    assert run.returncode == 1 and "comand" in run.stdout + run.stderr, run


def _command(service: dict[str, Any]) -> list[str]:
    return [str(word) for word in service.get("command", [])]


def test_compose_runs_the_whole_replicated_topology() -> None:
    services = _compose()["services"]
    nats = [name for name, s in services.items() if "nats" in str(s.get("image", ""))]
    assert len(nats) == 3, nats
    for name in nats:
        # one cluster: every node runs the tests' cluster.conf, routes to all
        # three, and has its own name (JetStream is on in that file)
        assert services[name]["entrypoint"] == ["nats-server", "-c", "/etc/nats/cluster.conf"]
        env = services[name]["environment"]
        routes = [env[f"NATS_ROUTE_{i}"] for i in (1, 2, 3)]
        assert sorted(routes) == sorted(f"nats-route://{n}:6222" for n in nats), env
        assert env["NATS_SERVER_NAME"] == name and env["NATS_STORE_DIR"] == "/data", env
    assert "jetstream" in (DEPLOY / "nats" / "cluster.conf").read_text()
    postgres = {name for name, s in services.items() if "postgres" in str(s.get("image", ""))}
    assert postgres == {"pg-primary", "pg-standby"}, postgres
    standby = " ".join(services["pg-standby"]["entrypoint"])
    assert "pg_basebackup" in standby and "-R" in standby, standby

    serve = [n for n, s in services.items() if _command(s)[:2] == ["omniledger", "serve"]]
    assert len(serve) == 2, serve
    relays = [s for s in services.values() if _command(s) == ["omniledger", "relay"]]
    assert sum(s.get("deploy", {}).get("replicas", 1) for s in relays) == 2, relays
    models = [
        _command(s)[3]
        for s in services.values()
        if _command(s)[:3] == ["omniledger", "project", "--models"]
    ]
    assert sorted(models) == sorted(PROJECTION_NAMES), models  # one worker per read model
    assert services["migrate"]["command"] == ["omniledger", "migrate"]

    env = services["serve-1"]["environment"]
    assert env["OMNILEDGER_STREAM_REPLICAS"] == "3"
    assert sorted(env["OMNILEDGER_NATS_URL"].split(",")) == sorted(f"nats://{n}:4222" for n in nats)
    assert "pg-primary:5432,pg-standby:5432" in env["OMNILEDGER_DATABASE_URL"]
    assert "target_session_attrs=read-write" in env["OMNILEDGER_DATABASE_URL"]
    # every part after the schema, from the repository's Dockerfile
    for name in [*serve, "relay", "project-balances"]:
        assert "migrate" in services[name]["depends_on"], name
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (DEPLOY / "Dockerfile").is_file()


def _mounts() -> list[tuple[str, str]]:
    """(service, host path relative to deploy/) of every bind mount of the compose file."""
    out = []
    for name, service in _compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                out.append((name, source))
    return out


@pytest.mark.parametrize("service, source", _mounts())
def test_every_mounted_file_is_in_the_repository(service: str, source: str) -> None:
    path = (DEPLOY / source).resolve()
    assert path.exists(), f"{service} mounts {source}, which is not in deploy/"


def test_mounted_server_configuration_files_exist() -> None:
    """The files the NATS and PostgreSQL commands name, inside their mounted folders."""
    services = _compose()["services"]
    named = {
        "nats": {w for w in services["nats-1"]["entrypoint"] if w.startswith("/etc/nats/")},
        "postgres": {
            w.split("=", 1)[1]
            for w in services["pg-primary"]["command"]
            if w.startswith(("config_file=", "hba_file="))
        },
    }
    inside = {"nats": "/etc/nats/", "postgres": "/etc/omniledger/postgres/"}
    for folder, files in named.items():
        assert files, folder
        for file in files:
            local = DEPLOY / folder / file.removeprefix(inside[folder])
            assert local.is_file(), f"{file} is mounted from {local}, which is missing"


def test_haproxy_configuration_is_valid_and_balances_the_api_services() -> None:
    haproxy = shutil.which("haproxy")
    assert haproxy, "haproxy is not installed (make install puts it there)"
    config = DEPLOY / "haproxy" / "haproxy.cfg"
    run = subprocess.run([haproxy, "-c", "-f", str(config)],
                         capture_output=True, text=True, timeout=30)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    servers = [
        line.split()[2].rsplit(":", 1)[0]
        for line in config.read_text().splitlines()
        if line.strip().startswith("server ")
    ]
    services = _compose()["services"]
    api = sorted(n for n, s in services.items() if _command(s)[:2] == ["omniledger", "serve"])
    assert sorted(servers) == api, (servers, api)
    lb = services["lb"]
    assert "./haproxy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in lb["volumes"]


# -- Kubernetes ------------------------------------------------------------------------------


def _of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _k8s() if d["kind"] == kind}


@pytest.mark.parametrize(
    "doc",
    [d for d in _k8s() if d["apiVersion"] != "postgresql.cnpg.io/v1"],
    ids=lambda d: f"{d['kind']}/{d['metadata']['name']}",
)
def test_kubernetes_manifest_matches_its_schema(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_kubernetes_check_catches_an_unknown_field() -> None:
    deployment = _of_kind("Deployment")["omniledger-serve"]
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_deployments_replicate_every_part_with_health_probes() -> None:
    deployments = _of_kind("Deployment")
    serve = deployments["omniledger-serve"]
    assert serve["spec"]["replicas"] == 2
    [container] = serve["spec"]["template"]["spec"]["containers"]
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz", probe
    assert deployments["omniledger-relay"]["spec"]["replicas"] == 2
    models = []
    for name, d in deployments.items():
        [c] = d["spec"]["template"]["spec"]["containers"]
        if c["command"][:3] == ["omniledger", "project", "--models"]:
            models.append(c["command"][3])
            assert d["spec"]["replicas"] == 1, name
    assert sorted(models) == sorted(PROJECTION_NAMES), models
    [service] = _of_kind("Service").values()
    labels = serve["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    config = _of_kind("ConfigMap")["omniledger"]["data"]
    assert config["OMNILEDGER_STREAM_REPLICAS"] == "3"
    assert len(config["OMNILEDGER_NATS_URL"].split(",")) == 3


def _k8s_type(name: str) -> jsonschema.protocols.Validator:
    """A validator of one Kubernetes type (``io.k8s...``) from kubernetes-validate's copy."""
    folder = f"kubernetes-json-schema/v{K8S_VERSION}.0-local-strict"
    definitions = schema_contents(f"{folder}/_definitions.json", K8S_VERSION)
    registry = referencing.Resource.from_contents(definitions) @ referencing.Registry()
    schema = {"$ref": f"https://kubernetes.io/api/_definitions.json#/$defs/{name}"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def test_cloudnativepg_cluster_is_two_instances_replicating_synchronously() -> None:
    [cluster] = [d for d in _k8s() if d["apiVersion"] == "postgresql.cnpg.io/v1"]
    assert cluster["kind"] == "Cluster"
    meta = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    _k8s_type(meta).validate(cluster["metadata"])
    _k8s_type("io.k8s.api.core.v1.ResourceRequirements").validate(cluster["spec"]["resources"])
    spec = cluster["spec"]
    assert spec["instances"] == 2
    sync = spec["postgresql"]["synchronous"]
    assert sync == {"method": "any", "number": 1, "dataDurability": "required"}, sync
    assert spec["affinity"]["podAntiAffinityType"] == "required"
    # the application reaches the primary through the operator's -rw Service
    # and its user through the operator's -app Secret
    name = cluster["metadata"]["name"]
    env = _of_kind("Deployment")["omniledger-serve"]["spec"]["template"]["spec"]
    [container] = env["containers"]
    values = {e["name"]: e for e in container["env"]}
    assert f"@{name}-rw:5432/" in values["OMNILEDGER_DATABASE_URL"]["value"]
    assert values["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == f"{name}-app"


def test_nats_chart_values_ask_for_a_three_node_jetstream_cluster() -> None:
    values = yaml.safe_load((K8S / "nats-values.yaml").read_text())
    config = values["config"]
    assert config["cluster"] == {"enabled": True, "replicas": 3}
    assert config["jetstream"]["enabled"] and config["jetstream"]["fileStore"]["pvc"]["enabled"]
