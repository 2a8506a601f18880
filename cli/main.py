"""``fleetconf``: read and change a fleetconf controller's configuration, settings, fleet
and named credentials.

Exit status: 0 done, 2 bad usage or local settings, 3 the controller refused, 4 the
controller could not be reached, 5 ``watch`` (or ``rollout start --wait``) timed out, 6
``audit verify`` found the audit log's chain broken, 7 ``rollout start --wait`` saw the
rollout rolled back or aborted, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from cli import audit, commands, credentials, history, watch
from cli.client import ControllerClient
from cli.console import Console
from cli.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_UNEXPECTED, CliError
from cli.render import printable
from cli.rollout_wait import add_wait_options
from cli.rollouts import add_rollout_commands
from cli.settings import (
    DEFAULT_CONTROLLER_URL,
    TOKEN_FILE_VARIABLE,
    TOKEN_VARIABLE,
    URL_VARIABLE,
    CliSettings,
    load_settings,
    resolve,
)
from common.constants import DEFAULT_PAGE_LIMIT
from common.metadata import package_version
from common.models import AgentState

PROG = "fleetconf"
Command = Callable[[ControllerClient, argparse.Namespace, Console], Awaitable[None]]

EPILOG = f"""\
environment:
  {URL_VARIABLE}  the controller (default {DEFAULT_CONTROLLER_URL})
  {TOKEN_VARIABLE}  the admin token ({TOKEN_FILE_VARIABLE}: a file holding it), or
    a named credential's token (a viewer's may read history, agents, fleet, settings)

exit status: 0 done, 2 bad usage or settings, 3 the controller refused the request,
4 the controller could not be reached, 5 watch timed out, 6 audit verify found the
chain broken, 7 rollout start --wait: rolled back or aborted, 130 interrupted
"""


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {value}")
    return value


def _if_match(text: str) -> str:
    """A version number N, or an ETag as `config get` shows it (quotes optional)."""
    value = text.strip()
    if value.isascii() and value.isdigit():
        return value
    bare = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    if not bare or not bare.isascii() or any(ch in bare for ch in '", ') or not bare.isprintable():
        raise argparse.ArgumentTypeError(f"not a version number or an ETag: {text!r}")
    return f'"{bare}"'


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text}")
    return value


def _common_options() -> argparse.ArgumentParser:
    """Options accepted before or after the command (``default=SUPPRESS``: no clobbering)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--controller-url",
        metavar="URL",
        default=argparse.SUPPRESS,
        help=f"the controller (overrides {URL_VARIABLE})",
    )
    common.add_argument(
        "--token-file",
        metavar="PATH",
        type=Path,
        default=argparse.SUPPRESS,
        help=f"read the admin token from this file (overrides {TOKEN_VARIABLE})",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print JSON for scripts instead of text",
    )
    return common


def _leaf(
    group: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    command: Command,
    help_text: str,
    common: argparse.ArgumentParser,
) -> argparse.ArgumentParser:
    parser = group.add_parser(name, help=help_text, description=help_text, parents=[common])
    parser.set_defaults(command=command)
    return parser


def _paging(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--limit", type=int, default=DEFAULT_PAGE_LIMIT, help="page size (1-500)")
    parser.add_argument("--offset", type=int, default=0, help=f"how many {what} to skip")


def _config_commands(
    group: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    config = group.add_parser(
        "config", help="the worker configuration and its versions", parents=[common]
    )
    sub = config.add_subparsers(dest="config_command", required=True, metavar="COMMAND")
    _leaf(sub, "get", commands.config_get, "the current configuration and its version", common)
    setter = _leaf(sub, "set", commands.config_set, "publish a new configuration version", common)
    source = setter.add_mutually_exclusive_group(required=True)
    source.add_argument("url", nargs="?", metavar="URL", help="the URL workers fetch")
    source.add_argument(
        "--file",
        metavar="FILE",
        help="the configuration as a JSON file ('-': standard input)",
    )
    _change_options(setter)
    listing = _leaf(sub, "history", commands.config_history, "the stored versions", common)
    _paging(listing, "newer versions")
    show = _leaf(sub, "show", commands.config_show, "one stored version", common)
    show.add_argument("version", type=_non_negative, metavar="N")
    rollback = _leaf(
        sub,
        "rollback",
        history.config_rollback,
        "publish a new version with version N's configuration",
        common,
    )
    rollback.add_argument("version", type=_non_negative, metavar="N")
    _change_options(rollback)
    diff = _leaf(
        sub, "diff", history.config_diff, "what changed from version A to version B", common
    )
    diff.add_argument("old", type=_non_negative, metavar="A")
    diff.add_argument("new", type=_non_negative, metavar="B")


def _change_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--if-match",
        metavar="N|ETAG",
        type=_if_match,
        help="publish only if this is still the current version: its ETag (as `config get` "
        "shows it), or its number N",
    )
    parser.add_argument(
        "--comment",
        metavar="TEXT",
        help="why (at most 500 characters): kept with the version and in the audit log",
    )
    add_wait_options(parser)


def _audit_commands(
    group: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    log = _leaf(group, "audit", audit.audit_list, "the audit log, newest entry first", common)
    _paging(log, "newer entries")
    sub = log.add_subparsers(dest="audit_command", metavar="COMMAND")
    _leaf(
        sub,
        "verify",
        audit.audit_verify,
        "check the audit log's hash chain (exit 6 when it is broken)",
        common,
    )


def _agent_commands(
    group: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    agents = group.add_parser("agents", help="the registered agents", parents=[common])
    sub = agents.add_subparsers(dest="agents_command", required=True, metavar="COMMAND")
    listing = _leaf(sub, "list", commands.agents_list, "the agents, one page at a time", common)
    _paging(listing, "agents")
    listing.add_argument(
        "--state", choices=[state.value for state in AgentState], help="only agents in this state"
    )
    show = _leaf(sub, "show", commands.agents_show, "one agent", common)
    show.add_argument("agent_id", metavar="ID")
    revoke = _leaf(sub, "revoke", commands.agents_revoke, "revoke an agent's token", common)
    revoke.add_argument("agent_id", metavar="ID")


def _credential_commands(
    group: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    parent = group.add_parser(
        "credentials", help="named credentials of the admin and viewer roles", parents=[common]
    )
    sub = parent.add_subparsers(dest="credentials_command", required=True, metavar="COMMAND")
    create = _leaf(
        sub,
        "create",
        credentials.credentials_create,
        "issue a named credential; its token is printed this once",
        common,
    )
    create.add_argument("name", metavar="NAME", help="1-64 of A-Z a-z 0-9 . _ @ -")
    create.add_argument("--role", required=True, choices=credentials.ROLES)
    listing = _leaf(
        sub, "list", credentials.credentials_list, "the named credentials, revoked ones too", common
    )
    _paging(listing, "credentials")
    revoke = _leaf(sub, "revoke", credentials.credentials_revoke, "revoke a credential", common)
    revoke.add_argument("name", metavar="NAME")


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Read and change a fleetconf controller's configuration and fleet.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {package_version()}")
    group = parser.add_subparsers(dest="group", required=True, metavar="COMMAND")
    _config_commands(group, common)
    settings = group.add_parser("settings", help="fleet settings", parents=[common])
    settings_sub = settings.add_subparsers(
        dest="settings_command", required=True, metavar="COMMAND"
    )
    interval = _leaf(
        settings_sub,
        "poll-interval",
        commands.poll_interval,
        "show the agents' poll interval, or set it",
        common,
    )
    interval.add_argument("seconds", nargs="?", type=int, metavar="N", help="seconds, 1-86400")
    _agent_commands(group, common)
    _credential_commands(group, common)
    _audit_commands(group, common)
    add_rollout_commands(group, common, _leaf)
    _leaf(group, "fleet", commands.fleet, "how far the current version has spread", common)
    watcher = _leaf(
        group,
        "watch",
        watch.watch,
        "follow the newest version until every live agent has applied it",
        common,
    )
    watcher.add_argument(
        "--timeout",
        type=_seconds,
        default=watch.DEFAULT_TIMEOUT_SECONDS,
        metavar="S",
        help=f"give up after S seconds, exit 5 (default {watch.DEFAULT_TIMEOUT_SECONDS:g})",
    )
    watcher.add_argument(
        "--interval",
        type=_seconds,
        default=watch.DEFAULT_INTERVAL_SECONDS,
        metavar="S",
        help=f"seconds between readings (default {watch.DEFAULT_INTERVAL_SECONDS:g})",
    )
    return parser


async def _run(args: argparse.Namespace, settings: CliSettings, console: Console) -> None:
    target = resolve(
        settings,
        controller_url=getattr(args, "controller_url", None),
        token_file=getattr(args, "token_file", None),
    )
    command: Command = args.command
    async with ControllerClient(target, timeout_seconds=settings.request_timeout_seconds) as client:
        await command(client, args, console)


def _fail(message: str) -> None:
    print(f"{PROG}: {printable(message)}", file=sys.stderr)


def run(argv: Sequence[str] | None = None) -> int:
    """Parse, run one command, and return the exit status; nothing escapes as a traceback."""
    args = build_parser().parse_args(argv)
    console = Console(json=getattr(args, "json", False), out=sys.stdout)
    try:
        asyncio.run(_run(args, load_settings(), console))
    except CliError as exc:
        _fail(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        if console.interactive:
            print(file=sys.stdout)
        _fail("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`fleetconf agents list | head -1`): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        # A bug or an answer nobody foresaw: one line, not a traceback.
        _fail(f"unexpected error: {type(exc).__name__}: {exc}")
        return EXIT_UNEXPECTED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(argv))
