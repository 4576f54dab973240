"""`python -m db_connect keys create|list|revoke`: manage API keys in the warehouse.

Runs with the service's own settings (the same environment and Docker secrets), so on the platform:
`docker exec $(docker ps -q -f name=sawmill_db_connect_api | head -1) python -m db_connect keys list`.
"""

import argparse
import sys

import psycopg

from db_connect.keys import KeyNotFound, create_key, list_keys, revoke_key
from db_connect.settings import Settings


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="python -m db_connect", description=__doc__.splitlines()[0])
    keys = root.add_subparsers(dest="area", required=True).add_parser("keys", help="API keys")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a key for a Postgres role; it is printed once")
    create.add_argument("--role", required=True, help="the role requests with this key run as, e.g. api_reader")
    create.add_argument("--name", required=True, help="a unique name to list and revoke the key by")
    actions.add_parser("list", help="list keys (never the keys themselves)")
    revoke = actions.add_parser("revoke", help="revoke a key by name; it stops working at once")
    revoke.add_argument("name")
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = Settings()
    try:
        with psycopg.connect(**settings.conninfo, application_name="db_connect keys", autocommit=True) as conn:
            if args.action == "create":
                print(create_key(conn, args.name, args.role))
            elif args.action == "list":
                print(f"{'NAME':<24} {'ROLE':<16} {'CREATED':<25} REVOKED")
                for key in list_keys(conn):
                    revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "-"
                    print(f"{key.name:<24} {key.role:<16} {key.created_at.isoformat(timespec='seconds'):<25} {revoked}")
            else:
                revoke_key(conn, args.name)
                print(f"revoked {args.name}")
    except KeyNotFound as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 1
    except psycopg.errors.UniqueViolation:
        print(f"error: a key named {args.name!r} exists already", file=sys.stderr)
        return 1
    except psycopg.errors.CheckViolation:
        print("error: a key name is 1-100 letters, digits and _.@-", file=sys.stderr)
        return 1
    except psycopg.Error as exc:
        print(f"error: {exc.__class__.__name__}: {exc.diag.message_primary or exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
