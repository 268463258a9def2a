"""Free appointment times at Bright Smile Dental.

The booked times come from the practice's diary: a JSON file named by the
``BRIGHT_SMILE_DIARY`` environment variable (the packaged sample diary
otherwise), read with ``trio.Path`` so that the file read runs in a worker
thread and never blocks the call's event loop. A real practice would ask its
practice-management system here instead, with ``httpx.AsyncClient`` or, for a
blocking client library, ``await trio.to_thread.run_sync(...)``.
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime, time, timedelta
from importlib import resources
from typing import Annotated, Final, Literal
from zoneinfo import ZoneInfo

import trio

TIMEZONE: Final = ZoneInfo("America/New_York")
SLOT_MINUTES: Final = 30
OPENING_HOURS: Final = {  # weekday (Monday = 0) -> (opens, closes), as in receptionist.yaml
    0: (time(8), time(18)),
    1: (time(8), time(18)),
    2: (time(8), time(18)),
    3: (time(8), time(18)),
    4: (time(8), time(18)),
    5: (time(9), time(13)),
}
WEEKDAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MAX_TIMES_SPOKEN: Final = 4


async def check_appointment_slots(
    day: Annotated[
        str | None,
        "The day the caller wants: 'today', 'tomorrow', a weekday such as 'tuesday' "
        "(the next one), or a date as YYYY-MM-DD. Leave it out for the next open day.",
    ] = None,
    part_of_day: Literal["morning", "afternoon", "any"] = "any",
) -> str:
    """Find free appointment times at the practice on a given day.

    Returns a sentence to read to the caller, for example "On Tuesday 8
    December we have 8:30 AM, 9:00 AM, 9:30 AM or 12:00 PM free, and 9 more
    times.", or says the practice is closed that day and names the next open day.

    Args:
        part_of_day: morning (before noon), afternoon, or any.
    """
    now = datetime.now(TIMEZONE)
    wanted = _resolve_day(day, now.date())
    if wanted is None:
        return f"I could not tell which day {day!r} is; ask the caller for a weekday or a date."
    searched, free = wanted, []
    for offset in range(7):  # the first open day (with room, when no day is asked)
        candidate = wanted + timedelta(days=offset)
        if candidate.weekday() in OPENING_HOURS:
            searched, free = candidate, await _free_times(candidate, now, part_of_day)
            if free or day:
                break
    when = "" if part_of_day == "any" else f" in the {part_of_day}"
    closed = wanted.weekday() not in OPENING_HOURS
    prefix = f"We are closed on {_spoken(wanted)}. " if closed and day else ""
    if not free:
        return f"{prefix}There are no free times{when} on {_spoken(searched)}."
    spoken = [_spoken_time(t) for t in free[:MAX_TIMES_SPOKEN]]
    times = spoken[0] if len(spoken) == 1 else ", ".join(spoken[:-1]) + f" or {spoken[-1]}"
    more = len(free) - len(spoken)
    tail = f", and {more} more times" if more else ""
    return f"{prefix}On {_spoken(searched)} we have {times} free{when}{tail}."


async def _free_times(day: date, now: datetime, part_of_day: str) -> list[time]:
    booked = await _booked_times(day)
    return [
        slot
        for slot in _slots(day)
        if slot.strftime("%H:%M") not in booked
        and datetime.combine(day, slot, TIMEZONE) > now
        and (part_of_day == "any" or (slot.hour < 12) == (part_of_day == "morning"))
    ]


def _resolve_day(day: str | None, today: date) -> date | None:
    if day is None or not day.strip():
        return today
    word = day.strip().lower()
    if word == "today":
        return today
    if word == "tomorrow":
        return today + timedelta(days=1)
    if word in WEEKDAYS:
        ahead = (WEEKDAYS.index(word) - today.weekday()) % 7
        return today + timedelta(days=ahead)
    try:
        return date.fromisoformat(word)
    except ValueError:
        return None


def _slots(day: date) -> list[time]:
    opens, closes = OPENING_HOURS[day.weekday()]
    slot = datetime.combine(day, opens)
    end = datetime.combine(day, closes)
    found = []
    while slot < end:
        found.append(slot.time())
        slot += timedelta(minutes=SLOT_MINUTES)
    return found


async def _booked_times(day: date) -> set[str]:
    """The times booked on ``day`` ("HH:MM"), by its date or else by its weekday."""
    path = os.environ.get("BRIGHT_SMILE_DIARY")
    if path:
        text = await trio.Path(path).read_text(encoding="utf-8")
    else:
        sample = resources.files(__package__ or "bright_smile_tools") / "sample_diary.json"
        text = await trio.to_thread.run_sync(sample.read_text, "utf-8")
    diary = json.loads(text)
    times = diary.get(day.isoformat(), diary.get(WEEKDAYS[day.weekday()], []))
    return {str(t) for t in times}


def _spoken(day: date) -> str:
    return f"{day.strftime('%A')} {day.day} {day.strftime('%B')}"


def _spoken_time(slot: time) -> str:
    hour = slot.hour % 12 or 12
    return f"{hour}:{slot.minute:02d} {'AM' if slot.hour < 12 else 'PM'}"
