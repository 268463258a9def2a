"use strict";
(() => {
  const DATA = JSON.parse(document.getElementById("timeline-data").textContent);
  const T = DATA.timeline;
  const PEAKS = DATA.peaks || {};
  const PEAK_MS = DATA.peak_ms || 20;
  const COLORS = { caller: "#2e7d32", agent: "#1565c0" };
  const duration = Math.max(T.duration_ms, 1);
  const view = { t0: 0, span: duration };
  const $ = (id) => document.getElementById(id);
  const stage = $("stage"), audio = $("audio");
  const canvases = [...document.querySelectorAll("canvas[data-track]")];
  let stopAt = null;

  const fmt = (ms) => {
    const s = ms / 1000;
    if (s < 60) return s.toFixed(1) + "s";
    const m = Math.floor(s / 60);
    return m + ":" + (s - m * 60).toFixed(1).padStart(4, "0");
  };
  const width = () => stage.clientWidth;
  const x = (t) => ((t - view.t0) / view.span) * width();
  const tAt = (px) => view.t0 + (px / width()) * view.span;
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const place = (e, t0, t1) => {
    const a = x(t0), b = t1 === undefined ? a : x(t1);
    e.style.left = a + "px";
    if (t1 !== undefined) e.style.width = Math.max(3, b - a) + "px";
    e.hidden = b < -200 || a > width() + 200;
  };

  function playSpan(t0, t1) {
    if (!DATA.audio_url) return;
    stopAt = t1 === undefined ? null : t1 / 1000;
    audio.currentTime = t0 / 1000;
    const p = audio.play();
    if (p && p.catch) p.catch((e) => ($("audio-note").textContent = "playback: " + e.message));
  }
  audio.addEventListener("timeupdate", () => {
    if (stopAt !== null && audio.currentTime >= stopAt) { audio.pause(); stopAt = null; }
  });

  // -- the DOM layer: markers, turns, dead air, rows ---------------------------------
  const markEls = T.marks.map((m) => {
    const e = el("div", "marker " + m.kind);
    e.dataset.kind = m.kind;
    e.dataset.tMs = m.t_ms;
    e.title = fmt(m.t_ms) + " " + m.text;
    e.append(el("span", "flag", m.kind.replace("_", " ")), el("span", "stem"));
    e.addEventListener("click", () => playSpan(Math.max(0, m.t_ms - 2000), m.t_ms + 3000));
    $("marks").append(e);
    return [e, m];
  });
  const turnEls = T.turns.map((turn) => {
    const end = turn.end_ms === null ? turn.start_ms + 500 : turn.end_ms;
    const label = turn.text === null ? "(no transcript)" : turn.text;
    const e = el("div", "turn " + turn.who, label);
    e.dataset.who = turn.who;
    e.dataset.startMs = turn.start_ms;
    e.dataset.endMs = end;
    e.title = fmt(turn.start_ms) + " " + turn.who +
      (turn.latency_ms === null ? "" : " (+" + Math.round(turn.latency_ms) + " ms)") + ": " + label;
    e.addEventListener("click", () => playSpan(turn.start_ms, end));
    $("turns").append(e);
    return [e, turn.start_ms, end];
  });
  const deadEls = T.dead_air.map(([a, b]) => {
    const e = el("div", "dead");
    e.title = "dead air " + ((b - a) / 1000).toFixed(1) + " s";
    $("overlay").append(e);
    return [e, a, b];
  });
  const rows = [
    ...T.turns.map((t) => [t.start_ms, 1, t.who, (t.latency_ms === null ? "" : "(+" +
      Math.round(t.latency_ms) + " ms) ") + (t.text === null ? "(no transcript)" : t.text),
      t.start_ms, t.end_ms]),
    ...T.marks.map((m) => [m.t_ms, 0, m.kind, m.text, Math.max(0, m.t_ms - 2000), m.t_ms + 3000]),
  ].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  for (const [t, , kind, text, a, b] of rows) {
    const li = el("li", "row " + kind);
    li.append(el("time", "", fmt(t)), el("b", "", kind), el("span", "", text));
    li.addEventListener("click", () => playSpan(a, b === null ? undefined : b));
    $("rows").append(li);
  }

  // -- drawing ------------------------------------------------------------------------
  function drawTrack(canvas) {
    const name = canvas.dataset.track, ratio = window.devicePixelRatio || 1;
    const w = Math.max(1, width()), h = canvas.clientHeight;
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, w, h);
    g.fillStyle = COLORS[name];
    const peaks = PEAKS[name] || [];
    const mid = h / 2;
    if (peaks.length) {
      for (let px = 0; px < w; px++) {
        const lo = Math.floor(tAt(px) / PEAK_MS), hi = Math.max(lo + 1, Math.ceil(tAt(px + 1) / PEAK_MS));
        let p = 0;
        for (let i = Math.max(0, lo); i < Math.min(hi, peaks.length); i++) p = Math.max(p, peaks[i]);
        const half = Math.max(p > 0 ? 0.5 : 0, Math.sqrt(p) * (mid - 2));
        if (half > 0) g.fillRect(px, mid - half, 1, 2 * half);
      }
    } else {
      g.globalAlpha = 0.35;  // no audio: who spoke when, from the events
      for (const [a, b] of T.speech[name] || []) g.fillRect(x(a), mid - 6, Math.max(1, x(b) - x(a)), 12);
    }
  }

  function drawAxis() {
    const axis = $("axis");
    axis.replaceChildren();
    const steps = [100, 200, 500, 1000, 2000, 5000, 10000, 15000, 30000, 60000, 120000, 300000, 600000];
    const step = steps.find((s) => (s / view.span) * width() >= 70) || 600000;
    for (let t = Math.ceil(view.t0 / step) * step; t <= view.t0 + view.span; t += step) {
      const tick = el("span", "tick", fmt(t));
      tick.style.left = x(t) + "px";
      axis.append(tick);
    }
    $("view").textContent = fmt(view.t0) + " – " + fmt(view.t0 + view.span) + " of " + fmt(duration);
  }

  function layFlags() {  // flags in three rows, each placed in the first row with room
    const ends = [-Infinity, -Infinity, -Infinity];
    for (const [e] of markEls) {
      if (e.hidden) continue;
      const left = parseFloat(e.style.left), flag = e.firstChild;
      let row = ends.findIndex((end) => end < left);
      if (row < 0) row = ends.indexOf(Math.min(...ends));
      flag.style.top = 3 + row * 18 + "px";
      ends[row] = left + flag.offsetWidth + 2;
    }
  }

  function draw() {
    canvases.forEach(drawTrack);
    for (const [e, m] of markEls) place(e, m.t_ms);
    layFlags();
    for (const [e, a, b] of turnEls) place(e, a, b);
    for (const [e, a, b] of deadEls) place(e, a, b);
    drawAxis();
    const scroll = $("scroll");
    scroll.max = Math.max(0, duration - view.span);
    scroll.value = view.t0;
    scroll.disabled = view.span >= duration;
  }

  function zoom(factor, around) {
    const at = around === undefined ? view.t0 + view.span / 2 : around;
    const span = Math.min(duration, Math.max(500, view.span * factor));
    view.t0 = Math.min(Math.max(0, at - ((at - view.t0) / view.span) * span), duration - span);
    view.span = span;
    draw();
  }
  $("zoom-in").addEventListener("click", () => zoom(0.5));
  $("zoom-out").addEventListener("click", () => zoom(2));
  $("zoom-all").addEventListener("click", () => { view.t0 = 0; view.span = duration; draw(); });
  $("scroll").addEventListener("input", (ev) => { view.t0 = Number(ev.target.value); draw(); });
  stage.addEventListener("wheel", (ev) => {
    ev.preventDefault();
    const box = stage.getBoundingClientRect();
    if (ev.shiftKey) {
      view.t0 = Math.min(Math.max(0, view.t0 + (ev.deltaY / width()) * view.span), duration - view.span);
      draw();
    } else zoom(ev.deltaY > 0 ? 1.25 : 0.8, tAt(ev.clientX - box.left));
  }, { passive: false });

  // -- select a span to play it ---------------------------------------------------------
  const sel = $("selection");
  let dragFrom = null;
  for (const canvas of canvases) {
    canvas.addEventListener("mousedown", (ev) => {
      dragFrom = tAt(ev.clientX - stage.getBoundingClientRect().left);
      sel.hidden = true;
    });
  }
  window.addEventListener("mousemove", (ev) => {
    if (dragFrom === null) return;
    const t = tAt(ev.clientX - stage.getBoundingClientRect().left);
    place(sel, Math.min(dragFrom, t), Math.max(dragFrom, t));
    sel.hidden = false;
  });
  window.addEventListener("mouseup", (ev) => {
    if (dragFrom === null) return;
    const t = tAt(ev.clientX - stage.getBoundingClientRect().left);
    const [a, b] = [Math.min(dragFrom, t), Math.max(dragFrom, t)];
    dragFrom = null;
    if (x(b) - x(a) > 3) playSpan(Math.max(0, a), b); else { sel.hidden = true; playSpan(Math.max(0, a)); }
  });
  const head = $("playhead");
  const tick = () => {
    if (!audio.paused) { place(head, audio.currentTime * 1000); head.hidden = false; }
    requestAnimationFrame(tick);
  };

  // -- the header ------------------------------------------------------------------------
  const totals = T.totals;
  $("summary").textContent = [
    "agent " + (T.agent || "?"), "door " + (T.door || "?"), fmt(T.duration_ms),
    "ended: " + (T.end_reason || "?"), totals.caller_turns + " caller turns",
    totals.agent_turns + " agent turns",
    totals.latency_max_ms === null ? "" : "latency max " + Math.round(totals.latency_max_ms) + " ms",
    Object.entries(totals.marks).map(([k, n]) => n + " " + k.replace("_", " ")).join(", "),
  ].filter(Boolean).join(" · ");
  if (!DATA.audio_url) {
    $("audio-note").textContent = (DATA.audio_note || "No audio: this call was not recorded.") +
      " The tracks show who spoke when, from the events.";
    audio.hidden = true;
  } else {
    audio.src = DATA.audio_url;
  }
  window.addEventListener("resize", draw);
  draw();
  requestAnimationFrame(tick);
  window.timelineReady = true;
})();
