#!/bin/sh
# Installs what the image needs, on either base:
#   the debootstrap base (local mode): Debian's Python 3.11 + Airflow from PyPI pinned by constraints.txt, in /opt/venv;
#   the official apache/airflow image (registry mode): Airflow is there; only parse_sources' deps are added.
set -eu
cd "$(dirname "$0")"
# Empty build args arrive as empty variables, which pip would take as "no index": drop those.
[ -n "${PIP_INDEX_URL:-}" ] || unset PIP_INDEX_URL
[ -n "${PIP_EXTRA_INDEX_URL:-}" ] || unset PIP_EXTRA_INDEX_URL
[ -n "${PIP_TRUSTED_HOST:-}" ] || unset PIP_TRUSTED_HOST

if command -v airflow >/dev/null 2>&1; then
    PIP_USER=0 python -m pip install --no-cache-dir --disable-pip-version-check \
        --target /opt/sawmill/lib -r parse_sources-requirements.txt
    exit 0
fi

apt-get update
apt-get install -y --no-install-recommends python3 python3-venv
apt-get clean
rm -rf /var/lib/apt/lists/*
# uid 50000, gid 0, home /home/airflow: the official image's user, so volumes work with either image.
useradd --uid 50000 --gid 0 --create-home --home-dir /home/airflow --shell /bin/bash airflow
python3 -m venv /opt/venv
/opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check \
    -r requirements.txt -r parse_sources-requirements.txt -c constraints.txt
install -d -o airflow -g 0 -m 775 /opt/airflow /opt/airflow/logs
