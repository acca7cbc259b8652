"""The ``recorder`` command.

Subcommands are thin: each parses its arguments and calls one function of the package. Errors of
the ``RecorderError`` tree are printed as one line (never with secrets) and become the process
exit code (``recorder.errors`` documents the ranges); ``--traceback`` shows the stack.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from recorder import __version__
from recorder.errors import RecorderError
from recorder.officer.selection import selection_text

if TYPE_CHECKING:
    from recorder.service.components import Components

logger = logging.getLogger("recorder")


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="TOML configuration file (default: the embedded default; see ops/recorder.toml)",
    )


def _officer_args(parser: argparse.ArgumentParser) -> None:
    # The actor is the OS user running the command (recorder.officer.actor), never typed in.
    parser.add_argument("--reason", required=True, help="why (written to the audit log)")


def _retention_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("policies", help="retention policy files")
    psub = p.add_subparsers(dest="policies_command", required=True)
    q = psub.add_parser("check", help="validate policies/*.toml; errors name file and line")
    _config_arg(q)
    q.add_argument("--dir", type=Path, default=None, help="policies directory (default: config)")

    p = sub.add_parser("retention", help="plan or run retention (delete / crypto-shred)")
    rsub = p.add_subparsers(dest="retention_command", required=True)
    q = rsub.add_parser("plan", help="dry run: what a run would destroy now, and why")
    _config_arg(q)
    q.add_argument("--json", action="store_true", help="machine-readable plan")
    q = rsub.add_parser("run", help="apply the plan (one run at a time; safe to re-run)")
    _config_arg(q)
    q = rsub.add_parser("event", help="report an account event a policy counts from")
    _config_arg(q)
    q.add_argument("account")
    q.add_argument("event", help="e.g. account_closed, nca_extension")
    q.add_argument("--at", help="when it happened (ISO 8601; default now)")

    p = sub.add_parser("hold", help="legal holds (mirrored to the store's legal hold)")
    hsub = p.add_subparsers(dest="hold_command", required=True)
    q = hsub.add_parser("place", help="hold recordings, a search, an instance or future matches")
    _config_arg(q)
    q.add_argument("--matter", required=True)
    q.add_argument("--reason", required=True)
    q.add_argument("--recording", action="append", help="a recording id (repeatable)")
    q.add_argument(
        "--instance", type=selection_text, help="every recording of this meeting / engagement"
    )
    q.add_argument(
        "--participant", type=selection_text, help="search: participant, caller or agent id or name"
    )
    q.add_argument("--queue", type=selection_text, help="search: Contact Center queue id or name")
    q.add_argument("--since", type=selection_text, help="search: overlapping from (ISO 8601)")
    q.add_argument("--until", type=selection_text, help="search: overlapping until (ISO 8601)")
    q.add_argument("--future", action="store_true", help="future matches join (a hold rule)")
    q.add_argument("--product", help="with --future: product")
    q.add_argument("--account", help="with --future: account id")
    q = hsub.add_parser("release", help="release one hold or every hold of a matter")
    _config_arg(q)
    which = q.add_mutually_exclusive_group(required=True)
    which.add_argument("--hold", type=int)
    which.add_argument("--matter")
    q.add_argument("--reason", required=True)
    q = hsub.add_parser("list", help="active holds and hold rules")
    _config_arg(q)
    q.add_argument("--all", action="store_true", help="released ones too")
    q = hsub.add_parser("sync", help="re-mirror catalog holds onto every stored version")
    _config_arg(q)
    q.add_argument("--all", action="store_true", help="every recording, not only held ones")

    p = sub.add_parser("audit", help="the audit log: list, searches, hold-rules, verify, seal")
    asub = p.add_subparsers(dest="audit_command", required=True)
    q = asub.add_parser("list", help="audit events, oldest first")
    _config_arg(q)
    q.add_argument("--actor")
    q.add_argument("--action")
    q.add_argument("--recording", help="events about this recording (their target)")
    q.add_argument("--since", help="ISO 8601")
    q.add_argument("--until", help="ISO 8601")
    q.add_argument("--limit", type=int, default=1000)
    q = asub.add_parser(
        "searches", help="which searches looked for a person (by keyed MAC; audited)"
    )
    _config_arg(q)
    from recorder.officer.search_review import HOLD_RULES
    from recorder.officer.search_review import add_arguments as add_review_arguments

    add_review_arguments(q)
    q = asub.add_parser(
        "hold-rules", help="which hold rules named a person (by keyed MAC; audited)"
    )
    _config_arg(q)
    add_review_arguments(q, HOLD_RULES)
    q = asub.add_parser("verify", help="check the log against its chain and signed heads")
    _config_arg(q)
    q.add_argument("--public-key", type=Path, default=None, help="default: <signing key>.pub")
    q = asub.add_parser("seal", help="write a signed head of new events to the store now")
    _config_arg(q)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recorder", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"rtms-recorder {__version__}")
    parser.add_argument("--traceback", action="store_true", help="show stack traces on errors")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the recorder service (systemd: Type=notify)")
    _config_arg(p)
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="run N worker processes that share the port and take streams from the catalog's "
        "work queue by spare capacity (default: [workers] count; without either, one process)",
    )
    # Set by `serve --workers N` for its own workers only.
    p.add_argument("--worker-index", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--listen-fd", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--status-fd", type=int, default=None, help=argparse.SUPPRESS)

    p = sub.add_parser("demo", help="record simulated engagements on the embedded default")
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where the demo keeps its catalog, store and keys (default: a new temp directory)",
    )
    p.add_argument(
        "--web",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="then serve the web console on it until Ctrl-C (default: when run in a terminal)",
    )

    p = sub.add_parser("simulate", help="run RTMS simulator scenarios against a webhook URL")
    p.add_argument("scenarios", nargs="+", type=Path, help="scenario .toml/.json files")
    p.add_argument("--webhook-url", required=True)
    p.add_argument("--profile", default="doc-2026", help="doc-2026, legacy-2025 or zoom-mock")
    p.add_argument("--speed", type=float, default=1.0, help="scenario seconds per real second")
    p.add_argument(
        "--validate-endpoint", action="store_true", help="send endpoint.url_validation first"
    )
    p.add_argument(
        "--zoom-api-port",
        type=int,
        default=None,
        help="also serve the simulated Zoom REST API here (0: any port); scenarios then wait "
        "for `recorder rtms start` (OAuth: ZOOM_CLIENT_ID/ZOOM_CLIENT_SECRET)",
    )
    p.add_argument("--zoom-account-id", default="sim_account", help="with --zoom-api-port")

    p = sub.add_parser("check", help="validate configuration, secrets, catalog, store and keys")
    _config_arg(p)

    p = sub.add_parser("search", help="find recordings in the catalog")
    _config_arg(p)
    from recorder.officer.search import add_arguments as search_arguments

    search_arguments(p)
    p.add_argument(
        "--failed",
        action="store_true",
        help="list failed starts (rtms.start_failed, concurrency_limited), orphans included",
    )

    p = sub.add_parser("show", help="everything about one recording (verified now, audited)")
    _config_arg(p)
    p.add_argument("recording_id")
    p.add_argument("--json", action="store_true", help="machine-readable (schema show/1)")
    p.add_argument("--tz", default=None, help="time zone for times shown (default UTC)")
    p.add_argument("--no-verify", action="store_true", help="skip re-verifying every object")
    p.add_argument("--actor", default=None, help="who is asking (default: the OS user)")
    p.add_argument("--reason", default=None, help="why (audited; default 'recorder show')")

    p = sub.add_parser(
        "verify", help="re-read objects by version; check hashes, AEAD, locks and holds"
    )
    _config_arg(p)
    p.add_argument("recording_ids", nargs="*", help="recordings to verify")
    p.add_argument("--all", action="store_true", help="every recording (up to 10,000 a run)")
    p.add_argument(
        "--since",
        type=selection_text,
        help="recordings live since (ended after, or open): 2d, 2026-03-01",
    )
    p.add_argument("--tz", default=None, help="time zone of --since (default UTC)")
    p.add_argument("--json", action="store_true", help="machine-readable (schema verify/1)")
    p.add_argument("--reason", default="recorder verify", help="why (written to the audit log)")

    p = sub.add_parser(
        "export", help="a signed bundle: whole-call WAVs, listening file, transcript, manifest"
    )
    _config_arg(p)
    p.add_argument("recording_ids", nargs="*", help="recordings to export (and/or a search)")
    p.add_argument("--out", type=Path, required=True, help="a new directory to write into")
    p.add_argument("--reason", required=True, help="why (written to the audit log)")
    p.add_argument("--actor", default=None, help="who is asking (default: the OS user)")
    p.add_argument("--signing-key", type=Path, default=None, help="Ed25519 key (0600)")
    from recorder.officer.search import add_filter_arguments as export_search_arguments

    export_search_arguments(p)  # also export every recording a search finds
    p.add_argument("--limit", type=int, default=1000, help="most recordings a search may add")

    p = sub.add_parser("verify-export", help="re-check an export bundle offline (public key)")
    p.add_argument("bundle", type=Path)
    p.add_argument("--public-key", type=Path, required=True, help="raw Ed25519 public key file")

    p = sub.add_parser("keys", help="recording keys: status, init, rotate, rewrap, export-public")
    keys = p.add_subparsers(dest="keys_command", required=True)
    k = keys.add_parser("status", help="providers, KEK ids, recording keys per KEK, escrow use")
    _config_arg(k)
    k = keys.add_parser("init", help="create a local KEK, or an officer X25519 key pair (0600)")
    _config_arg(k)
    k.add_argument("--x25519", action="store_true", help="create an X25519 key pair instead")
    k.add_argument("--private", type=Path, help="with --x25519: the private key file (0600)")
    k.add_argument("--public", type=Path, help="with --x25519: the public key file")
    k.add_argument(
        "--export-signing",
        action="store_true",
        help="create the Ed25519 export signing key instead (--private, default in key_dir)",
    )
    k = keys.add_parser("rotate", help="new local KEK; new recordings use it (audited)")
    _config_arg(k)
    k.add_argument("--reason", required=True, help="why (written to the audit log)")
    k = keys.add_parser(
        "rewrap", help="re-wrap recording keys to the current KEK (resumable, audited)"
    )
    _config_arg(k)
    k.add_argument("--from-kek", default=None, help="only keys under this KEK id (or escrow)")
    k.add_argument("--reason", required=True, help="why (written to the audit log)")
    k = keys.add_parser("export-public", help="public half of an X25519 private key")
    k.add_argument("--private", type=Path, required=True)
    k.add_argument("--out", type=Path, required=True, help="a new file for the raw public key")
    k = keys.add_parser(
        "export-signing-public", help="public half of the export signing key (for verifiers)"
    )
    _config_arg(k)
    k.add_argument("--private", type=Path, default=None, help="default: key_dir's signing key")
    k.add_argument("--out", type=Path, required=True, help="a new file for the raw public key")

    p = sub.add_parser("shred", help="crypto-shred one recording (refused under legal hold)")
    _config_arg(p)
    p.add_argument("recording_id")
    p.add_argument("--reason", help="the authority (audited; actor = OS user)")
    p.add_argument(
        "--verify", action="store_true", help="re-check the recording's destruction records"
    )

    _retention_parsers(sub)

    from recorder.completeness.commands import add_parsers as completeness_parsers

    completeness_parsers(sub)

    p = sub.add_parser("spool", help="upload jobs: list them, retry quarantined ones")
    spool = p.add_subparsers(dest="spool_command", required=True)
    q = spool.add_parser("list", help="every job: state, attempts, next attempt, last error")
    _config_arg(q)
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q = spool.add_parser("retry", help="put quarantined jobs back in the queue (audited)")
    _config_arg(q)
    q.add_argument("jobs", nargs="*", metavar="JOB", help="job ids (see `recorder spool list`)")
    q.add_argument("--all-quarantined", action="store_true", help="every quarantined job")
    q.add_argument("--reason", default="operator retry", help="why (written to the audit log)")

    # --- web console (recorder/web/cli_args.py, recorder/web/commands.py) ---
    from recorder.web.cli_args import add_parsers as web_parsers

    web_parsers(sub, _config_arg)

    p = sub.add_parser("bench", help="print performance figures (never used by tests)")
    p.add_argument(
        "which",
        choices=[
            "crypto",
            "audio",
            "pipeline",
            "fullpath",
            "wire",
            "segments",
            "export",
            "search",
            "video",
            "media",
            "workers",
            "scrub",
            "instructions",
            "compare",
        ],
    )
    p.add_argument("options", nargs=argparse.REMAINDER, help="passed to the benchmark")

    from recorder.zoom.commands import add_arguments as rtms_arguments

    rtms_arguments(sub)
    return parser


async def _with_components(
    config_path: Path | None, fn: Callable[..., Awaitable[int]], *args: object
) -> int:
    from recorder.config import load_config
    from recorder.service.components import open_components

    config = load_config(config_path, os.environ)
    async with open_components(config) as c:
        return await fn(c, *args)


async def _spool_command(c: Components, args: argparse.Namespace) -> int:
    from recorder.service.components import SPOOL_QUEUE_DIR, now_ms
    from recorder.service.workers import worker_spool_dirs
    from recorder.spool import admin
    from recorder.spool.spool import Spool

    # Under `serve --workers N` every worker has its own spool: take them all.
    spools: list[tuple[str | None, Spool]] = [(None, c.spool)]
    spools += [
        (str(index), Spool(directory / SPOOL_QUEUE_DIR))
        for index, directory in worker_spool_dirs(c.config)
    ]
    if args.spool_command == "list":
        views = await admin.tree_job_views(spools)
        print(admin.render_json(views) if args.json else admin.render_table(views))
        return 0
    requeued = await admin.retry_in_tree(
        spools,
        c.catalog,
        job_ids=args.jobs,
        all_quarantined=args.all_quarantined,
        actor=admin.os_actor(),
        reason=args.reason,
        now_ms=now_ms(),
    )
    for job in requeued:
        print(f"requeued {job.job_id} {job.job.object_key}")
    if not requeued:
        print("no quarantined job to retry")
    return 0


def _demo_then_web(state_dir: Path, *, web: bool) -> int:
    """``recorder demo``, then (``--web``) the console on its state until Ctrl-C."""
    from recorder.service.demo import run_demo
    from recorder.web import demo as web_demo

    code: int = trio.run(run_demo, state_dir)
    if not web:
        web_demo.hint()
        return code
    try:
        trio.run(web_demo.serve_demo_console, state_dir)
    except* KeyboardInterrupt:  # Ctrl-C, alone or inside the console's nursery's group
        print("web console stopped")
    return code


def _run(args: argparse.Namespace) -> int:
    command = args.command
    if command == "serve":
        from recorder.config import load_config
        from recorder.service.logs import configure_logging

        config = load_config(args.config, os.environ)
        configure_logging(
            args.log_level or config.logging.level,
            config.logging.format,
            secrets=[
                s
                for s in (
                    config.secrets.zoom_client_secret,
                    config.secrets.zoom_secret_token,
                    config.secrets.video_sdk_secret,
                )
                if s is not None
            ],
        )
        from recorder.service.prefork import serve_command

        return serve_command(
            config,
            workers=args.workers,
            worker_index=args.worker_index,
            listen_fd=args.listen_fd,
            status_fd=args.status_fd,
            log_level=args.log_level,
        )
    if command == "demo":
        if args.web is None:
            # A person at a terminal gets the console (URL and one-time login printed); a script
            # or CI gets a demo that ends by itself.
            args.web = sys.stdin.isatty() and sys.stdout.isatty()
        logging.basicConfig(level=args.log_level or "ERROR", format="%(levelname)s %(message)s")
        if args.state_dir is not None:
            return _demo_then_web(args.state_dir, web=args.web)
        with tempfile.TemporaryDirectory(prefix="rtms-recorder-demo-") as tmp:
            demo_code = _demo_then_web(Path(tmp), web=args.web)
            print(f"(the demo's state directory {tmp} is removed now; use --state-dir to keep it)")
            return demo_code
    if command == "simulate":
        from recorder.simulator.cli import run_simulate

        token = os.environ.get("ZOOM_SECRET_TOKEN")
        if not token:
            print(
                "error: ZOOM_SECRET_TOKEN must be set (the webhook secret token)", file=sys.stderr
            )
            return 3
        return trio.run(
            lambda: run_simulate(
                list(args.scenarios),
                webhook_url=args.webhook_url,
                secret_token=token,
                profile=args.profile,
                speed=args.speed,
                client_id=os.environ.get("ZOOM_CLIENT_ID") or os.environ.get("ZM_RTMS_CLIENT"),
                client_secret=os.environ.get("ZOOM_CLIENT_SECRET")
                or os.environ.get("ZM_RTMS_SECRET"),
                validate_endpoint=args.validate_endpoint,
                zoom_api_port=args.zoom_api_port,
                zoom_account_id=args.zoom_account_id,
            )
        )
    if command == "check":
        from recorder.service.check import run_check

        checked: int = trio.run(run_check, args.config, os.environ, print)
        return checked
    if command == "export":
        from recorder.officer.bundle import commands as bundle_commands

        return trio.run(_with_components, args.config, bundle_commands.export, args)
    if command == "verify-export":
        from recorder.officer.bundle import commands as bundle_commands

        return bundle_commands.verify_export(args)
    if command in ("search", "show", "verify"):
        from recorder.officer import commands

        fn = {
            "search": commands.search,
            "show": commands.show,
            "verify": commands.verify,
        }[command]
        return trio.run(_with_components, args.config, fn, args)
    if command == "keys":
        from recorder.officer import keys as key_commands

        sub_command = args.keys_command
        if sub_command == "export-public":
            return key_commands.export_public(args)
        if sub_command in ("init", "export-signing-public"):
            from recorder.config import load_config
            from recorder.officer.bundle import commands as bundle_commands

            config = load_config(args.config, os.environ)
            if sub_command == "export-signing-public":
                return bundle_commands.export_signing_public(config, args)
            if args.export_signing:
                return bundle_commands.init_signing(config, args)
            return key_commands.init(config, args)
        key_fn = {
            "status": key_commands.status,
            "rotate": key_commands.rotate,
            "rewrap": key_commands.rewrap,
        }[sub_command]
        return trio.run(_with_components, args.config, key_fn, args)
    if command == "shred":
        from recorder.officer import keys as key_commands

        return trio.run(_with_components, args.config, key_commands.shred, args)

    if command == "policies":
        from recorder.config import load_config
        from recorder.retention.commands import policies_check

        directory = args.dir or load_config(args.config, os.environ).retention.policies_dir
        return policies_check(directory)
    if command == "audit" and args.audit_command in ("searches", "hold-rules"):
        from recorder.officer.search_review import audit_hold_rules, audit_searches

        review = audit_searches if args.audit_command == "searches" else audit_hold_rules
        return trio.run(_with_components, args.config, review, args)
    if command in ("retention", "hold", "audit"):
        from recorder.retention import commands as rc

        sub_command = getattr(args, f"{command}_command")
        retention_fn: Callable[..., Awaitable[int]] = {
            ("retention", "plan"): rc.retention_plan,
            ("retention", "run"): rc.retention_run,
            ("retention", "event"): rc.retention_event,
            ("hold", "place"): rc.hold_place,
            ("hold", "release"): rc.hold_release,
            ("hold", "list"): rc.hold_list,
            ("hold", "sync"): rc.hold_sync,
            ("audit", "list"): rc.audit_list,
            ("audit", "verify"): rc.audit_verify,
            ("audit", "seal"): rc.audit_seal,
        }[(command, sub_command)]
        return trio.run(_with_components, args.config, retention_fn, args)

    if command == "spool":
        if args.spool_command == "retry" and bool(args.jobs) == bool(args.all_quarantined):
            print("error: name the jobs to retry, or give --all-quarantined", file=sys.stderr)
            return 2
        return trio.run(_with_components, args.config, _spool_command, args)
    if command == "rtms":
        from recorder.zoom import commands as rtms_commands

        return trio.run(rtms_commands.run, args)
    if command in ("completeness", "enrich"):
        from recorder.completeness import commands as completeness_commands

        completeness_fn = {
            "completeness": completeness_commands.completeness_command,
            "enrich": completeness_commands.enrich_command,
        }[command]
        return trio.run(_with_components, args.config, completeness_fn, args)
    if command == "web":
        from recorder.web import commands as web_commands

        if args.web_command == "user":
            return trio.run(_with_components, args.config, web_commands.user_command, args)
        web_commands.configure_logging(args.config, args.log_level)
        return trio.run(_with_components, args.config, web_commands.serve_command, args)
    if command == "bench":
        import importlib

        module = importlib.import_module(f"recorder.bench.{args.which}")
        code: int = module.main(args.options)
        return code
    raise AssertionError(f"unhandled command {command}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.log_level and args.command not in ("serve", "demo"):
        logging.basicConfig(level=args.log_level)
    try:
        return _run(args)
    except RecorderError as exc:
        if args.traceback:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # ``recorder audit list | head``: the reader has what it wanted. Python would still
        # flush stdout at exit and fail again, so stdout is pointed at /dev/null first.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141  # as a shell reports a process ended by SIGPIPE
