"""Webhook and edge-function tools against real servers on loopback, on Trio's MockClock.

The hostile-server matrix of issue 14: each case ends with a failed
``ToolOutcome`` within its deadline (virtual time), and no connection reaches
the canary on a blocked address. The servers (tests/tool_servers.py) run in
the test's own Trio run; host names come from a fake resolver.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

import pytest
import trio
import trustme
from tool_servers import (
    DRIP_BYTES,
    HUGE_BYTES,
    BusinessServer,
    CanaryServer,
    FakeResolver,
    RecordingBackend,
    start_business,
    start_canary,
)

from switchboard.actors.tools.edge_function import EdgeFunctionRunner, signing_key
from switchboard.actors.tools.guarded_http import GuardedHttp, SystemResolver
from switchboard.actors.tools.invocation import TenantToolSettings, ToolInvocation, ToolOutcome
from switchboard.actors.tools.tool_http import MAX_ANSWER_BYTES, MODEL_OUTPUT_BYTES
from switchboard.actors.tools.webhook import WebhookRunner
from switchboard.orchestrator.agents import ToolSpec

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
TENANT_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
SESSION_ID = uuid.UUID("00000000-0000-4000-8000-0000000000aa")
TIMEOUT_MS = 2000


def invocation(call_id: str = "call_1", session_id: uuid.UUID = SESSION_ID) -> ToolInvocation:
    return ToolInvocation(
        call_id=call_id,
        name="book_table",
        arguments={"party_size": 4, "name": "Zoë"},
        session_id=session_id,
        tenant_id=TENANT_ID,
        agent_id=uuid.UUID("00000000-0000-4000-8000-0000000000bb"),
        tenant="acme",
        agent="receptionist",
        call_sid="CA123",
        from_number="+15550100",
        to_number="+15550199",
    )


@dataclass
class Net:
    """A business on 127.0.0.1, a canary on 127.0.0.2 at the same port, and the client."""

    business: BusinessServer
    port: int
    canary: CanaryServer
    resolver: FakeResolver
    backend: RecordingBackend
    http: GuardedHttp

    def webhook(
        self, path: str, *, host: str = "business.test", allowlisted: bool = True
    ) -> WebhookRunner:
        spec = ToolSpec(
            "book_table",
            "Book a table.",
            url=f"http://{host}:{self.port}/{path}",
            headers={"x-api-key": "k-1", "webhook-signature": "forged"},
            timeout_ms=TIMEOUT_MS,
        )
        allow = (f"127.0.0.1:{self.port}",) if allowlisted else ()
        return WebhookRunner(spec, TenantToolSettings(TENANT_ID, SECRET, allow), self.http)

    def assert_nothing_reached_the_canary(self) -> None:
        assert self.canary.connections == []
        assert all(host != self.canary.host for host, _ in self.backend.connects)


@pytest.fixture
async def net(nursery: trio.Nursery) -> Net:
    business = BusinessServer(secret=SECRET, jwt_key=signing_key(SECRET))
    _, port = await start_business(nursery, business)
    canary = await start_canary(nursery, "127.0.0.2", port)
    business.redirect_to = f"http://127.0.0.2:{port}/tool"
    resolver = FakeResolver(
        {
            "business.test": ["127.0.0.1"],
            "canary.test": ["127.0.0.2"],
            "metadata.test": ["169.254.169.254"],
            "mapped.test": ["::ffff:127.0.0.2"],
            "mixed.test": ["93.184.216.34", "127.0.0.2"],
        },
        rebind={"rebind.test": ["127.0.0.2"]},
    )
    resolver.table["rebind.test"] = ["127.0.0.1"]
    backend = RecordingBackend()
    return Net(
        business, port, canary, resolver, backend, GuardedHttp(resolver, network_backend=backend)
    )


async def timed(runner: WebhookRunner | EdgeFunctionRunner) -> tuple[ToolOutcome, float]:
    t0 = trio.current_time()
    outcome = await runner(invocation())
    return outcome, trio.current_time() - t0


# -- the business, reached and verified ------------------------------------------------------


async def test_a_signed_webhook_reaches_an_allowlisted_business_and_its_answer_is_given(
    net: Net, autojump_clock: trio.testing.MockClock
) -> None:
    outcome, _ = await timed(net.webhook("tool"))

    assert outcome.ok, outcome
    assert outcome.output == '{"booked":true,"table":12}'
    assert outcome.detail["address"] == f"127.0.0.1:{net.port}"
    [got] = net.business.requests
    assert got.signature_ok is True  # standardwebhooks.Webhook(secret).verify passed
    assert got.method == "POST" and got.path == "/tool"
    assert got.headers["host"] == f"business.test:{net.port}"  # the URL's host, not the address
    assert got.headers["idempotency-key"] == got.headers["webhook-id"]
    assert got.headers["x-api-key"] == "k-1"  # the tool's own header, sent
    assert got.headers["content-type"] == "application/json"
    assert got.json() == {
        "tool": "book_table",
        "call_id": "call_1",
        "arguments": {"party_size": 4, "name": "Zoë"},
        "call": invocation().context_json(),
    }
    net.assert_nothing_reached_the_canary()


async def test_the_webhook_id_is_the_same_on_a_retry_and_differs_across_calls(
    net: Net, autojump_clock: trio.testing.MockClock
) -> None:
    runner = net.webhook("tool")
    await runner(invocation("call_1"))
    await runner(invocation("call_1"))  # the same tool call, delivered again
    await runner(invocation("call_2"))
    await runner(invocation("call_1", session_id=uuid.uuid4()))  # another call's call_1

    ids = [r.headers["webhook-id"] for r in net.business.requests]
    assert ids[0] == ids[1]
    assert len(set(ids)) == 3
    assert all(r.signature_ok for r in net.business.requests)


async def test_a_long_answer_is_cut_for_the_model_with_a_note(
    net: Net, autojump_clock: trio.testing.MockClock
) -> None:
    net.business.answer = {"menu": [f"dish number {i}" for i in range(1000)]}

    outcome, _ = await timed(net.webhook("tool"))

    assert outcome.ok and outcome.detail["truncated"] is True
    shown, note = outcome.output.split(" [truncated: ")
    assert len(shown.encode()) <= MODEL_OUTPUT_BYTES
    assert shown.startswith('{"menu":["dish number 0","dish number 1"')
    compact = json.dumps(net.business.answer, separators=(",", ":"))
    assert note == f"the answer is {len(compact)} bytes; the first {MODEL_OUTPUT_BYTES} shown]"


async def test_an_empty_answer_is_a_success(
    net: Net, autojump_clock: trio.testing.MockClock
) -> None:
    outcome, _ = await timed(net.webhook("empty"))
    assert outcome.ok and outcome.detail["status"] == 204


async def test_without_the_allowlist_the_loopback_business_is_refused_unrequested(
    net: Net, autojump_clock: trio.testing.MockClock
) -> None:
    outcome, _ = await timed(net.webhook("tool", allowlisted=False))

    assert outcome.error == "refused"
    assert "127.0.0.1 is loopback" in outcome.detail["reason"]
    assert net.business.requests == [] and net.backend.connects == []


# -- the hostile matrix ---------------------------------------------------------------------


async def test_a_ten_second_slow_drip_ends_at_the_deadline(
    net: Net, autojump_clock: trio.testing.MockClock
) -> None:
    outcome, elapsed = await timed(net.webhook("slow-drip"))

    assert outcome.error == "timeout"
    assert elapsed == pytest.approx(TIMEOUT_MS / 1000)  # the whole exchange, not per read
    assert 0 < net.business.dripped < DRIP_BYTES  # it was dripping, and was cut off
    net.assert_nothing_reached_the_canary()


async def test_a_50_mib_answer_is_cut_off_at_the_byte_cap(
    net: Net, autojump_clock: trio.testing.MockClock
) -> None:
    outcome, elapsed = await timed(net.webhook("huge"))

    assert outcome.error == "too_large"
    assert MAX_ANSWER_BYTES < outcome.detail["bytes_read"] <= MAX_ANSWER_BYTES + 2 * 2**20
    assert net.business.huge_sent < HUGE_BYTES  # the rest was never asked for
    assert elapsed < TIMEOUT_MS / 1000
    net.assert_nothing_reached_the_canary()


async def test_an_answer_announcing_50_mib_is_refused_before_its_body(
    net: Net, autojump_clock: trio.testing.MockClock
) -> None:
    outcome, elapsed = await timed(net.webhook("huge-declared"))

    assert outcome.error == "too_large"
    assert outcome.detail["content_length"] == HUGE_BYTES
    assert elapsed < TIMEOUT_MS / 1000  # not waiting for a body that is not coming


async def test_a_redirect_to_a_loopback_canary_is_not_followed(
    net: Net, autojump_clock: trio.testing.MockClock
) -> None:
    outcome, elapsed = await timed(net.webhook("redirect"))

    assert outcome.error == "refused"
    assert outcome.detail["location"] == f"http://127.0.0.2:{net.port}/tool"
    assert "redirects are not followed" in outcome.detail["reason"]
    assert outcome.output == "The book_table tool answered with a redirect, which is not followed."
    assert elapsed < TIMEOUT_MS / 1000
    net.assert_nothing_reached_the_canary()


async def test_a_name_resolving_to_the_cloud_metadata_address_is_refused(
    net: Net, autojump_clock: trio.testing.MockClock
) -> None:
    outcome, _ = await timed(net.webhook("latest/meta-data", host="metadata.test"))

    assert outcome.error == "refused"
    assert outcome.detail["reason"].startswith(
        "metadata.test resolves to an address that is refused: "
        "169.254.169.254 is link-local (cloud metadata)"
    )
    assert outcome.detail["reason"] in outcome.output
    assert net.backend.connects == []


async def test_a_name_resolving_to_an_ipv4_mapped_loopback_address_is_refused(
    net: Net, autojump_clock: trio.testing.MockClock
) -> None:
    outcome, _ = await timed(net.webhook("tool", host="mapped.test"))

    assert outcome.error == "refused"
    assert (
        "::ffff:127.0.0.2 carries 127.0.0.2 (IPv4-mapped), which is loopback"
        in (outcome.detail["reason"])
    )
    assert net.backend.connects == []
    net.assert_nothing_reached_the_canary()


@pytest.mark.parametrize(
    "url",
    [
        "http://[::ffff:127.0.0.2]:{port}/tool",
        "http://127.0.0.2:{port}/tool",
        "http://[::1]:{port}/tool",
        "http://169.254.169.254/latest/meta-data",
    ],
)
async def test_an_ip_literal_url_is_checked_like_a_name(
    net: Net, autojump_clock: trio.testing.MockClock, url: str
) -> None:
    spec = ToolSpec("book_table", "Book.", url=url.format(port=net.port))
    runner = WebhookRunner(spec, TenantToolSettings(TENANT_ID, SECRET), net.http)

    outcome, _ = await timed(runner)

    assert outcome.error == "refused"
    assert net.resolver.lookups == [] and net.backend.connects == []
    net.assert_nothing_reached_the_canary()


async def test_a_name_with_one_internal_address_among_public_ones_is_refused(
    net: Net, autojump_clock: trio.testing.MockClock
) -> None:
    outcome, _ = await timed(net.webhook("tool", host="mixed.test"))

    assert outcome.error == "refused"
    assert outcome.detail["address"] == "127.0.0.2"
    assert net.backend.connects == []


async def test_dns_that_changes_between_check_and_connect_is_looked_up_once(
    net: Net, autojump_clock: trio.testing.MockClock
) -> None:
    """The first answer (the allowlisted business) is checked and connected to; the
    name's next answer (the canary, same port) is never asked for within the request."""
    outcome, _ = await timed(net.webhook("tool", host="rebind.test"))

    assert outcome.ok, outcome
    assert net.resolver.lookups == ["rebind.test"]
    assert net.backend.connects == [("127.0.0.1", net.port)]
    assert len(net.business.requests) == 1
    net.assert_nothing_reached_the_canary()

    # The next tool call looks up again, gets the canary's address and checks THAT.
    again, _ = await timed(net.webhook("tool", host="rebind.test"))
    assert again.error == "refused" and "127.0.0.2 is loopback" in again.detail["reason"]
    net.assert_nothing_reached_the_canary()


async def test_an_answer_that_is_not_json_is_an_error(
    net: Net, autojump_clock: trio.testing.MockClock
) -> None:
    outcome, _ = await timed(net.webhook("not-json"))

    assert outcome.error == "invalid_json"
    assert outcome.detail["excerpt"] == "<html>ok"


async def test_http_500_is_an_error_with_the_status_and_what_the_server_said(
    net: Net, autojump_clock: trio.testing.MockClock
) -> None:
    outcome, _ = await timed(net.webhook("error"))

    assert outcome.error == "http_status"
    assert outcome.detail["status"] == 500
    assert outcome.output == "The book_table tool failed (HTTP 500): database down."


async def test_a_compressed_answer_nobody_asked_for_is_refused(
    net: Net, autojump_clock: trio.testing.MockClock
) -> None:
    outcome, _ = await timed(net.webhook("gzip"))

    assert outcome.error == "network" and outcome.detail["content_encoding"] == "gzip"
    [got] = net.business.requests
    assert got.headers["accept-encoding"] == "identity"


@pytest.mark.parametrize("url", ["ftp://business.test/x", "file:///etc/passwd", "gopher://x/"])
async def test_only_http_and_https_urls_are_called(
    net: Net, autojump_clock: trio.testing.MockClock, url: str
) -> None:
    runner = WebhookRunner(
        ToolSpec("t", "T.", url=url), TenantToolSettings(TENANT_ID, SECRET), net.http
    )

    outcome = await runner(invocation())

    assert outcome.error == "refused" and "only http and https" in outcome.detail["reason"]
    assert net.resolver.lookups == [] and net.backend.connects == []


async def test_a_name_that_does_not_resolve_and_a_closed_port_are_network_errors(
    net: Net, autojump_clock: trio.testing.MockClock
) -> None:
    outcome, _ = await timed(net.webhook("tool", host="nowhere.test"))
    assert outcome.error == "network" and "does not resolve" in outcome.detail["reason"]

    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    closed = listener.socket.getsockname()[1]
    await listener.aclose()
    spec = ToolSpec("t", "T.", url=f"http://business.test:{closed}/tool", timeout_ms=TIMEOUT_MS)
    allow = TenantToolSettings(TENANT_ID, SECRET, (f"127.0.0.1:{closed}",))
    refused, elapsed = await timed(WebhookRunner(spec, allow, net.http))
    assert refused.error == "network" and elapsed < TIMEOUT_MS / 1000


async def test_a_slow_tool_does_not_hold_up_another(
    net: Net, autojump_clock: trio.testing.MockClock
) -> None:
    done: dict[str, float] = {}
    t0 = trio.current_time()

    async def run(path: str) -> None:
        await net.webhook(path)(invocation(path))
        done[path] = trio.current_time() - t0

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "slow-drip")
        nursery.start_soon(run, "tool")

    assert done["tool"] < 0.1 and done["slow-drip"] == pytest.approx(TIMEOUT_MS / 1000)


async def test_an_unusable_secret_is_reported_not_raised(
    net: Net, autojump_clock: trio.testing.MockClock
) -> None:
    spec = ToolSpec("t", "T.", url=f"http://business.test:{net.port}/tool")
    bad = WebhookRunner(spec, TenantToolSettings(TENANT_ID, "whsec_"), net.http)
    outcome = await bad(invocation())
    assert outcome.error == "not_configured" and net.business.requests == []

    bad_allowlist = TenantToolSettings(TENANT_ID, SECRET, ("0.0.0.0/0",))
    outcome = await WebhookRunner(spec, bad_allowlist, net.http)(invocation())
    assert outcome.error == "not_configured" and "wider than /8" in outcome.detail["reason"]


# -- edge functions ----------------------------------------------------------------------------


def edge(net: Net, function: str, now: Callable[[], float] = time.time) -> EdgeFunctionRunner:
    spec = ToolSpec("book_table", "Book.", function=function, timeout_ms=TIMEOUT_MS)
    base_url = f"http://127.0.0.1:{net.port}/functions/v1/{{tenant}}"
    settings = TenantToolSettings(TENANT_ID, SECRET)
    return EdgeFunctionRunner(spec, settings, net.http, base_url, now=now)


async def test_an_edge_function_gets_a_verifiable_short_lived_tenant_token(
    net: Net, autojump_clock: trio.testing.MockClock
) -> None:
    before = int(time.time())
    outcome, _ = await timed(edge(net, "tool"))

    assert outcome.ok, outcome
    [got] = net.business.requests
    assert got.path == "/functions/v1/acme/tool"
    assert got.token_error is None and got.claims is not None
    issued_at = got.claims.pop("iat")
    assert before <= issued_at <= time.time()
    assert got.claims == {
        "iss": "switchboard",
        "aud": "edge-functions",
        "sub": str(TENANT_ID),
        "tenant_id": str(TENANT_ID),
        "session_id": str(SESSION_ID),
        "tool_call_id": "call_1",
        "exp": issued_at + 60,
    }
    assert got.json()["arguments"] == {"party_size": 4, "name": "Zoë"}


async def test_an_expired_edge_function_token_is_refused_by_the_function(
    net: Net, autojump_clock: trio.testing.MockClock
) -> None:
    await edge(net, "tool", now=lambda: time.time() - 61)(invocation())  # expired a second ago
    [got] = net.business.requests
    assert got.claims is None and got.token_error == "Signature has expired"


async def test_an_edge_function_on_loopback_keeps_the_deadline_and_refuses_redirects(
    net: Net, autojump_clock: trio.testing.MockClock
) -> None:
    drip, elapsed = await timed(edge(net, "slow-drip"))
    assert drip.error == "timeout" and elapsed == pytest.approx(TIMEOUT_MS / 1000)

    redirect, _ = await timed(edge(net, "redirect"))
    assert redirect.error == "refused"
    net.assert_nothing_reached_the_canary()


async def test_an_edge_function_name_cannot_climb_out_of_its_path(
    net: Net, autojump_clock: trio.testing.MockClock
) -> None:
    runner = edge(net, "../admin")
    assert runner.url_for(invocation()).endswith("/functions/v1/acme/..%2Fadmin")


# -- HTTPS: the checked address, the URL's name ---------------------------------------------


async def test_https_goes_to_the_checked_address_under_the_urls_name(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """SNI and the certificate check use the URL's host, though the connection is made
    to the address that was checked; a certificate for another name is refused."""
    ca = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("business.test").configure_cert(server_tls)
    business = BusinessServer(secret=SECRET, tls=server_tls)
    _, port = await start_business(nursery, business)
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    resolver = FakeResolver({"business.test": ["127.0.0.1"], "impostor.test": ["127.0.0.1"]})
    http = GuardedHttp(resolver, ssl_context=client_tls)
    settings = TenantToolSettings(TENANT_ID, SECRET, (f"127.0.0.1:{port}",))

    def runner(host: str) -> WebhookRunner:
        spec = ToolSpec("book_table", "Book.", url=f"https://{host}:{port}/tool")
        return WebhookRunner(spec, settings, http)

    outcome = await runner("business.test")(invocation())
    assert outcome.ok, outcome
    assert business.sni == ["business.test"]
    assert business.requests[0].signature_ok is True

    impostor = await runner("impostor.test")(invocation())
    assert impostor.error == "network"
    assert "CERTIFICATE_VERIFY_FAILED" in impostor.detail["reason"]
    assert len(business.requests) == 1  # nothing was sent to a server that is not who it says


# -- the system resolver -----------------------------------------------------------------------


async def test_the_system_resolver_finds_localhost_and_the_rules_refuse_it() -> None:
    """Real clock: the system resolver runs in a worker thread."""
    resolver = SystemResolver()
    addresses = await resolver.resolve("localhost", 80)
    assert addresses and set(addresses) <= {"127.0.0.1", "::1"}

    spec = ToolSpec("t", "T.", url="http://localhost:9/x", timeout_ms=5000)
    outcome = await WebhookRunner(spec, TenantToolSettings(TENANT_ID, SECRET), GuardedHttp())(
        invocation()
    )
    assert outcome.error == "refused" and "is loopback" in outcome.detail["reason"]


async def test_an_internationalised_name_is_looked_up_and_connected_as_idna(
    net: Net, autojump_clock: trio.testing.MockClock
) -> None:
    net.resolver.table["xn--bcher-kva.test"] = ["127.0.0.1"]

    outcome, _ = await timed(net.webhook("tool", host="bücher.test"))

    assert outcome.ok, outcome
    assert net.resolver.lookups == ["xn--bcher-kva.test"]
    assert net.business.requests[0].headers["host"] == f"xn--bcher-kva.test:{net.port}"


async def test_frozen_nested_arguments_are_sent_as_json(
    net: Net, autojump_clock: trio.testing.MockClock
) -> None:
    frozen = MappingProxyType({"party": MappingProxyType({"size": 4, "names": ("Ana", "Bo")})})
    call = dataclasses.replace(invocation(), arguments=frozen)

    outcome = await net.webhook("tool")(call)

    assert outcome.ok, outcome
    assert net.business.requests[0].json()["arguments"] == {
        "party": {"size": 4, "names": ["Ana", "Bo"]}
    }
