"""Transfers through the real call nursery on Trio's MockClock (Gemini Live fake).

Issue 11: with no Twilio REST credentials the agent announced a transfer that
could never happen and the caller sat in silence until the idle timeout. Now
the tool fails at once, the agent tells the caller, the call goes on, and the
event log says why.
"""

from __future__ import annotations

import httpx
import trio
from provider_calls import place_call

from switchboard.actors.tool_executor import TwilioRest
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
TRANSFER_TURN = Turn(  # the model's answer to a caller who asks for a person
    say="One moment.",
    tool=ToolStep("transfer_to_human", on_error=CANNOT),
    then_say="Putting you through now.",
    caller_text=ASK_FOR_PERSON,
)


async def test_a_transfer_without_rest_credentials_is_refused_at_once_and_the_call_goes_on(
    autojump_clock: trio.abc.Clock,
) -> None:
    gemini = Script(
        turns=(
            TRANSFER_TURN,
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


async def test_a_transfer_twilio_refuses_after_the_announcement_is_told_to_the_caller(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The agent said it was putting the caller through; Twilio's REST API refused the
    redirect. The agent is asked to say so at once, rather than leave them waiting."""
    sorry = "I'm sorry, I couldn't put you through. Can I help you with anything else?"
    gemini = Script(
        turns=(
            TRANSFER_TURN,
            Turn(say=sorry),  # its answer to the runtime's note
            Turn(say="We open at nine.", caller_text=ASK_HOURS),
        )
    )
    refused = httpx.MockTransport(lambda request: httpx.Response(404, text="call not found"))
    async with httpx.AsyncClient(transport=refused) as http:
        call = await place_call(
            AGENT,
            Script(),
            gemini,
            lines=(ASK_FOR_PERSON, ASK_HOURS),
            speak_at=(2.0, 16.0),
            hang_up_at=24.0,
            twilio_rest=TwilioRest("AC42", "secret", "https://api.twilio.test"),
            http=http,
        )
    (transfer,) = call.events("transfer")
    assert transfer.payload["redirected"] is False and transfer.payload["reason"] == "rest_error"
    assert "HTTP 404" in transfer.payload["detail"]
    said = [e.payload["text"] for e in call.events("turn:agent")]
    assert said[1:] == ["One moment. Putting you through now.", sorry, "We open at nine."]
    # The caller hears it within moments of the refusal, not after a silence.
    _, heard_again = call.twilio.heard_again_after(call.at(transfer))
    assert heard_again - call.at(transfer) <= 0.5
    assert "did not go through" in call.gemini_context()
