"""``switchboard tenant webhooks``: what an operator types, against the session's PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from post_call_support import ended_call
from standardwebhooks import Webhook

from switchboard.orchestrator import cli
from switchboard.orchestrator.store import Store


@pytest.fixture
def run(
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(tmp_path))

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(["tenant", "webhooks", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_add_list_deliveries_retry_and_remove(run, store: Store) -> None:  # type: ignore[no-untyped-def]
    store.ensure_tenant("bakery")
    code, out, _ = run("bakery", "add", "https://hooks.example.com/calls", "--events", "call.ended")
    assert code == 0
    sub_line, secret_line = out.splitlines()
    sub_id = sub_line.removeprefix("subscription ")
    secret = secret_line.split()[1]
    Webhook(secret)  # a secret standardwebhooks accepts (whsec_ + base64)
    assert run("bakery", "list") == (
        0,
        f"{sub_id} https://hooks.example.com/calls events=call.ended\n",
        "",
    )
    assert secret not in run("bakery", "list")[1]  # shown once only

    ended_call(store)
    code, out, _ = run("bakery", "deliveries", "--state", "pending")
    assert code == 0
    [line] = out.splitlines()
    msg_id = line.split()[0]
    assert msg_id.startswith("msg_") and " call.ended pending attempts=0 " in line
    with store.db.tenant(store.ensure_tenant("bakery")) as cur:
        cur.execute("UPDATE webhook_outbox SET state = 'dead', attempts = 8")
    assert run("bakery", "deliveries", "--state", "pending")[1] == "no deliveries\n"
    assert run("bakery", "retry", msg_id) == (0, f"{msg_id} is due again\n", "")
    assert " pending attempts=0 " in run("bakery", "deliveries")[1]

    assert run("bakery", "remove", sub_id) == (0, f"removed {sub_id}\n", "")
    assert run("bakery", "list")[1] == "tenant 'bakery' has no webhooks\n"
    assert run("bakery", "deliveries")[1] == "no deliveries\n"  # removed with it


def test_exit_codes_usage_2_failures_1(run, store: Store) -> None:  # type: ignore[no-untyped-def]
    store.ensure_tenant("bakery")
    with pytest.raises(SystemExit) as usage:
        run("bakery", "add", "https://x.example", "--events", "call.started")
    assert usage.value.code == 2
    code, _, err = run("bakery", "add", "ftp://x.example/hook")
    assert code == 2 and "http:// or https://" in err
    code, _, err = run("nobody", "list")
    assert code == 1 and "no tenant 'nobody'" in err
    code, _, err = run("bakery", "remove", "00000000-0000-0000-0000-000000000000")
    assert code == 1 and "no subscription" in err
    code, _, err = run("bakery", "retry", "msg_" + "0" * 32)
    assert code == 1 and "no undelivered delivery" in err
