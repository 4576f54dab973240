"""The webserver: the platform's only entrance. A TCP door publishes ports 80 and 443 and passes connections
to nginx (TLS, one server block per route, a landing page on the bare domain with each component's live
health), whose replicas roll one by one behind it, so a new certificate or route drops no request. With
certificates = "acme", its ACME service obtains and renews the certificate and rolls nginx over to it."""

from pathlib import Path

from stack.component import PYTHON, ROOT, Check, Component, Image, Route

HERE = Path(__file__).resolve().parent

COMPONENT = Component(
    name="webserver",
    folder=HERE,
    images=(
        Image("webserver", HERE, registry="nginx:1.28.0-bookworm"),
        # certificates = "acme": the service that obtains and renews the certificate (stack/acme_service.py)
        Image(
            "acme",
            HERE / "acme",
            parent=PYTHON,
            includes=(ROOT / "stack", ROOT / "requirements.txt"),
            used=lambda s: s.certificates == "acme",
        ),
    ),
    route=Route(""),
    entrance=True,
    pins=lambda _: ("webserver",),  # the door publishes the ports on the node labelled for it: where DNS points
    acme_service="acme",
    config_files=("nginx.conf", "index.html", "door.conf", "acme-ca.pem"),
    checks=(
        Check(
            ("nginx", "-t", "-q", "-c", "/etc/nginx/nginx.conf"),
            {"nginx.conf": "/etc/nginx/nginx.conf"},
            tls=("/etc/nginx/tls/tls.crt", "/run/secrets/tls.key"),
        ),
        Check(("nginx", "-t", "-q", "-c", "/etc/nginx/nginx.conf"), {"door.conf": "/etc/nginx/nginx.conf"}),
    ),
)
