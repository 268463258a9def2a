"""Typed text reaches the agent (issue 14 point 7), through the real call nursery on
Trio's MockClock: a browser page or an OpenAI Realtime client as the caller, the
OpenAI Realtime and Gemini Live fakes as the providers (in memory, real framing).

What a caller notices: a line they type is answered like a spoken one (and shown
back as their turn); typing over the agent interrupts it as speaking would, and the
interrupted answer is cut where they stopped hearing it; a client's
``response.cancel`` stops the agent; a provider that never answers a typed turn is
replaced and the next one answers it. Every event each fake saw or sent is checked
against the SDK's published types.
"""

from __future__ import annotations

from typing import Any

import trio
from gemini_live_harness import check_wire as gemini_check_wire
from openai_realtime_harness import check_wire
from typed_calls import place_typed_call, text_item

from switchboard.actors.realtime_transport import MAX_TYPED_CHARS
from switchboard.codecs import gemini_live as gemini_wire
from switchboard.orchestrator.agent_file import parse_agent_yaml
from switchboard.testing import Fault, Script, Turn

AGENT = parse_agent_yaml(
    "name: typed\ntenant: t\ngreeting: Hello.\ninstructions: You are a receptionist.\n"
    "mode: openai-realtime\nintents: []\nidle_timeout_seconds: 30\n"
)
FAILOVER_AGENT = parse_agent_yaml(
    "name: typed\ntenant: t\ngreeting: Hello.\ninstructions: You are a receptionist.\n"
    "mode: openai-realtime\nfallback: [gemini-live]\nintents: []\nidle_timeout_seconds: 30\n"
)
LONG = (
    "Our clinic offers cleanings, fillings, crowns, whitening and emergency care, "
    "and we accept most insurance plans from all the major providers in the area."
)
GREETING = "Hello there."


def user_items(received: list[dict[str, Any]]) -> list[str]:
    """The text of each user message item a fake OpenAI was given."""
    return [
        part["text"]
        for e in received
        if e["type"] == "conversation.item.create" and e["item"].get("role") == "user"
        for part in e["item"]["content"]
    ]


async def test_a_line_typed_in_the_browser_is_answered_like_a_spoken_turn(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Script(greeting=GREETING, turns=(Turn(say="We open at nine."),))
    call = await place_typed_call(
        AGENT,
        script,
        "browser",
        [(3.0, {"event": "text", "text": "when do you open"})],
        hang_up_s=8.0,
    )

    (turn,) = call.events("turn:user")
    assert turn.payload["text"] == "when do you open" and turn.payload["typed"] is True
    assert abs(turn.t_ms - 3000) < 1
    # The provider got it its own way: a user text item, then a request for the answer.
    assert user_items(call.openai.received) == ["when do you open"]
    types = call.openai.received_types()
    assert types.index("conversation.item.create") < len(types) - 1
    assert types[types.index("conversation.item.create") + 1] == "response.create"
    check_wire(call.openai)
    # The page shows the line as the caller's turn, then the answer, spoken.
    transcripts = [(m["role"], m["text"]) for _, m in call.client.of("event", "transcript")]
    assert transcripts == [
        ("agent", GREETING),
        ("caller", "when do you open"),
        ("agent", "We open at nine."),
    ]
    answer_start = [t for t, m in call.client.of("event", "agent_start") if not m["greeting"]]
    assert len(answer_start) == 1 and 3.0 <= answer_start[0] < 3.5
    answer_audio = [t for t, m in call.client.of("event", "audio") if t >= answer_start[0]]
    assert len(answer_audio) > 25  # more than half a second of speech (20 ms frames)
    assert call.store.finished[0]["turns"] == 1  # the typed turn counts as a turn


async def test_typing_over_the_agent_interrupts_it_and_the_text_is_answered_next(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Script(greeting=GREETING, turns=(Turn(say=LONG), Turn(say="Sure, it is free.")))
    call = await place_typed_call(
        AGENT,
        script,
        "browser",
        [
            (2.0, {"event": "text", "text": "tell me about the clinic"}),
            (3.0, {"event": "text", "text": "is there parking"}),
        ],
        hang_up_s=8.0,
    )

    # The page is told to drop what it holds the moment the second line is typed.
    (interrupted,) = call.client.of("event", "audio_interrupted")
    assert abs(interrupted[0] - 3.0) < 0.01
    first = interrupted[1]["response_id"]
    assert not [
        m
        for t, m in call.client.of("event", "audio")
        if m["response_id"] == first and t > interrupted[0]
    ]
    # The provider cut its answer where the caller stopped hearing it (about 1 s in),
    # stopped it, and only then was given the new line and asked to answer it.
    (barge,) = call.events("barge_in")
    assert 700 <= barge.payload["heard_ms"] <= 1000 < barge.payload["sent_ms"]
    (truncation,) = call.openai.truncations
    assert truncation["audio_end_ms"] == int(barge.payload["heard_ms"])
    types = call.openai.received_types()
    cancel = types.index("response.cancel")
    second_item = [
        i for i, e in enumerate(call.openai.received) if e["type"] == "conversation.item.create"
    ][1]
    assert cancel < second_item < len(types) - 1 and types[second_item + 1] == "response.create"
    assert not [e for e in call.openai.sent if e["type"] == "error"]  # never two responses
    check_wire(call.openai)
    # The second line is answered in full.
    agent_lines = [
        m["text"] for _, m in call.client.of("event", "transcript") if m["role"] == "agent"
    ]
    assert agent_lines[-1] == "Sure, it is free."
    ends = {m["response_id"]: m["interrupted"] for _, m in call.client.of("event", "agent_end")}
    assert ends[first] is True and list(ends.values())[-1] is False
    kinds = [e.type for e in call.events() if e.type in ("turn:user", "barge_in")]
    assert kinds == ["turn:user", "turn:user", "barge_in"]


async def test_a_provider_silent_after_a_typed_turn_is_replaced_and_the_next_answers_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    openai = Script(greeting=GREETING, faults=(Fault("stall", turn=1),))
    gemini = Script(turns=(Turn(say="We open at nine."),))
    call = await place_typed_call(
        FAILOVER_AGENT,
        openai,
        "browser",
        [(3.0, {"event": "text", "text": "when do you open"})],
        hang_up_s=10.0,
        gemini=gemini,
    )

    (failed,) = call.events("provider.failed")
    assert failed.payload["kind"] == "stall" and failed.payload["provider"] == "openai-realtime"
    stall_ms = FAILOVER_AGENT.failover.stall_timeout_ms
    assert abs(failed.t_ms - (3000 + stall_ms)) < 25  # watched from the typed turn
    # The next provider got the typed line as the caller's turn, and answered it.
    assert "when do you open" in repr(call.gemini.received)
    agent_lines = [
        m["text"] for _, m in call.client.of("event", "transcript") if m["role"] == "agent"
    ]
    assert agent_lines[-1] == "We open at nine."
    assert call.store.finished[0]["turns"] == 1


async def test_realtime_text_items_and_response_create_make_one_turn_and_cancel_stops_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Script(greeting=GREETING, turns=(Turn(say=LONG), Turn(say="Sure, it is free.")))
    call = await place_typed_call(
        AGENT,
        script,
        "realtime",
        [
            (2.0, text_item("I have a question.", id="item_q1")),
            (2.001, text_item("Tell me about the clinic.")),
            (2.002, {"type": "response.create"}),
            (2.5, {"type": "response.cancel", "event_id": "stop1"}),
            (3.0, text_item("Is there parking?")),
            (3.001, {"type": "response.create"}),
        ],
        hang_up_s=8.0,
    )

    heard = call.client
    created = [
        m["item"]
        for _, m in heard.of("type", "conversation.item.created")
        if m["item"]["role"] == "user"
    ]
    assert [i["content"][0]["text"] for i in created] == [
        "I have a question.",
        "Tell me about the clinic.",
        "Is there parking?",
    ]
    assert created[0]["id"] == "item_q1"
    assert not heard.of("type", "input_audio_buffer.committed")  # typed, not spoken
    # Two items and one response.create: one turn, the two lines together.
    assert [e.payload["text"] for e in call.events("turn:user")] == [
        "I have a question.\nTell me about the clinic.",
        "Is there parking?",
    ]
    assert user_items(call.openai.received) == [
        "I have a question.\nTell me about the clinic.",
        "Is there parking?",
    ]
    # The cancel: the client's response ends at once as OpenAI ends it, nothing of it
    # follows, and the provider's response is stopped and cut at the heard position.
    done = [m["response"] for _, m in heard.of("type", "response.done")]
    cancelled = [r for r in done if r["status"] == "cancelled"]
    assert len(cancelled) == 1
    assert cancelled[0]["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    (cancel_at,) = [
        t for t, m in heard.of("type", "response.done") if m["response"]["status"] == "cancelled"
    ]
    assert abs(cancel_at - 2.5) < 0.01
    assert not [
        m
        for t, m in heard.of("type", "response.output_audio.delta")
        if m["response_id"] == cancelled[0]["id"] and t > cancel_at
    ]
    (cancel_event,) = call.events("response.cancel")
    assert cancel_event.payload["response_ids"] == [cancelled[0]["id"]]
    (barge,) = call.events("barge_in")
    assert barge.payload["response_id"] == cancelled[0]["id"]
    assert 300 <= barge.payload["heard_ms"] <= 500  # played from ~2.05 s to 2.5 s
    assert "response.cancel" in call.openai.received_types()
    (truncation,) = call.openai.truncations
    assert truncation["audio_end_ms"] == int(barge.payload["heard_ms"])
    fake_done = [e["response"] for e in call.openai.sent if e["type"] == "response.done"]
    assert [r["status"] for r in fake_done] == ["completed", "cancelled", "completed"]
    # The next typed turn is answered in full.
    assert done[-1]["status"] == "completed"
    transcripts = [
        m["transcript"] for _, m in heard.of("type", "response.output_audio_transcript.done")
    ]
    assert transcripts[-1] == "Sure, it is free."
    check_wire(call.openai)


async def test_realtime_cancel_with_nothing_running_is_refused_and_the_call_goes_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Script(greeting=GREETING, turns=(Turn(say="Sure."),))
    long_line = "x" * 5000
    call = await place_typed_call(
        AGENT,
        script,
        "realtime",
        [
            (3.0, {"type": "response.cancel", "event_id": "c1"}),
            (3.1, text_item(long_line)),
            (3.2, {"type": "response.create"}),
            (3.5, text_item("hello")),
            (3.6, {"type": "response.create"}),
        ],
        hang_up_s=6.0,
    )

    errors = [m["error"] for _, m in call.client.of("type", "error")]
    assert [e["code"] for e in errors] == ["response_cancel_not_active", "string_above_max_length"]
    assert errors[0]["event_id"] == "c1"
    assert not call.events("response.cancel") and not call.events("barge_in")
    assert [e.payload["text"] for e in call.events("turn:user")] == ["hello"]
    transcripts = [
        m["transcript"] for _, m in call.client.of("type", "response.output_audio_transcript.done")
    ]
    assert transcripts[-1] == "Sure."


async def test_gemini_live_gets_a_typed_line_as_a_complete_user_turn_and_answers_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    agent = parse_agent_yaml(
        "name: typed\ntenant: t\ngreeting: Hello.\ninstructions: You are a receptionist.\n"
        "mode: gemini-live\nintents: []\nidle_timeout_seconds: 30\n"
    )
    call = await place_typed_call(
        agent,
        Script(),
        "browser",
        [(3.0, {"event": "text", "text": "when do you open"})],
        hang_up_s=8.0,
        gemini=Script(greeting=GREETING, turns=(Turn(say="We open at nine."),)),
    )

    contents = [
        m for m in call.gemini.received if isinstance(m, gemini_wire.ClientContent) and m.turns
    ]
    typed = [m for m in contents if m.turns[-1].text == "when do you open"]
    assert len(typed) == 1 and typed[0].turn_complete and typed[0].turns[-1].role == "user"
    gemini_check_wire(call.gemini)
    agent_lines = [
        m["text"] for _, m in call.client.of("event", "transcript") if m["role"] == "agent"
    ]
    assert agent_lines[-1] == "We open at nine."
    assert call.store.finished[0]["turns"] == 1


async def test_a_typed_line_that_interrupted_the_agent_is_answered_after_a_failover(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The interrupted answer ends after the typed line came: the line is still owed an
    answer, so the provider that replaces a silent one answers it at once."""
    openai = Script(greeting=GREETING, turns=(Turn(say=LONG),), faults=(Fault("stall", turn=2),))
    gemini = Script(turns=(Turn(say="Not this one."), Turn(say="Sure, it is free.")))
    call = await place_typed_call(
        FAILOVER_AGENT,
        openai,
        "browser",
        [
            (2.0, {"event": "text", "text": "tell me about the clinic"}),
            (3.0, {"event": "text", "text": "is there parking"}),
        ],
        hang_up_s=10.0,
        gemini=gemini,
    )

    assert len(call.events("barge_in")) == 1
    (failed,) = call.events("provider.failed")
    assert failed.payload["kind"] == "stall"
    stall_ms = FAILOVER_AGENT.failover.stall_timeout_ms
    assert 3000 + stall_ms - 25 < failed.t_ms < 3200 + stall_ms
    # The next provider was given the conversation as heard: the cut answer, then the
    # line that cut it, to answer now.
    (context,) = [
        m for m in call.gemini.received if isinstance(m, gemini_wire.ClientContent) and m.turns
    ]
    assert [t.role for t in context.turns] == ["model", "user", "model", "user"]
    assert context.turns[2].text.startswith("Our clinic") and len(context.turns[2].text) < len(LONG)
    assert context.turns[3].text == "is there parking" and context.turn_complete
    agent_lines = [
        m["text"] for _, m in call.client.of("event", "transcript") if m["role"] == "agent"
    ]
    assert agent_lines[-1] == "Sure, it is free."


async def test_realtime_text_waiting_for_a_response_is_bounded_in_all(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = Script(greeting=GREETING, turns=(Turn(say="Sure."),))
    line = "y" * (MAX_TYPED_CHARS // 2)
    call = await place_typed_call(
        AGENT,
        script,
        "realtime",
        [
            (3.0, text_item(line)),
            (3.1, text_item(line, id="item_over")),  # with the first: over the limit
            (3.2, text_item("and one more")),
            (3.3, {"type": "response.create"}),
        ],
        hang_up_s=6.0,
    )

    errors = [m["error"] for _, m in call.client.of("type", "error")]
    assert [e["code"] for e in errors] == ["string_above_max_length"]
    created = [m["item"]["id"] for _, m in call.client.of("type", "conversation.item.created")]
    assert "item_over" not in created
    assert [e.payload["text"] for e in call.events("turn:user")] == [f"{line}\nand one more"]
