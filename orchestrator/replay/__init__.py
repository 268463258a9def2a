"""Replay: re-run a recorded call exactly, compare its events, draw its timeline, try a fix.

The package's parts:

* :mod:`.engine`: :func:`replay_trace` runs a trace through ``run_call`` on
  Trio's ``MockClock`` (virtual time), with the caller's recorded side, a
  recorded provider per provider instance and the recorded tool results.
* :mod:`.compare`: :func:`compare_events` finds the first divergence between
  the recorded events and the replayed ones.
* :mod:`.timeline`: the terminal timeline (one line per turn, marks for
  barge-in, tools, provider failures, failovers and dead air).
* :mod:`.timeline_page`: the same timeline as a page (both tracks as waveforms
  on one time axis, events above them, playback of any span).
"""
