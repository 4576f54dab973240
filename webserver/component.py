"""The webserver: nginx, the platform's only entrance (ports 80 and 443), TLS, one server block per route,
and a landing page on the bare domain with each component's live health."""

from pathlib import Path

from stack.component import Check, Component, Image, Route

HERE = Path(__file__).resolve().parent

COMPONENT = Component(
    name="webserver",
    folder=HERE,
    images=(Image("webserver", HERE, registry="nginx:1.28.0-bookworm"),),
    route=Route(""),
    entrance=True,
    config_files=("nginx.conf", "index.html"),
    check=Check(
        ("nginx", "-t", "-q", "-c", "/etc/nginx/nginx.conf"),
        {"nginx.conf": "/etc/nginx/nginx.conf"},
        tls=("/etc/nginx/tls/tls.crt", "/run/secrets/tls.key"),
    ),
)
