"""Transfers through the real call nursery on Trio's MockClock (Gemini Live fake).

Issue 11: with no Twilio REST credentials the agent announced a transfer that
could never happen and the caller sat in silence until the idle timeout. Now
the tool fails at once, the agent tells the caller, the call goes on, and the
event log says why.
"""

from __future__ import annotations

import trio
from provider_calls import place_call

from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.testing import Script, ToolStep, Turn

AGENT = parse_agent_yaml(
    "name: tr\ntenant: t\ngreeting: Thanks for calling the clinic.\n"
    "instructions: You are a receptionist.\nmode: gemini-live\n"
    'transfer_number: "+15005550009"\nidle_timeout_seconds: 30\nintents: []\n'
)
ASK_FOR_PERSON = "can I speak to a person"
ASK_HOURS = "what are your opening hours"
CANNOT = "I'm sorry, I can't put you through right now. I can help you myself."


async def test_a_transfer_without_rest_credentials_is_refused_at_once_and_the_call_goes_on(
    autojump_clock: trio.abc.Clock,
) -> None:
    gemini = Script(
        turns=(
            Turn(
                say="One moment.",
                tool=ToolStep("transfer_to_human", on_error=CANNOT),
                then_say="Putting you through now.",
                caller_text=ASK_FOR_PERSON,
            ),
            Turn(say="We open at nine.", caller_text=ASK_HOURS),
        )
    )
    call = await place_call(
        AGENT,
        Script(),
        gemini,
        lines=(ASK_FOR_PERSON, ASK_HOURS),
        speak_at=(2.0, 12.0),
        hang_up_at=20.0,
    )
    # The agent is told the transfer is not possible, and says so in the same response.
    (result,) = call.events("tool:result")
    assert result.payload["ok"] is False and "not possible" in result.payload["output"]
    said = [e.payload["text"] for e in call.events("turn:agent")]
    assert said[1] == f"One moment. {CANNOT}"
    assert not any("Putting you through" in text for text in said)
    # The log says why, once, when the tool ran: no transfer is attempted later.
    (transfer,) = call.events("transfer")
    assert transfer.payload["redirected"] is False
    assert transfer.payload["reason"] == "no_credentials"
    assert "TWILIO_ACCOUNT_SID" in transfer.payload["detail"]
    assert call.at(transfer) <= call.at(result)
    # No silence: the explanation plays on from the tool call, and the call goes on.
    (tool_call,) = call.events("tool:call")
    _, heard_again = call.twilio.heard_again_after(call.at(result))
    assert heard_again - call.at(tool_call) <= 1.5
    assert said[2:] == ["We open at nine."]
    assert not call.events("call.ending")  # the caller hung up, not the idle timeout
