"""Pipecat's Twilio echo pipeline, the third column of ``bench_load.py`` (when installed).

    PYTHON bench/_load_pipecat.py --port PORT

Runs only with ``pipecat-ai`` (and ``fastapi``, ``uvicorn``) importable by
PYTHON; it is never a dependency of the project. A FastAPI WebSocket at
``/ws`` reads Twilio's ``connected`` and ``start``
(``pipecat.runner.utils.parse_telephony_websocket``) and runs, per call,
Pipecat's own pieces: ``FastAPIWebsocketTransport`` with
``TwilioFrameSerializer`` (``auto_hang_up`` off: there is no Twilio REST API
here), and a pipeline ``transport.input() -> echo -> transport.output()``
where the echo turns each ``InputAudioRawFrame`` into an
``OutputAudioRawFrame``. Audio runs at 8 kHz in and out (what Pipecat's
telephony examples set), so nothing is resampled and G.711 codes come back
as they went, except mu-law's negative zero (0x7F), which the load
generator's frame markers avoid. Output is written in 20 ms chunks
(``audio_out_10ms_chunks=2``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import uvicorn
from fastapi import FastAPI, WebSocket
from loguru import logger
from pipecat.frames.frames import Frame, InputAudioRawFrame, OutputAudioRawFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.runner.utils import parse_telephony_websocket
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)

RATE = 8000


class Echo(FrameProcessor):
    """Caller audio in, the same audio out as the bot's."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            out = OutputAudioRawFrame(
                audio=frame.audio, sample_rate=frame.sample_rate, num_channels=frame.num_channels
            )
            await self.push_frame(out)
        else:
            await self.push_frame(frame, direction)


app = FastAPI()


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.websocket("/ws")
async def stream(websocket: WebSocket) -> None:
    await websocket.accept()
    _, call_data = await parse_telephony_websocket(websocket)
    serializer = TwilioFrameSerializer(
        stream_sid=call_data["stream_id"],
        params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
    )
    transport = FastAPIWebsocketTransport(
        websocket=websocket,
        params=FastAPIWebsocketParams(
            audio_in_enabled=True,
            audio_out_enabled=True,
            audio_out_10ms_chunks=2,
            add_wav_header=False,
            serializer=serializer,
        ),
    )
    pipeline = Pipeline([transport.input(), Echo(), transport.output()])
    task = PipelineTask(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=RATE, audio_out_sample_rate=RATE),
    )

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport: Any, client: Any) -> None:
        await task.cancel()

    await PipelineRunner(handle_sigint=False).run(task)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    logger.remove()  # Pipecat logs at DEBUG by default; a deployment would not
    logger.add(sys.stderr, level="WARNING")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", ws="websockets")
