"""``switchboard tenant webhooks``: a tenant's post-call webhooks and their deliveries.

    switchboard tenant webhooks NAME list
    switchboard tenant webhooks NAME add URL [--events call.ended call.analyzed]
    switchboard tenant webhooks NAME remove ID
    switchboard tenant webhooks NAME deliveries [--state pending|delivered|dead]
    switchboard tenant webhooks NAME retry MESSAGE_ID

``add`` subscribes URL to the events (default both) and prints the
subscription's id and its signing secret (``whsec_...``) once: the receiver
verifies each delivery with it, e.g.
``standardwebhooks.Webhook(secret).verify(body, headers)``. A loopback or
private URL is reached only if ``switchboard tenant allow`` lets it.
``deliveries`` lists the newest outbox rows (``webhook-id``, event, state,
attempts, last status or error); ``retry`` makes a ``dead`` delivery due again
with a fresh count of attempts.

Exit codes: 0 done; 2 a usage error (a bad flag, URL or event name); 1 a
failure at run time (no such tenant, subscription or delivery; database error).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from uuid import UUID

from .cli_recording_admin import subcommands_of
from .errors import ConfigError, StorageError
from .outbox_store import EVENT_TYPES, OUTBOX_STATES, OutboxRow, list_outbox, retry_outbox
from .webhook_subscriptions import add_subscription, list_subscriptions, remove_subscription

if TYPE_CHECKING:
    from .store import Store

__all__ = ["cmd_webhooks", "register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``webhooks`` under the ``tenant`` command of ``commands``."""
    tenant_commands = subcommands_of(commands, "tenant")
    hooks = tenant_commands.add_parser(
        "webhooks",
        help="a tenant's post-call webhooks: list, add, remove, deliveries, retry",
        description=__doc__.split("\n\n")[2] if __doc__ else None,
    )
    hooks.add_argument("name", help="the tenant's name")
    hooks.add_argument("--data-dir", type=Path, default=None, help="data folder")
    actions = hooks.add_subparsers(dest="webhooks_action", required=True, metavar="ACTION")
    actions.add_parser("list", help="the tenant's subscriptions")
    add = actions.add_parser("add", help="subscribe a URL (prints its secret once)")
    add.add_argument("url")
    add.add_argument(
        "--events", nargs="+", choices=EVENT_TYPES, default=list(EVENT_TYPES), metavar="EVENT"
    )
    remove = actions.add_parser("remove", help="delete a subscription and its deliveries")
    remove.add_argument("id", type=UUID)
    deliveries = actions.add_parser("deliveries", help="the newest deliveries")
    deliveries.add_argument("--state", choices=OUTBOX_STATES, default=None)
    retry = actions.add_parser("retry", help="make a dead delivery due again")
    retry.add_argument("message_id", metavar="MESSAGE_ID")
    hooks.set_defaults(handler=cmd_webhooks)


def _run(args: argparse.Namespace, store: Store) -> tuple[int, list[str]]:
    tenant_id = store.tenant_by_name(args.name)
    if tenant_id is None:
        return 1, [f"error: no tenant {args.name!r}"]
    db, action = store.db, args.webhooks_action
    if action == "add":
        sub_id, secret = add_subscription(db, tenant_id, args.url, args.events)
        return 0, [f"subscription {sub_id}", f"secret {secret} (shown once: keep it)"]
    if action == "remove":
        if remove_subscription(db, tenant_id, args.id):
            return 0, [f"removed {args.id}"]
        return 1, [f"error: tenant {args.name!r} has no subscription {args.id}"]
    if action == "retry":
        if retry_outbox(db, tenant_id, args.message_id):
            return 0, [f"{args.message_id} is due again"]
        return 1, [f"error: no undelivered delivery {args.message_id!r}"]
    if action == "deliveries":
        rows = list_outbox(db, tenant_id, state=args.state)
        return 0, [_delivery_line(r) for r in rows] or ["no deliveries"]
    subs = list_subscriptions(db, tenant_id)
    return 0, [
        f"{s.id} {s.url} events={','.join(s.event_types)}" + ("" if s.enabled else " (disabled)")
        for s in subs
    ] or [f"tenant {args.name!r} has no webhooks"]


def _delivery_line(row: OutboxRow) -> str:
    head = f"{row.message_id} {row.event_type} {row.state} attempts={row.attempts}"
    if row.delivered_at is not None:
        return f"{head} delivered={row.delivered_at.isoformat()} call={row.session_id}"
    last = row.last_status or row.last_error or "-"
    return f"{head} next={row.next_attempt_at.isoformat()} last={last} call={row.session_id}"


def cmd_webhooks(args: argparse.Namespace) -> int:
    """Run the action; the exit code of the module docstring."""
    from .cli import _with_store

    try:
        code, lines = _with_store(args, lambda store: _run(args, store))
    except ConfigError as exc:  # the URL or events the user gave
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(line, file=sys.stderr if code else sys.stdout)
    return code
