"""Replay: re-run a recorded call exactly, compare its events, draw its timeline, try a fix.

The package's parts:

* :mod:`.api`: the shapes the parts share (event rows, :class:`~.api.WhatIf`,
  :class:`~.api.Replay`, :class:`~.api.Unreplayable`).
* :mod:`.recorded_call`: a trace read for replay (who the call was, what the caller
  did, what each provider instance and tool answered).
* :mod:`.engine`: :func:`~.engine.replay_trace` runs a trace through ``run_call`` on
  Trio's ``MockClock`` (virtual time), set up by :mod:`.runtime`, with the caller's
  recorded side (:mod:`.peers`), a recorded provider per provider instance
  (:mod:`.providers`) and the recorded tool results (:mod:`.tools`).
* :mod:`.what_if`: the changed agent a what-if replays against.
* :mod:`.compare`: :func:`~.compare.compare_events`, the first divergence between the
  recorded events and the replayed ones; :mod:`.report` says it, and the caller's
  experience side by side for a what-if; :mod:`.session` is one ``switchboard replay``
  and :mod:`.check` its ``--check DIR``.
* The timeline: :mod:`.timeline` (built from events, and from the audio's
  :mod:`.levels` when there is audio; shapes in :mod:`.timeline_model`, marks in
  :mod:`.timeline_marks`), as text (:mod:`.timeline_text`) and as a page
  (:mod:`.timeline_page`: both tracks as waveforms on one time axis, the events above
  them, playback of any span).
"""
