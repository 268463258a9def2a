"""How late a streaming converter makes a listener hear audio (a measurement aid).

Shared by the tests and ``bench/`` so both measure latency the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._pcm import Pcm16


def playout_lag_ms(
    convert: Callable[[Pcm16], Pcm16], src_rate: int, dst_rate: int, chunk_ms: int = 20
) -> float:
    """Extra delay (ms) with which a click is heard after passing through ``convert``.

    A click (a 1 ms raised-cosine pulse, so that every converter passes it)
    is fed in ``chunk_ms`` chunks; each chunk's output becomes available
    when the chunk has arrived. A player starts as early as it can without ever
    running dry, then plays the output without pauses. The result is when the
    click is heard, less its true time and less the one chunk a real-time
    source takes to deliver it: 0 for a converter that adds nothing. Audio
    held back and later released in bursts counts, as a listener hears it.

    Args:
        convert: called once per chunk (int16 array, shape (n,)) at
            ``src_rate``; returns what it can output now at ``dst_rate``.
    """
    chunk = src_rate * chunk_ms // 1000
    signal = np.zeros(src_rate // 2, dtype=np.int16)
    width = src_rate // 1000 + 1
    click = int(src_rate * 0.2371)  # the pulse's centre, not aligned with the chunks
    pulse = 30000 * np.hanning(width + 2)[1:-1]
    signal[click - width // 2 : click - width // 2 + width] = np.round(pulse).astype(np.int16)
    outputs, ready_s = [], []
    for i in range(0, len(signal), chunk):
        out = convert(signal[i : i + chunk])
        outputs.append(out)
        ready_s.append(np.full(len(out), (i + chunk) / src_rate))
    heard = np.concatenate(outputs)
    ready = np.concatenate(ready_s)
    position_s = np.arange(len(heard)) / dst_rate
    start_s = float(np.max(ready - position_s))  # earliest start that never runs dry
    heard_s = start_s + int(np.argmax(np.abs(heard.astype(np.int32)))) / dst_rate
    return 1000.0 * (heard_s - click / src_rate - chunk / src_rate)
