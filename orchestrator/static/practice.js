// Switchboard practice page: one browser call over WS /v1/voice.
// Protocol: switchboard/codecs/browser_protocol.py. No build step.
"use strict";

const RATE = 24000; // Hz, both directions; the AudioContext runs at it
const MAX_TEXT_CHARS = 2000; // the protocol's limit for a typed line
const $ = (id) => document.getElementById(id);
let call = null;
let agentAudioMs = 0; // agent audio scheduled for playback in this page, all calls

function show(text) { $("status").textContent = text; }

function addTranscript(role, text) {
  const li = document.createElement("li");
  li.dataset.role = role;
  li.textContent = text;
  $("transcript").append(li);
}

function addTimeline(ms, text) {
  const li = document.createElement("li");
  const t = document.createElement("time");
  t.textContent = (ms / 1000).toFixed(1) + " s";
  li.append(t, " " + text);
  $("timeline").append(li);
}

function toBase64(buffer) {
  const bytes = new Uint8Array(buffer);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

function fromBase64(text) {
  const s = atob(text);
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  return new Int16Array(bytes.buffer, 0, bytes.length >> 1);
}

async function getSession() {
  const pasted = $("token").value.trim();
  if (pasted) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    return { token: pasted, ws_url: `${scheme}//${location.host}/v1/voice` };
  }
  const response = await fetch("/practice/session", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ agent_id: $("agent").value.trim() || "receptionist", test_mode: true }),
  });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

// Gapless playback: each chunk is scheduled right after the previous one.
class Player {
  constructor(ctx) { this.ctx = ctx; this.next = 0; this.sources = new Set(); }
  play(pcm) {
    const buffer = this.ctx.createBuffer(1, pcm.length, RATE);
    const data = buffer.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) data[i] = pcm[i] / 0x8000;
    const source = this.ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(this.ctx.destination);
    this.next = Math.max(this.next, this.ctx.currentTime + 0.05);
    source.start(this.next);
    this.next += buffer.duration;
    agentAudioMs += buffer.duration * 1000;
    this.sources.add(source);
    source.onended = () => this.sources.delete(source);
  }
  clear() {
    for (const source of this.sources) source.stop();
    this.sources.clear();
    this.next = 0;
  }
}

function handle(message, player) {
  switch (message.event) {
    case "session":
      show(`Connected to ${message.agent}. Speak or type when you are ready.`);
      addTimeline(0, "call started");
      break;
    case "audio": player.play(fromBase64(message.payload)); break;
    case "transcript": if (message.final) addTranscript(message.role, message.text); break;
    case "agent_start": show("Agent speaking…"); break;
    case "agent_end":
      show(message.interrupted ? "Agent interrupted." : "Your turn.");
      break;
    case "tool_start": addTimeline(call.elapsed(), `tool ${message.name} called`); break;
    case "tool_end":
      addTimeline(call.elapsed(), `tool ${message.name} ${message.ok ? "answered" : "failed"}`);
      break;
    case "audio_interrupted":
      player.clear();
      addTimeline(call.elapsed(), "you interrupted the agent");
      break;
    case "timeline": addTimeline(message.t_ms, describe(message)); break;
    case "error": addTimeline(call.elapsed(), `error: ${message.reason}`); break;
  }
}

function describe(m) {
  const d = m.detail || {};
  if (m.type === "provider.failed") return `provider ${d.provider} failed (${d.kind})`;
  if (m.type === "failover.switch") return `switched to ${d.to || d.provider || "next provider"}`;
  if (m.type === "speech.started") return "you started speaking";
  if (m.type === "call.ending") return `call ending: ${d.reason}`;
  return m.type.replace(".", " ");
}

async function start(event) {
  event.preventDefault();
  if (call) return;
  $("start").disabled = true;
  show("Starting…");
  try {
    const session = await getSession();
    const ctx = new AudioContext({ sampleRate: RATE });
    await ctx.audioWorklet.addModule("/practice/mic-worklet.js");
    let stream = null; // no microphone (or none allowed): a typed call
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true },
      });
    } catch (error) {
      show(`No microphone (${error.name}): type to the agent.`);
      addTimeline(0, "no microphone: typing only");
    }
    const ws = new WebSocket(`${session.ws_url}?sample_rate=${RATE}`,
                             ["switchboard.v1", session.token]);
    const player = new Player(ctx);
    const started = performance.now();
    call = { ws, ctx, stream, elapsed: () => performance.now() - started };
    ws.onmessage = (e) => handle(JSON.parse(e.data), player);
    ws.onclose = (e) => finish(e.code === 1000 ? "Call ended." : `Call closed (${e.code}).`);
    ws.onopen = () => {
      if (stream) {
        const mic = new AudioWorkletNode(ctx, "mic-capture");
        const mute = ctx.createGain();
        mute.gain.value = 0;
        ctx.createMediaStreamSource(stream).connect(mic).connect(mute).connect(ctx.destination);
        mic.port.onmessage = (e) => {
          if (ws.readyState === WebSocket.OPEN) {
            ws.send(JSON.stringify({ event: "audio", payload: toBase64(e.data) }));
          }
        };
      }
      $("stop").disabled = false;
      $("line").disabled = false;
      $("send").disabled = false;
    };
  } catch (error) {
    finish(`Could not start: ${error.message}`);
  }
}

function finish(text) {
  show(text);
  if (call) {
    if (call.stream) call.stream.getTracks().forEach((t) => t.stop());
    call.ctx.close();
    if (call.ws.readyState <= WebSocket.OPEN) call.ws.close(1000);
  }
  call = null;
  $("start").disabled = false;
  $("stop").disabled = true;
  $("line").disabled = true;
  $("send").disabled = true;
}

// A typed line: the call takes it as the caller's turn; the server shows it back in
// the transcript ("You: ...") and the agent answers it, aloud.
function sendText(event) {
  event.preventDefault();
  const text = $("line").value.trim();
  if (!text || !call || call.ws.readyState !== WebSocket.OPEN) return;
  if (text.length > MAX_TEXT_CHARS) {
    show(`A typed line is at most ${MAX_TEXT_CHARS} characters.`);
    return;
  }
  call.ws.send(JSON.stringify({ event: "text", text }));
  $("line").value = "";
}

$("setup").addEventListener("submit", start);
$("typing").addEventListener("submit", sendText);
$("stop").addEventListener("click", () => finish("You hung up."));
