// call-insights UI: keyboard, the session page's synchronised players and waveforms, charts, the
// live feed and the review form. Plain ES2020, no build step.
(function () {
  "use strict";
  const $ = (s, r = document) => r.querySelector(s);
  const $$ = (s, r = document) => Array.from(r.querySelectorAll(s));
  const csrf = () => $('meta[name="csrf-token"]')?.content || "";
  const typing = (e) => e.target.closest("input, textarea, select, [contenteditable]");
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  const clock = (s) => {
    s = Math.max(0, s || 0);
    return Math.floor(s / 60) + ":" + (s % 60).toFixed(1).padStart(4, "0");
  };
  // A call's running time: m:ss, h:mm:ss past an hour, "N d h:mm" past a day.
  const elapsed = (s) => {
    s = Math.floor(Math.max(0, s || 0));
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    const mm = String(m).padStart(2, "0"), ss = String(sec).padStart(2, "0");
    if (d > 0) return `${d} d ${h}:${mm}`;
    if (h > 0) return `${h}:${mm}:${ss}`;
    return `${m}:${ss}`;
  };
  const esc = (s) => String(s ?? "").replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
  const fmtMs = (v) => (v == null ? "—" : v >= 10000 ? (v / 1000).toFixed(1) + " s" : Math.round(v).toLocaleString("en-US") + " ms");

  // ---- everywhere: shortcuts dialog, "/" to filter -------------------------------------------
  const dialog = $("#shortcuts");
  $("#keys-help")?.addEventListener("click", () => dialog?.showModal());
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e)) return;
    if (e.key === "?") { dialog?.showModal(); e.preventDefault(); }
    else if (e.key === "/") {
      const f = $("[data-filter-focus]");
      if (f) { f.focus(); f.select?.(); e.preventDefault(); }
    }
  });

  // ---- sessions list: j/k rows, Enter opens, scroll kept for back navigation ---------------------
  const rowsTable = $("[data-rows]");
  if (rowsTable) {
    const key = "scroll:" + location.pathname + location.search;
    const saved = sessionStorage.getItem(key);
    if (saved) window.scrollTo(0, +saved);
    addEventListener("pagehide", () => sessionStorage.setItem(key, String(scrollY)));
    let cur = -1;
    const rows = () => $$("tbody tr[data-session-id]", rowsTable);
    document.addEventListener("keydown", (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey || typing(e)) return;
      const r = rows();
      if (!r.length) return;
      if (e.key === "j" || e.key === "k") {
        cur = Math.max(0, Math.min(r.length - 1, cur + (e.key === "j" ? 1 : -1)));
        r.forEach((x, i) => x.classList.toggle("selected", i === cur));
        r[cur].focus({ preventScroll: true });
        r[cur].scrollIntoView({ block: "nearest" });
      } else if (e.key === "Enter" && cur >= 0) {
        location.href = $("a", r[cur]).href;
      }
    });
  }

  // ---- session page ----------------------------------------------------------------------------
  const session = $("article.session");
  if (session) initSession(session);

  function initSession(root) {
    const audios = $$("audio[data-rendition]", root);
    const byRendition = (r) => audios.find((a) => a.dataset.rendition === r);
    const turns = $$("li.turn[data-turn-index]", root);
    const offset = (a) => (+a.dataset.offsetMs || 0) / 1000;
    const callTime = (a) => a.currentTime + offset(a);
    const out = $("[data-call-time]", root);
    let selected = null;

    const chosen = () => $('input[name="rendition"]:checked', root)?.value || audios[0]?.dataset.rendition;
    const setChosen = (r) => { const i = $(`input[name="rendition"][value="${r}"]`, root); if (i) i.checked = true; };

    function updateUrl(t) {
      const u = new URL(location.href);
      if (selected) u.searchParams.set("turn", selected.dataset.turnIndex);
      if (t != null) u.searchParams.set("t", t.toFixed(1));
      const r = chosen();
      if (r) u.searchParams.set("rendition", r);
      history.replaceState(null, "", u);
    }

    function whenReady(a) {
      return a.readyState >= 1 ? Promise.resolve() : new Promise((ok) => {
        a.addEventListener("loadedmetadata", ok, { once: true });
        a.addEventListener("error", ok, { once: true });
      });
    }

    // The STT input player holds one turn's clip: follow the selected turn.
    function loadSttClip(li) {
      const a = byRendition("stt_input");
      if (!a || !li?.dataset.sttSrc || a.dataset.turn === li.dataset.turnIndex) return;
      a.src = li.dataset.sttSrc;
      a.dataset.offsetMs = li.dataset.sttOffsetMs || "0";
      a.dataset.turn = li.dataset.turnIndex;
      const label = $("[data-stt-turn]", root);
      if (label) label.textContent = "turn " + li.dataset.turnIndex;
    }

    function seekAll(t) {
      return Promise.all(audios.map(async (a) => {
        await whenReady(a);
        const local = t - offset(a);
        const dur = isFinite(a.duration) ? a.duration : Infinity;
        if (local >= 0 && local <= dur) a.currentTime = local;
        else if (a.dataset.rendition === "stt_input") a.currentTime = 0;
      }));
    }

    async function playAt(rendition, t) {
      const a = byRendition(rendition) || audios[0];
      if (!a) return;
      setChosen(a.dataset.rendition);
      audios.forEach((x) => x !== a && x.pause());
      await seekAll(t);
      try { await a.play(); } catch (err) { console.warn("playback refused:", err.message); }
      updateUrl(t);
    }

    function select(li, opts = {}) {
      if (!li) return;
      turns.forEach((x) => x.classList.toggle("selected", x === li));
      selected = li;
      loadSttClip(li);
      if (opts.scroll !== false) li.scrollIntoView({ block: "nearest", behavior: "smooth" });
      li.focus({ preventScroll: true });
    }
    const startOf = (li) => (li.dataset.startMs === "" ? null : +li.dataset.startMs / 1000);

    function playTurn(li) {
      select(li);
      const t = startOf(li);
      if (t == null) return;
      const r = chosen();
      playAt(li.classList.contains("user") || r !== "stt_input" ? r : audios[0]?.dataset.rendition, t);
    }

    // Clicks: play buttons, turn and moment links, wrong words.
    root.addEventListener("click", (e) => {
      const play = e.target.closest("[data-play-turn]");
      if (play) { playTurn(play.closest("li.turn")); return; }
      const word = e.target.closest("[data-seek-s]");
      if (word) {
        const row = word.closest("[data-turn-index]");
        const li = turns.find((x) => x.dataset.turnIndex === row?.dataset.turnIndex);
        if (li) select(li, { scroll: false });
        playAt(word.dataset.rendition, Math.max(0, +word.dataset.seekS - 0.3));
        return;
      }
      // Clicking a turn (anywhere but its links, buttons and form) plays it.
      const li = e.target.closest("li.turn");
      if (li && !e.target.closest("a, button, input, select, textarea, label, summary, details, svg")) {
        playTurn(li);
        return;
      }
      const link = e.target.closest("a[data-select-turn], a[data-hear]");
      if (link) {
        e.preventDefault();
        const u = new URL(link.href);
        const ti = u.searchParams.get("turn");
        const li = ti != null ? turns.find((x) => x.dataset.turnIndex === ti) : null;
        if (li) select(li);
        const t = u.searchParams.has("t") ? +u.searchParams.get("t") : li ? startOf(li) : null;
        if (link.hasAttribute("data-hear") && t != null) playAt(u.searchParams.get("rendition") || chosen(), t);
        else if (t != null) { seekAll(t); updateUrl(t); }
      }
    });

    // Switching rendition mid-play continues at the same moment on the other recording.
    $$('input[name="rendition"]', root).forEach((i) => i.addEventListener("change", () => {
      const playing = audios.find((a) => !a.paused);
      if (playing) playAt(i.value, callTime(playing));
      else updateUrl();
    }));

    // Follow the playing player: the call clock and the current turn.
    audios.forEach((a) => {
      a.addEventListener("play", () => audios.forEach((x) => x !== a && x.pause()));
      a.addEventListener("timeupdate", () => {
        if (a.paused && !a.seeking) return;
        const t = callTime(a);
        if (out) out.textContent = clock(t);
        const now = turns.filter((li) => startOf(li) != null && startOf(li) <= t + 0.05).pop();
        turns.forEach((x) => x.classList.toggle("playing", x === now));
      });
    });

    // Keyboard: j/k between turns, space plays/pauses the selected turn.
    document.addEventListener("keydown", (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey || typing(e)) return;
      if (e.key === "j" || e.key === "k") {
        const i = selected ? turns.indexOf(selected) : -1;
        const next = turns[Math.max(0, Math.min(turns.length - 1, i + (e.key === "j" ? 1 : -1)))];
        select(next);
        updateUrl(startOf(next));
        e.preventDefault();
      } else if (e.key === " ") {
        e.preventDefault();
        const playing = audios.find((a) => !a.paused);
        if (playing) playing.pause();
        else if (selected) playTurn(selected);
        else { const a = byRendition(chosen()); a?.play().catch(() => {}); }
      }
    });

    // Events filter.
    const filter = $("[data-event-filter]", root);
    filter?.addEventListener("input", () => {
      const q = filter.value.trim().toLowerCase();
      $$("tr[data-event-type]", root).forEach((tr) => { tr.hidden = q !== "" && !tr.textContent.toLowerCase().includes(q); });
    });

    // Waveforms from the server's peaks, one per full recording, with the user turns shaded.
    if (window.WaveSurfer) {
      $$(".wave[data-peaks]", root).forEach(async (box) => {
        const a = $("audio", box.parentElement);
        try {
          const res = await fetch(box.dataset.peaks, { credentials: "same-origin" });
          if (!res.ok) throw new Error("HTTP " + res.status);
          const p = await res.json();
          const regions = WaveSurfer.Regions ? WaveSurfer.Regions.create() : null;
          const ws = WaveSurfer.create({
            container: box, media: a, peaks: [p.peaks], duration: p.duration_ms / 1000,
            height: 44, normalize: true, barWidth: 2, barGap: 1, cursorWidth: 2,
            waveColor: css("--wave") || "#8aa", progressColor: css("--wave-progress") || "#357", cursorColor: css("--accent") || "#c50",
            plugins: regions ? [regions] : [],
          });
          ws.on("error", (err) => console.warn("waveform:", err?.message || err));
          if (regions) {
            ws.on("decode", () => {
              const off = offset(a);
              turns.filter((li) => li.classList.contains("user") && li.dataset.startMs !== "" && li.dataset.endMs !== "").forEach((li) => {
                regions.addRegion({ start: +li.dataset.startMs / 1000 - off, end: +li.dataset.endMs / 1000 - off, color: css("--region") || "rgba(80,140,220,.18)", drag: false, resize: false, content: li.dataset.turnIndex });
              });
            });
          }
        } catch (err) {
          box.textContent = "waveform unavailable (" + err.message + ")";
          box.classList.add("note");
        }
      });
    }

    // Open at the moment the URL names.
    const m = root.dataset;
    if (m.momentRendition) setChosen(m.momentRendition);
    const li = m.momentTurn !== "" ? turns.find((x) => x.dataset.turnIndex === m.momentTurn) : null;
    if (li) select(li);
    const t = m.momentT !== "" && !isNaN(+m.momentT) ? +m.momentT : li ? startOf(li) : null;
    if (t != null) { seekAll(t); if (out) out.textContent = clock(t); }
  }

  // ---- charts (uPlot) ----------------------------------------------------------------------------
  // Every UTC day from `since` to today, so a window with one busy day still reads as a window.
  function windowDays(since) {
    const out = [];
    const d = new Date(since.slice(0, 10) + "T00:00:00Z");
    const end = Date.now();
    while (d.getTime() <= end && out.length < 400) { out.push(d.toISOString().slice(0, 10)); d.setUTCDate(d.getUTCDate() + 1); }
    return out;
  }
  function chart(el, days, series, yLabel, fmt, yRange) {
    if (!window.uPlot || !el || !days.length || !series.length) { if (el) el.innerHTML = '<p class="empty">No data in this window.</p>'; return; }
    const palette = ["#3b7dd8", "#d8603b", "#2e9e5b", "#a05bd8", "#c9a227", "#5bc0d8", "#d85b9a", "#7a7a7a"];
    const xs = days.map((d) => Date.parse(d + "T00:00:00Z") / 1000);
    const opts = {
      width: Math.max(280, el.clientWidth || 520), height: 220,
      scales: { x: { time: true }, y: yRange ? { range: yRange } : {} },
      axes: [{ stroke: css("--fg"), grid: { stroke: css("--grid") } }, { label: yLabel, size: 64, stroke: css("--fg"), grid: { stroke: css("--grid") }, values: (u, v) => v.map(fmt) }],
      series: [{}].concat(series.map((s, i) => ({ label: s.label || "—", stroke: palette[i % palette.length], width: 2, spanGaps: true, points: { show: true, size: 6 }, value: (u, v) => (v == null ? "—" : fmt(v)) }))),
    };
    new uPlot(opts, [xs].concat(series.map((s) => s.values)), el);
  }
  function perAgent(rows, value, days) {
    const agents = Array.from(new Set(rows.map((r) => r.agent_id)));
    return { days, series: agents.map((a) => ({ label: a || "(no agent)", values: days.map((d) => { const r = rows.find((x) => x.agent_id === a && x.day === d); return r ? value(r) : null; }) })) };
  }
  const chartData = $("#chart-data");
  if (chartData) {
    const d = JSON.parse(chartData.textContent);
    const trendRows = d.trend.flatMap((s) => s.points.map((p) => ({ agent_id: s.agent_id, day: p.day, v: p.avg_sentiment })));
    const days = windowDays(d.since);
    const t = perAgent(trendRows, (r) => r.v, days);
    chart($('[data-chart="trend"]'), t.days, t.series, "avg sentiment", (v) => v.toFixed(2), [-1, 1]);
    const q = perAgent(d.quality, (r) => r.share_with_issues, days);
    chart($('[data-chart="quality"]'), q.days, q.series, "share with issues", (v) => Math.round(v * 100) + " %", [0, 1]);
  }
  const acc = $("#accuracy-data");
  if (acc) {
    const groups = JSON.parse(acc.textContent);
    const weeks = Array.from(new Set(groups.map((g) => g.week))).sort();
    const monday = (w) => { const [y, n] = w.split("-W").map(Number); const jan4 = new Date(Date.UTC(y, 0, 4)); const d = new Date(jan4); d.setUTCDate(jan4.getUTCDate() - ((jan4.getUTCDay() + 6) % 7) + (n - 1) * 7); return d.toISOString().slice(0, 10); };
    const keys = Array.from(new Set(groups.map((g) => g.analyzer + (g.model ? " " + g.model : ""))));
    const series = keys.map((k) => ({ label: k, values: weeks.map((w) => {
      const gs = groups.filter((g) => g.week === w && g.analyzer + (g.model ? " " + g.model : "") === k);
      let r = 0, c = 0; gs.forEach((g) => Object.values(g.fields).forEach((f) => { r += f.reviewed; c += f.correct; }));
      return r ? c / r : null;
    }) }));
    chart($('[data-chart="accuracy"]'), weeks.map(monday), series, "fields correct", (v) => Math.round(v * 100) + " %", [0, 1]);
  }

  // ---- review: y/n per field, j/k between fields ---------------------------------------------------
  const reviewForm = $("[data-review-form]");
  if (reviewForm) {
    const fields = $$("fieldset[data-field]", reviewForm);
    let cur = 0;
    const focus = (i) => { cur = Math.max(0, Math.min(fields.length - 1, i)); fields.forEach((f, j) => f.classList.toggle("selected", j === cur)); fields[cur]?.focus(); };
    focus(0);
    document.addEventListener("keydown", (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey || typing(e) || !fields.length) return;
      if (e.key === "j") { focus(cur + 1); e.preventDefault(); }
      else if (e.key === "k") { focus(cur - 1); e.preventDefault(); }
      else if (e.key === "y") { $('input[value="correct"]', fields[cur]).checked = true; focus(cur + 1); e.preventDefault(); }
      else if (e.key === "n") { $('input[value="wrong"]', fields[cur]).checked = true; $(".corrected input", fields[cur])?.focus(); e.preventDefault(); }
      else if (e.key === "Enter") { reviewForm.requestSubmit(); e.preventDefault(); }
    });
  }

  // ---- live: active calls and the event feed over SSE, surviving reconnects ------------------------
  const live = $("[data-live]");
  if (live) initLive(live);

  function initLive(root) {
    const tbody = $("[data-live-calls]", root);
    const feed = $("[data-live-feed]", root);
    const status = $("[data-live-status]");
    const empty = $("[data-live-empty]", root);
    const count = $("[data-live-count]");
    let token = root.dataset.token;
    let lastId = "";
    let es = null;
    let failures = 0;
    const banner = (text, kind) => { if (!status) return; status.hidden = !text; status.textContent = text || ""; status.className = "banner " + (kind || ""); };
    const refreshCount = () => {
      const n = $$("tr[data-live-call]", tbody).length;
      if (count) count.textContent = n + " active call" + (n === 1 ? "" : "s");
      if (empty) empty.hidden = n > 0;
    };
    const rowOf = (ev) => $(`tr[data-live-call="${CSS.escape(ev.call_id)}"]`, tbody);
    function upsert(ev) {
      let tr = rowOf(ev);
      if (!tr) {
        tr = document.createElement("tr");
        tr.dataset.liveCall = ev.call_id;
        tr.dataset.sessionId = ev.session_id;
        tr.dataset.startedAt = ev.started_at || ev.at;
        tr.innerHTML = `<td><a href="/sessions/${esc(ev.session_id)}">${esc(ev.call_id)}</a></td><td>${esc(ev.agent_id || "—")}</td><td>${esc((ev.started_at || ev.at || "").replace("T", " ").slice(0, 19))}</td><td class="num" data-duration>—</td><td class="num" data-turns>0</td><td class="num" data-e2e>—</td><td class="num" data-issues>0</td>`;
        tbody.prepend(tr);
        refreshCount();
        tick();
      }
      tr.classList.remove("flash"); void tr.offsetWidth; tr.classList.add("flash");
      return tr;
    }
    function addFeed(type, ev) {
      const li = document.createElement("li");
      li.className = "ev " + type;
      let what = "";
      if (type === "turn") what = `${ev.role === "assistant" ? "agent" : ev.role}: “${esc((ev.content || "").slice(0, 120))}”${ev.latency?.e2e_latency_ms != null ? " · e2e " + fmtMs(ev.latency.e2e_latency_ms) : ""}`;
      else if (type === "issue_detected") what = `${ev.severity === "critical" ? "■" : ev.severity === "warning" ? "▲" : "●"} ${esc(ev.severity)} ${esc(ev.title || ev.code)}`;
      else if (type === "call_ended") what = `ended (${esc(ev.reason)}${ev.outcome?.close_reason ? ", " + esc(ev.outcome.close_reason) : ""})`;
      else if (type === "call_started") what = "started";
      else if (type === "analytics_ready") what = `analytics: ${esc(ev.sentiment || ev.status || "ready")}`;
      li.innerHTML = `<time>${esc((ev.at || "").slice(11, 19))}</time> <a href="/sessions/${esc(ev.session_id)}">${esc(ev.call_id)}</a> <span class="what">${what}</span>`;
      feed.prepend(li);
      $("[data-live-waiting]")?.remove();
      while (feed.children.length > 200) feed.lastChild.remove();
    }
    function handle(type, msg) {
      if (msg.lastEventId) lastId = msg.lastEventId;
      let ev;
      try { ev = JSON.parse(msg.data); } catch { return; }
      if (type === "reset") { banner("Some events were missed while disconnected: reloading the active calls.", "warn"); setTimeout(() => location.reload(), 1500); return; }
      addFeed(type, ev);
      if (type === "call_started") upsert(ev);
      else if (type === "turn") {
        const tr = upsert(ev);
        const n = $("[data-turns]", tr); n.textContent = Math.max(+n.textContent || 0, (ev.turn_index ?? -1) + 1);
        if (ev.latency?.e2e_latency_ms != null) $("[data-e2e]", tr).textContent = fmtMs(ev.latency.e2e_latency_ms);
      } else if (type === "issue_detected") {
        const tr = upsert(ev); const n = $("[data-issues]", tr); n.textContent = (+n.textContent || 0) + 1;
        if (ev.severity === "critical") tr.classList.add("has-critical");
      } else if (type === "call_ended") {
        const tr = rowOf(ev); if (tr) { tr.remove(); refreshCount(); }
      }
    }
    async function renew() {
      try {
        const r = await fetch("/live/token", { method: "POST", headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin" });
        if (r.ok) token = (await r.json()).token;
        else if (r.status === 401 || r.status === 403 || r.redirected) { banner("Signed out: reload to sign in again.", "warn"); return false; }
      } catch { /* network down: retry with the old token */ }
      return true;
    }
    function connect() {
      const u = new URL("/api/v1/monitor/stream", location.origin);
      u.searchParams.set("token", token);
      if (lastId) u.searchParams.set("last_event_id", lastId);
      es = new EventSource(u);
      es.onopen = () => { if (failures > 0) banner("Reconnected; missed events were replayed.", "ok"); setTimeout(() => failures === 0 && banner(""), 4000); failures = 0; };
      for (const t of ["call_started", "turn", "issue_detected", "call_ended", "analytics_ready", "reset"]) es.addEventListener(t, (m) => handle(t, m));
      es.onerror = async () => {
        es.close();
        failures++;
        banner("Connection lost: reconnecting…", "warn");
        if (await renew()) setTimeout(connect, Math.min(10000, 500 * 2 ** Math.min(failures, 5)));
      };
    }
    function tick() {
      const now = Date.now();
      $$("tr[data-live-call]", tbody).forEach((tr) => {
        const s = Date.parse(tr.dataset.startedAt);
        if (!isNaN(s)) $("[data-duration]", tr).textContent = elapsed((now - s) / 1000);
      });
    }
    connect();
    tick();
    setInterval(tick, 1000);
  }

  // Recording upload: the file streams to /recordings/upload with its metadata as JSON; a bar shows
  // the bytes sent; then the recording's page (which follows its progress).
  const upload = document.querySelector("form[data-upload]");
  if (upload) {
    upload.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const f = upload.elements;
      const file = f.file.files[0];
      if (!file) return;
      const meta = {};
      for (const k of ["call_id", "tenant_id", "agent_id", "provider"]) if (f[k] && f[k].value.trim()) meta[k] = f[k].value.trim();
      meta.channels = [f.channel_0.value, f.channel_1.value];
      const body = new FormData();
      body.append("metadata", JSON.stringify(meta));
      body.append("file", file, file.name);
      const bar = upload.querySelector("[data-upload-progress]");
      const status = upload.querySelector("[data-upload-status]");
      const button = upload.querySelector("button[type=submit]");
      bar.hidden = false; bar.value = 0; button.disabled = true; status.textContent = "Uploading…";
      const xhr = new XMLHttpRequest();
      xhr.open("POST", upload.action);
      xhr.setRequestHeader("X-CSRF-Token", document.querySelector('meta[name="csrf-token"]').content);
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) { bar.value = (100 * e.loaded) / e.total; status.textContent = `Uploading… ${Math.round(bar.value)} %`; } };
      xhr.onload = () => {
        let r = {};
        try { r = JSON.parse(xhr.responseText); } catch { /* an HTML error page */ }
        if (xhr.status >= 200 && xhr.status < 300 && r.location) {
          status.textContent = r.duplicate ? "Already here: opening it…" : "Uploaded: analysing…";
          location.href = r.location;
        } else {
          button.disabled = false; bar.hidden = true;
          status.textContent = r.message || `Upload failed (HTTP ${xhr.status}).`;
          status.classList.add("err");
        }
      };
      xhr.onerror = () => { button.disabled = false; bar.hidden = true; status.textContent = "Upload failed: the connection dropped."; status.classList.add("err"); };
      xhr.send(body);
    });
  }
})();
