"""End to end: a phone call to the example receptionist asks a question its shipped FAQ
answers (a real server on loopback, the real PostgreSQL index, `switchboard call`'s
client speaking Media Streams), as the README shows."""

from __future__ import annotations

from test_e2e_twilio import Server, call, server  # noqa: F401 - the server fixture

from switchboard.orchestrator.caller import CallerLine


async def test_a_caller_asks_the_faq_and_the_retrieval_is_logged(server: Server) -> None:  # noqa: F811
    summary = await call(server, CallerLine.say("is there parking"))
    (turn,) = summary.turns
    assert turn.agent == (
        "Yes, there is free parking for patients behind the building; the entrance is on Oak"
        " Lane. The city bus number 12 stops right in front of the practice."
    )
    ((session_id,),) = server.rows(
        "select id from voice_sessions where call_sid = %s", summary.call_sid
    )
    ((payload,),) = server.rows(
        "select payload from call_events where session_id = %s and type = 'retrieval'",
        session_id,
    )
    assert payload["query"] == "Is there parking"
    assert payload["match"] == "all_words" and "error" not in payload
    assert payload["hits"][0]["source"] == "knowledge/faq.md"
    assert payload["hits"][0]["heading"] == "Is there parking?"
    tools = server.rows(
        "select payload->>'name' from call_events where session_id = %s and type = 'tool:call'",
        session_id,
    )
    assert tools == [("search_knowledge",)]
