"""The ``fax-gateway`` command.

    fax-gateway serve       run everything (SMTP, dispatcher, HTTP; the simulator when no account)
    fax-gateway simulator   run the eFax API simulator alone
    fax-gateway send        fax files or text from the command line, through the gateway's SMTP
    fax-gateway queue       list, show, retry and cancel jobs
    fax-gateway check       validate the configuration, test eFax credentials and the relay
    fax-gateway hash-password   make a password hash for [[users]] (SMTP AUTH) or [[admins]] (/admin)

``--config PATH`` on every command. Exit status: 0 ok, 1 the work failed, 2 bad usage
or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

from gateway.logs import setup_logging
from gateway.settings import ConfigError, Settings, load_settings
from gateway.store.base import StoreError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 on bad usage, as we want
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--config", type=Path, help="TOML configuration file")
    common.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")

    parser = _Parser(prog="fax-gateway", description="Email-to-fax gateway for the eFax API.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = sub.add_parser("serve", parents=[common], help="run the gateway")
    serve.add_argument("--smtp-listen", help="host:port for SMTP (overrides smtp.listen)")
    serve.add_argument("--http-listen", help="host:port for HTTP (overrides http.listen)")
    serve.add_argument("--database", help="database URL (overrides database.url)")

    sim = sub.add_parser("simulator", parents=[common], help="run the eFax API simulator alone")
    sim.add_argument("--listen", default="127.0.0.1:8090", help="host:port (default 127.0.0.1:8090)")
    sim.add_argument("--complete-after", type=float, default=2.0, help="seconds until a fax is final")

    send = sub.add_parser("send", parents=[common], help="fax files or text through the gateway")
    send.add_argument("files", nargs="*", type=Path, help="documents to fax, in order")
    send.add_argument("--to", action="append", required=True, help="fax number (repeatable)")
    send.add_argument("--from", dest="sender", help="sender address (must be allowed)")
    send.add_argument("--subject", default="", help="cover page subject")
    send.add_argument("--text", default="", help="text: the cover message, or the fax itself")
    send.add_argument("--smtp", help="host:port of the gateway (default: smtp.listen)")

    queue = sub.add_parser("queue", parents=[common], help="list, show, retry or cancel jobs")
    qsub = queue.add_subparsers(dest="action", required=True, parser_class=_Parser)
    ql = qsub.add_parser("list", parents=[common], help="list jobs")
    ql.add_argument("--state", help="queued, active, deferred, done, failed, held, dead")
    ql.add_argument("--kind", help="dispatch, track, report, deliver, reply")
    ql.add_argument("--older-than", type=float, metavar="SECONDS", help="only jobs older than this")
    ql.add_argument("--limit", type=int, default=50)
    qs = qsub.add_parser("show", parents=[common], help="a mail's whole story (by job id or fax id)")
    qs.add_argument("id", help="job id (as in 'queued as ...') or an eFax fax id")
    qr = qsub.add_parser("retry", parents=[common], help="try a deferred or failed job now")
    qr.add_argument("id")
    qc = qsub.add_parser("cancel", parents=[common], help="cancel a fax")
    qc.add_argument("id")

    ev = sub.add_parser(
        "evidence", parents=[common], help="write a mail's transmission confirmation PDF to stdout"
    )
    ev.add_argument("id", help="the job id (queued as ...) or a fax id")
    ev.add_argument("--output", "-o", help="write to this file instead of stdout")
    sub.add_parser("check", parents=[common], help="check configuration, eFax and relay")
    sub.add_parser("hash-password", parents=[common], help="make a password hash for [[users]] or [[admins]]")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if getattr(args, "smtp_listen", None):
        found.setdefault("smtp", {})["listen"] = args.smtp_listen
    if getattr(args, "http_listen", None):
        found.setdefault("http", {})["listen"] = args.http_listen
    if getattr(args, "database", None):
        found.setdefault("database", {})["url"] = args.database
    return found


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    if args.command == "hash-password":
        from gateway.commands.hash_password import hash_password_command

        return hash_password_command()
    if args.command == "simulator":
        from gateway.settings import split_host_port
        from gateway.simulator.config import SimulatorConfig
        from gateway.simulator.server import run_simulator

        host, port = split_host_port(args.listen)
        run_simulator(host, port, SimulatorConfig(complete_after_s=args.complete_after))
        return EXIT_OK
    try:
        settings = load_settings(args.config, _overrides(args))
    except ConfigError as err:
        print(f"fax-gateway: {err}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_run(args, settings))
    except ConfigError as err:  # found only when used, e.g. a TLS certificate that cannot be loaded
        print(f"fax-gateway: {err}", file=sys.stderr)
        return EXIT_USAGE
    except StoreError as err:  # the database cannot be opened: nothing was accepted
        print(f"fax-gateway: {err}", file=sys.stderr)
        return EXIT_FAILED


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        from gateway.app import serve

        return await serve(settings)
    if args.command == "send":
        from gateway.commands.send import send

        return await send(args, settings)
    if args.command == "queue":
        from gateway.commands.queue import queue

        return await queue(args, settings)
    if args.command == "evidence":
        from gateway.commands.evidence import evidence_command

        return await evidence_command(args, settings)
    if args.command == "check":
        from gateway.commands.check import check

        return await check(settings)
    logging.getLogger(__name__).error("unknown command %s", args.command)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
