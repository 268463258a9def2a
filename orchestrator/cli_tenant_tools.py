"""``switchboard tenant webhook-secret`` and ``tenant allow``: a tenant's tool settings.

    switchboard tenant webhook-secret NAME [--rotate] [--data-dir DIR]
    switchboard tenant allow NAME [ENTRY ...] [--remove ENTRY ...] [--clear] [--data-dir DIR]

``webhook-secret`` prints the secret the tenant's webhook tools are signed with
(Standard Webhooks, ``whsec_...``: give it to the business's server, which
verifies each request with it, e.g. ``standardwebhooks.Webhook(secret).verify``);
``--rotate`` replaces it (the old one stops verifying at once). Edge-function
tokens (HS256 JWTs) are signed with the same secret's bytes.

``allow`` lists, adds or removes the internal destinations the tenant's
webhooks may reach although the SSRF rules refuse private, loopback and
link-local addresses: a CIDR network (``10.1.0.0/16``) or an address, each
optionally with ``:port`` (IPv6 in brackets: ``[fd00::5]:8443``). With no
ENTRY it prints the list. Entries are checked before anything is stored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..actors.tools.address_policy import parse_allow_entry
from .cli_recording_admin import subcommands_of
from .tenant_tools import rotate_webhook_secret, set_tool_allowlist, tool_settings

if TYPE_CHECKING:
    from .store import Store

__all__ = ["cmd_allow", "cmd_webhook_secret", "register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``webhook-secret`` and ``allow`` under the ``tenant`` command of ``commands``."""
    tenant_commands = subcommands_of(commands, "tenant")
    secret = tenant_commands.add_parser(
        "webhook-secret",
        help="print (or --rotate) the secret a tenant's webhook tools are signed with",
        description=__doc__.split("\n\n")[2] if __doc__ else None,
    )
    secret.add_argument("name", help="the tenant's name")
    secret.add_argument("--rotate", action="store_true", help="replace it with a new secret")
    secret.add_argument("--data-dir", type=Path, default=None, help="data folder")
    secret.set_defaults(handler=cmd_webhook_secret)

    allow = tenant_commands.add_parser(
        "allow",
        help="internal addresses a tenant's webhooks may reach (list, add, --remove, --clear)",
        description=__doc__.split("\n\n")[3] if __doc__ else None,
    )
    allow.add_argument("name", help="the tenant's name")
    allow.add_argument("entries", nargs="*", metavar="ENTRY", help="CIDR or address[:port]")
    allow.add_argument("--remove", nargs="+", default=[], metavar="ENTRY", help="take these off")
    allow.add_argument("--clear", action="store_true", help="empty the list first")
    allow.add_argument("--data-dir", type=Path, default=None, help="data folder")
    allow.set_defaults(handler=cmd_allow)


def cmd_webhook_secret(args: argparse.Namespace) -> int:
    """Print the tenant's signing secret (made on first use); 2 for an unknown tenant."""
    from .cli import _with_store

    def secret(store: Store) -> str | None:
        tenant_id = store.tenant_by_name(args.name)
        if tenant_id is None:
            return None
        if args.rotate:
            return rotate_webhook_secret(store.db, tenant_id)
        return tool_settings(store.db, tenant_id).webhook_secret

    value = _with_store(args, secret)
    if value is None:
        print(f"error: no tenant {args.name!r}", file=sys.stderr)
        return 1  # could not be done (see cli's exit statuses)
    print(value)
    return 0


def cmd_allow(args: argparse.Namespace) -> int:
    """List or change the tenant's allowlist; 2 for an unknown tenant or a bad entry."""
    from .cli import _with_store

    added = [str(parse_allow_entry(e)) for e in args.entries]  # AllowlistError: exit 2
    removed = {str(parse_allow_entry(e)) for e in args.remove}

    def change(store: Store) -> tuple[str, ...] | None:
        tenant_id = store.tenant_by_name(args.name)
        if tenant_id is None:
            return None
        current = () if args.clear else tool_settings(store.db, tenant_id).allowlist
        entries = tuple(dict.fromkeys(e for e in (*current, *added) if e not in removed))
        if args.clear or added or removed:
            set_tool_allowlist(store.db, tenant_id, entries)
        return entries

    entries = _with_store(args, change)
    if entries is None:
        print(f"error: no tenant {args.name!r}", file=sys.stderr)
        return 1  # could not be done (see cli's exit statuses)
    if not entries:
        print(f"tenant {args.name!r}: no internal destination is allowed (the SSRF rules apply)")
    for entry in entries:
        print(entry)
    return 0
