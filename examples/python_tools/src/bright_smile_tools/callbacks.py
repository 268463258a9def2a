"""Callback requests: a colleague calls the caller back to confirm a booking.

Each request is appended as one JSON line to the file named by
``BRIGHT_SMILE_CALLBACKS`` (``callbacks.jsonl`` in the working directory
otherwise), through ``trio.Path`` so that the write runs in a worker thread.
A real practice would create a task in its practice-management system.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Annotated

import trio

from switchboard.actors.tools.invocation import ToolInvocation


async def request_callback(
    name: Annotated[str, "The caller's name, as they said it."],
    preferred_time: Annotated[str, "When the caller would like the appointment, in words."],
    call: ToolInvocation,
    phone: Annotated[
        str | None, "A number to call back in E.164 form; leave it out for the caller's number."
    ] = None,
) -> dict[str, str]:
    """Ask a colleague to call the caller back to confirm an appointment.

    Use it once the caller has given their name and a preferred day and time.
    Returns the request's reference and the number that will be called.
    """
    number = phone or call.from_number
    if not number:
        raise ValueError("no number to call back: ask the caller for one")
    reference = f"CB-{call.call_id[-6:].upper()}"
    record = {
        "reference": reference,
        "name": name,
        "phone": number,
        "preferred_time": preferred_time,
        "requested_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "session_id": str(call.session_id),
        "call_sid": call.call_sid,
    }
    path = trio.Path(os.environ.get("BRIGHT_SMILE_CALLBACKS", "callbacks.jsonl"))
    async with await path.open("a", encoding="utf-8") as file:
        await file.write(json.dumps(record) + "\n")
    return {"reference": reference, "call_back": number, "status": "requested"}
