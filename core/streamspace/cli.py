"""The ``streamspace`` command: ``operator``, ``facade``, ``migrate``, ``watch`` and ``token``.

``operator``, ``facade`` and ``watch`` are contributed through the ``streamspace.commands`` entry
points by their own packages, so this core module never imports either process; ``dev`` comes the
same way from the developer tooling (``streamspace_dev``), which a production install lacks.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from importlib.metadata import entry_points

import psycopg

from streamspace import __version__, logs
from streamspace.auth import apikeys, tokens
from streamspace.config import ConfigError, load_runtime_settings, load_settings
from streamspace.db.migrate import MigrationError, migrate
from streamspace.durations import format_duration, parse_duration

Handler = Callable[[argparse.Namespace], int]
log = logging.getLogger("streamspace")


class CommandError(RuntimeError):
    """A command cannot do what was asked; the message is one paragraph saying what to do.

    Subcommands contributed by other packages (``streamspace dev``) raise subclasses of it, and
    ``main`` prints them without a traceback.
    """


class UsageError(CommandError):
    """A command cannot run as asked; the message says what to do instead."""


def database_url() -> str:
    """``DATABASE_URL`` or ``DB_*``; never a guess (the dev stack exports its own)."""
    settings = load_settings()
    if not settings.database.configured:
        raise UsageError(
            "no database: set DATABASE_URL (or DB_HOST and friends); "
            "`make run` prints the DATABASE_URL of its local server"
        )
    return settings.database.url


def _cmd_migrate(args: argparse.Namespace) -> int:
    applied = migrate(database_url())
    for m in applied:
        print(f"applied {m.version:04d}_{m.name}")
    print("schema is up to date" if not applied else f"{len(applied)} migration(s) applied")
    return 0


def _cmd_token(args: argparse.Namespace) -> int:
    with psycopg.connect(database_url(), autocommit=True) as conn:
        if args.action == "create":
            key = apikeys.create_api_key(conn, args.user, args.role, args.name)
            print(key)
            print(
                f"(an API key for {args.user} with role {args.role}; it is not shown again)",
                file=sys.stderr,
            )
        elif args.action == "list":
            for k in apikeys.list_api_keys(conn, args.user):
                state = "revoked" if k.revoked_at else "active"
                print(f"{k.id}\t{k.user_id}\t{k.role}\t{k.prefix}…\t{state}\t{k.name}")
        elif not apikeys.revoke_api_key(conn, args.id):
            raise UsageError(f"no active API key with id {args.id}")
    return 0


def _cmd_token_jwt(args: argparse.Namespace) -> int:
    auth = load_settings().auth
    if auth.jwt_secret is None:
        raise UsageError("JWT_SECRET is not set: export the facade's JWT_SECRET to mint a token")
    print(
        tokens.mint_hs256(
            auth.jwt_secret,
            args.user,
            args.role,
            args.ttl,
            audience=auth.jwt_audience,
            groups=args.group or None,
        )
    )
    print(
        f"(an HS256 token for {args.user} with role {args.role}, "
        f"valid for {format_duration(args.ttl)})",
        file=sys.stderr,
    )
    return 0


def _ttl(text: str) -> timedelta:
    try:
        ttl = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if ttl <= timedelta(0):
        raise argparse.ArgumentTypeError("must be longer than zero")
    return ttl


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamspace", description="Browser-streamed desktops and apps on Kubernetes."
    )
    parser.add_argument("--version", action="version", version=f"streamspace {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser(
        "migrate",
        help="apply database migrations",
        description="Apply the database migrations that the database of DATABASE_URL (or DB_*)"
        " lacks, each in its own transaction; running it again changes nothing. Exits non-zero"
        " when the database cannot be reached.",
    ).set_defaults(func=_cmd_migrate)

    token = sub.add_parser("token", help="API keys and JWTs").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    create = token.add_parser("create", help="create an API key and print it once")
    create.add_argument("--user", required=True)
    create.add_argument("--role", choices=apikeys.ROLES, default="user")
    create.add_argument("--name", default="", help="a label to recognise the key by")
    token_list = token.add_parser("list", help="list API keys (never the keys themselves)")
    token_list.add_argument("--user")
    revoke = token.add_parser("revoke", help="revoke an API key by id")
    revoke.add_argument("id", type=int)
    for p in (create, token_list, revoke):
        p.set_defaults(func=_cmd_token)
    mint = token.add_parser("jwt", help="print an HS256 JWT signed with JWT_SECRET")
    mint.add_argument("--user", required=True)
    mint.add_argument("--role", choices=tokens.ROLES, default="user")
    mint.add_argument("--ttl", type=_ttl, default=timedelta(hours=12), help="lifetime (12h)")
    mint.add_argument(
        "--group",
        action="append",
        help="a group the token names (repeat for more; quotas select by groups)",
    )
    mint.set_defaults(func=_cmd_token_jwt)

    for ep in sorted(entry_points(group="streamspace.commands"), key=lambda e: e.name):
        register = ep.load()
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        runtime = load_runtime_settings()
    except ConfigError as exc:  # LOG_FORMAT itself is wrong: say so the plain way
        print(f"streamspace: {exc}", file=sys.stderr)
        return 2
    logs.configure(runtime.log_format, verbose=args.verbose)
    func: Handler = args.func
    try:
        return func(args)
    except (
        ConfigError,
        CommandError,
        MigrationError,
        ValueError,
        psycopg.OperationalError,
    ) as exc:
        _report(f"streamspace: {exc}")
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception:
        log.exception("streamspace %s failed", args.command)
        return 1


def _report(message: str) -> None:
    """A command's failure: one JSON record when logs are JSON (a pod's log collector reads
    them), else a plain paragraph for the person at the terminal."""
    if logs.json_enabled():
        log.error("%s", message)
    else:
        print(message, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
