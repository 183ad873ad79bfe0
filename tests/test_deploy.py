"""Deployment artefacts: Kubernetes manifests validated offline, the KServe layout served by a real TorchServe."""

from __future__ import annotations

import base64
import json

import pytest
import requests
import yaml

from deepfake_service.packaging.archive import build_mar
from deepfake_service.project import ROOT
from deepfake_service.samples import imagegen, videogen
from deepfake_service.serving.kserve import KSERVE_PORT, lay_out
from deepfake_service.serving.probe import probe
from deepfake_service.serving.process import DRAINING
from deepfake_service.serving.properties import free_port, read_properties, write_properties
from deepfake_service.serving.server import recorded
from deepfake_service.serving.stack import StackSettings, stop_stack
from scripts import serve
from tests.servers import model_config

KUBERNETES = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.37.0"
CORE = ["configmap.yaml", "deployment.yaml", "service.yaml", "hpa.yaml"]


def load(name: str) -> dict:
    return yaml.safe_load((KUBERNETES / name).read_text())


@pytest.mark.parametrize("name", CORE)
def test_manifest_is_valid_kubernetes(name):
    import kubernetes_validate

    kubernetes_validate.validate(load(name), KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest():
    assert sorted(load("kustomization.yaml")["resources"]) == sorted(CORE)


def test_configmap_is_the_shipped_config_with_inference_opened():
    shipped = read_properties(ROOT / "config" / "config.properties")
    lines = load("configmap.yaml")["data"]["config.properties"].splitlines()
    pod = dict(line.split("=", 1) for line in lines if line.strip())
    assert pod.pop("inference_address") == "http://0.0.0.0:8080"
    shipped.pop("inference_address")
    assert pod == shipped  # every other setting (loopback management/metrics, caps, token auth) unchanged


def test_deployment_runs_non_root_with_token_aware_probes_and_a_draining_prestop():
    pod = load("deployment.yaml")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {p["containerPort"] for p in container["ports"]} == {8080}  # the page is not published by default
    assert container["args"][container["args"].index("--page-port") + 1] == "0"
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[kind]["exec"]["command"][:4] == ["python", "-m", "scripts.serve", "probe"]
    assert "--readiness" in container["readinessProbe"]["exec"]["command"]
    pre_stop = " ".join(container["lifecycle"]["preStop"]["exec"]["command"])
    assert f"/home/model-server/run/{DRAINING}" in pre_stop and "sleep" in pre_stop
    assert pod["terminationGracePeriodSeconds"] > 15 + 30  # preStop wait + the drain's 30 s bound
    assert container["resources"]["requests"]["cpu"] == container["resources"]["limits"]["cpu"]


def test_probe_passes_with_the_key_and_readiness_fails_while_draining(server):
    from deepfake_service.serving.probe import probe

    assert probe(server.run_dir) is None
    marker = server.run_dir / DRAINING
    marker.touch()
    try:
        assert probe(server.run_dir, readiness=True) == "draining"
        assert probe(server.run_dir) is None  # liveness is unaffected: the pod is draining, not dead
    finally:
        marker.unlink()


def test_inferenceservice_runs_the_projects_image_as_a_custom_predictor_over_v2():
    """Not KServe's TorchServe runtime (modelFormat: pytorch), which KServe is removing."""
    service = yaml.safe_load((ROOT / "deploy" / "kserve" / "inferenceservice.yaml").read_text())
    assert (service["apiVersion"], service["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    predictor = service["spec"]["predictor"]
    assert "model" not in predictor
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container" and container["image"] == load("deployment.yaml")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert [p["containerPort"] for p in container["ports"]] == [KSERVE_PORT]
    command = container["command"]
    assert command[:5] == ["python", "-m", "scripts.serve", "run", "--snapshot"]
    config = command[command.index("--config") + 1]
    store = command[command.index("--model-store") + 1]
    dockerfile = (ROOT / "Dockerfile").read_text()
    # The image writes that config, over the model store the image carries.
    assert config == "/srv/kserve/config/config.properties" and "--output /srv/kserve" in dockerfile
    assert f"--model-store-path {store}" in dockerfile and f"--export-dir {store}" in dockerfile
    assert container["securityContext"]["runAsNonRoot"] is True


@pytest.mark.served
def test_the_kserve_config_is_served_as_the_container_runs_it(tiny_checkpoint, tmp_path):
    """scripts.kserve_layout --config-only, then the container's command (`scripts.serve ... --snapshot`):
    it loads what the snapshot lists and the v2 envelope answers without a key."""
    settings = model_config(tmp_path / "model-config.yaml", handler={"runtime": "torch", "precision": "fp32"})
    store = tmp_path / "store"
    mar = build_mar(tiny_checkpoint, "tiny-kserve", "2.0", model_config=settings, export_dir=store)
    layout = lay_out(mar, tmp_path / "kserve", model_store=str(store), copy_archive=False)
    assert [p.relative_to(layout).as_posix() for p in layout.rglob("*") if p.is_file()] == ["config/config.properties"]
    properties = read_properties(layout / "config" / "config.properties")
    assert properties["service_envelope"] == "kservev2" and properties["disable_token_authorization"] == "true"
    assert properties["inference_address"] == f"http://0.0.0.0:{KSERVE_PORT}"
    assert properties["management_address"].startswith("http://127.0.0.1:") and properties["enable_model_api"] == "false"
    snapshot = json.loads(properties["model_snapshot"])
    assert sorted(snapshot["models"]) == ["tiny-kserve", "tiny-kserve-video"]  # videos on their own workers
    for name in snapshot["models"]:
        assert snapshot["models"][name]["2.0"] == {**snapshot["models"][name]["2.0"], "marName": "tiny-kserve.mar", "batchSize": 1}
    # Serve exactly that config, moved onto free loopback ports (in a pod KServe's ingress calls 8085).
    for kind in ("inference", "management", "metrics"):
        properties[f"{kind}_address"] = f"http://127.0.0.1:{free_port()}"
    properties.update(grpc_inference_port=str(free_port()), grpc_management_port=str(free_port()))
    config = write_properties(properties, tmp_path / "local.properties")
    assert StackSettings(config=config, models=[]).model_names == ["tiny-kserve", "tiny-kserve-video"]
    run_dir = tmp_path / "run"
    serve.main(["start", "--snapshot", "--config", str(config), "--model-store", str(store), "--run-dir", str(run_dir),
                "--page-port", "0", "--timeout", "180"])
    try:
        server = recorded(run_dir)
        server_models = requests.get(f"{server.management_url}/models", timeout=30).json()["models"]
        assert sorted(m["modelName"] for m in server_models) == ["tiny-kserve", "tiny-kserve-video"]
        assert probe(run_dir, readiness=True) is None
        body = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                            "data": [base64.b64encode(imagegen.jpeg(seed=3)).decode()]}]}
        answer = requests.post(f"{server.inference_url}/v2/models/tiny-kserve/infer", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"][0]["data"][0]["version"] == "2.0"
        body["inputs"][0]["data"] = [base64.b64encode(videogen.clip(count=4)).decode()]
        answer = requests.post(f"{server.inference_url}/v2/models/tiny-kserve-video/infer", json=body, timeout=60)
        assert answer.status_code == 200 and answer.json()["outputs"][0]["data"][0]["media"] == "video", answer.text
    finally:
        stop_stack(run_dir)


def test_snapshot_without_a_snapshot_in_the_config_stops_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        serve.main(["start", "--snapshot", "--run-dir", str(tmp_path / "run"), "--page-port", "0"])
    assert "no model to serve" in str(stopped.value.code) and "model_snapshot" in str(stopped.value.code)
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit):
        serve.main(["start", "--snapshot", "--model", "a=a.mar"])
    assert "leave out --model" in capsys.readouterr().err


def records_secret(container: dict) -> dict:
    (entry,) = [e for e in container.get("env", []) if e["name"] == "DEEPFAKE_RECORDS_URL"]
    return entry["valueFrom"]["secretKeyRef"]


def test_every_replica_takes_the_shared_store_url_from_a_required_secret():
    """Several pods must share one database: the URL comes from a Secret the pod cannot start without (no
    ``optional``), and ``--shared-records`` refuses a SQLite URL put there by mistake."""
    deployment = load("deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    predictor = yaml.safe_load((ROOT / "deploy" / "kserve" / "inferenceservice.yaml").read_text())["spec"]["predictor"]["containers"][0]
    for container, command in ((deployment, deployment["args"]), (predictor, predictor["command"])):
        assert records_secret(container) == {"name": "deepfake-detector-records", "key": "url"}
        assert "--shared-records" in command


def test_the_optional_postgresql_manifest_is_valid_kubernetes_and_named_by_the_url_it_serves():
    import kubernetes_validate

    documents = list(yaml.safe_load_all((KUBERNETES / "postgres" / "postgres.yaml").read_text()))
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    service = next(d for d in documents if d["kind"] == "Service")
    assert f"@{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/records" in (KUBERNETES / "postgres" / "postgres.yaml").read_text()


def test_shared_records_refuses_a_sqlite_store_before_starting_anything(tmp_path, monkeypatch):
    from deepfake_service.records import URL_ENV, shared_store
    from handler.store import RecordSettings

    assert not shared_store(RecordSettings(url="off")).enabled
    with pytest.raises(ValueError, match="cannot be reached or migrated"):  # a replica stops rather than serve without records
        shared_store(RecordSettings(url=f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none"))
    monkeypatch.setenv(URL_ENV, f"sqlite:///{tmp_path / 'r.sqlite3'}")
    with pytest.raises(SystemExit) as stopped:
        serve.main(["run", "--shared-records", "--run-dir", str(tmp_path / "run"), "--page-port", "0"])
    assert "SQLite file, which each replica keeps alone" in str(stopped.value.code) and "PostgreSQL" in str(stopped.value.code)
    assert not (tmp_path / "run").exists()
