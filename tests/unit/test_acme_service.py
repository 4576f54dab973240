"""The ACME service's swarm side, against an in-memory Docker API: a new certificate becomes a labelled pair that
nginx's service is updated to (its other mounts untouched), the old pair goes only after nginx converged, and
each attempt leaves exactly one status behind."""

from __future__ import annotations

import copy
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from stack import acme, acme_service, certs, tls_names

ROOT = Path(__file__).resolve().parents[2]
NGINX = "p_webserver_nginx"
CRT, KEY = acme_service.TLS_CRT_TARGET, acme_service.TLS_KEY_TARGET


class FakeApi:
    """Configs, secrets and one nginx service, as the Engine API holds them; updates converge at once unless
    `rolls_back` is set."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, dict]] = {"configs": {}, "secrets": {}}
        self.rolls_back = False
        self.removed: list[str] = []
        self.updates: list[dict] = []
        self.nginx = {
            "ID": "svc1",
            "Version": {"Index": 7},
            "UpdateStatus": {"State": "completed", "StartedAt": "t0"},
            "Spec": {
                "Name": NGINX,
                "TaskTemplate": {
                    "ContainerSpec": {
                        "Configs": [
                            {"File": {"Name": "/etc/nginx/nginx.conf"}, "ConfigID": "c0", "ConfigName": "p_nginx_conf"},
                            {
                                "File": {"Name": acme_service.TLS_CRT_TARGET},
                                "ConfigID": "c1",
                                "ConfigName": "p_tls_crt_old",
                            },
                        ],
                        "Secrets": [
                            {"File": {"Name": "admin_htpasswd"}, "SecretID": "s0", "SecretName": "p_admin_htpasswd"},
                            {
                                "File": {"Name": acme_service.TLS_KEY_TARGET},
                                "SecretID": "s1",
                                "SecretName": "p_tls_key_old",
                            },
                        ],
                    }
                },
            },
        }

    def create(self, kind: str, name: str, data: bytes, labels: dict[str, str]) -> str:
        self.objects[kind][name] = {"ID": f"id-{name}", "Spec": {"Name": name, "Labels": labels}, "data": data}
        return f"id-{name}"

    def remove(self, kind: str, name: str) -> None:
        self.removed.append(name)
        self.objects[kind].pop(name, None)

    def listed(self, kind: str, label: str) -> list[dict]:
        key, value = label.split("=", 1)
        return [o for o in self.objects[kind].values() if o["Spec"]["Labels"].get(key) == value]

    def service(self, name: str) -> dict:
        assert name == NGINX
        return copy.deepcopy(self.nginx)

    def call(self, method: str, url: str, body: object = None) -> object:
        assert (method, url) == ("POST", "/services/svc1/update?version=7")
        assert isinstance(body, dict)
        self.updates.append(body)
        state = "rollback_completed" if self.rolls_back else "completed"
        self.nginx = {**self.nginx, "Spec": body, "UpdateStatus": {"State": state, "StartedAt": "t1"}}
        return None


def issued(names: tuple[str, ...] = ("example.com",)) -> acme.Issued:
    key, ca = certs.new_ca("test CA")
    leaf_key, leaf = certs.issue(names, key, ca)
    return acme.Issued(
        chain=leaf.public_bytes(serialization.Encoding.PEM),
        key=certs.key_pem(leaf_key),
        names=names,
        issuer="CN=test CA",
        not_after=dt.datetime(2031, 1, 1, tzinfo=dt.UTC),
        new=True,
    )


JOB = acme_service.Job(
    prefix="p",
    nginx_service=NGINX,
    order=acme.Order(names=("example.com",), email="ops@example.com", directory="https://ca/dir"),
    interval_s=43200,
    retry_s=300,
)


def test_a_new_certificate_becomes_a_labelled_pair_that_nginx_is_updated_to() -> None:
    api, cert = FakeApi(), issued()
    assert acme_service.install(api, JOB, cert) is True  # type: ignore[arg-type]
    digest = tls_names.chain_digest(cert.chain)
    crt, key = f"p_tls_crt_{digest}", f"p_tls_key_{digest}"
    assert api.objects["configs"][crt]["data"] == cert.chain
    assert api.objects["secrets"][key]["data"] == cert.key
    assert api.objects["configs"][crt]["Spec"]["Labels"] == {"sawmill.prefix": "p", "sawmill.acme": "certificate"}
    spec = api.updates[0]["TaskTemplate"]["ContainerSpec"]
    assert [c["ConfigName"] for c in spec["Configs"]] == ["p_nginx_conf", crt]
    assert [s["SecretName"] for s in spec["Secrets"]] == ["p_admin_htpasswd", key]
    assert api.removed == ["p_tls_key_old", "p_tls_crt_old"], "the old pair goes once nginx converged"
    assert acme_service.install(api, JOB, cert) is False, "what serves already is not installed twice"


def test_a_rolled_back_update_keeps_the_old_pair_and_says_so() -> None:
    api = FakeApi()
    api.rolls_back = True
    with pytest.raises(acme_service.ApiError, match="did not take the new certificate"):
        acme_service.install(api, JOB, issued())  # type: ignore[arg-type]
    assert api.removed == []


def test_each_attempt_leaves_one_status_without_key_material() -> None:
    api, cert = FakeApi(), issued()
    for ok in (True, False):
        status = tls_names.AcmeStatus(at="now", ok=ok, message="" if ok else "refused", names=cert.names)
        acme_service.record(api, "p", status)  # type: ignore[arg-type]
    statuses = api.listed("configs", "sawmill.acme=status")
    assert len(statuses) == 1
    assert json.loads(statuses[0]["data"])["message"] == "refused"
    assert b"PRIVATE KEY" not in statuses[0]["data"]


def test_the_service_reads_its_order_from_the_environment(tmp_path: Path) -> None:
    job = acme_service.Job.from_env(
        {
            "SAWMILL_ACME_PREFIX": "p",
            "SAWMILL_ACME_NGINX_SERVICE": NGINX,
            "SAWMILL_ACME_NAMES": "example.com,api.example.com",
            "SAWMILL_ACME_EMAIL": "ops@example.com",
            "SAWMILL_ACME_DIRECTORY": "https://ca/dir",
            "SAWMILL_ACME_CA_BUNDLE": "",
            "SAWMILL_ACME_PREFLIGHT_DNS": "127.0.0.1:8053",
            "SAWMILL_ACME_INTERVAL": "60",
        },
        tmp_path,
    )
    assert job.order.names == ("example.com", "api.example.com")
    assert job.order.ca_bundle is None and job.order.resolver == ("127.0.0.1", 8053)
    assert job.order.webroot == tmp_path / "webroot"
    assert (job.interval_s, job.retry_s) == (60, 300)
    assert (job.order.challenge, job.order.dns_provider, job.order.dns_credentials) == ("http-01", None, {})


def test_for_dns_01_the_service_reads_the_credentials_from_its_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "acme-dns-credentials"
    secret.write_text("# written by the operator\r\ndns_cloudflare_api_token = t0k=en\r\n")
    env = {
        "SAWMILL_ACME_PREFIX": "p",
        "SAWMILL_ACME_NGINX_SERVICE": NGINX,
        "SAWMILL_ACME_NAMES": "example.com,*.example.com",
        "SAWMILL_ACME_EMAIL": "ops@example.com",
        "SAWMILL_ACME_DIRECTORY": "https://ca/dir",
        "SAWMILL_ACME_CHALLENGE": "dns-01",
        "SAWMILL_ACME_DNS_PROVIDER": "cloudflare",
        "SAWMILL_ACME_DNS_PROPAGATION": "30",
    }
    order = acme_service.Job.from_env(env, tmp_path, credentials=secret).order
    assert (order.challenge, order.dns_provider, order.dns_propagation_s) == ("dns-01", "cloudflare", 30)
    assert order.dns_credentials == {"dns_cloudflare_api_token": "t0k=en"}
    assert (
        acme_service.Job.from_env(env | {"SAWMILL_ACME_DNS_PROPAGATION": ""}, tmp_path, secret).order.dns_propagation_s
        is None
    )


def test_the_service_runs_without_the_engines_settings_or_component_folders() -> None:
    """Its image holds stack/ only: importing it must not load stack.config (which reads every component)."""
    probe = "import sys, stack.acme_service; print(sorted(m for m in sys.modules if m.startswith('stack')))"
    loaded = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "stack.config" not in loaded.stdout and "stack.components" not in loaded.stdout
