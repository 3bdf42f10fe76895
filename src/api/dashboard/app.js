// The rcdc dashboard: polls /dashboard/data every 2 s and redraws. Plain DOM, no framework.
// Every value goes in through textContent or setAttribute, never as HTML: error messages are
// arbitrary text. Times come from the server (its clock and --tz), not the browser's.
'use strict';

(() => {
  const POLL_MS = 2000;
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const CHART = { w: 960, h: 220, left: 64, right: 16, top: 12, bottom: 24 };
  const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2',
    '#ca8a04', '#db2777'];

  // Changefeed id -> [[at_ms, lag_ms], ...], oldest first. The server sends the whole
  // history once, then only samples newer than `since`.
  const series = new Map();
  let since = null;

  const byId = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }

  function svgEl(tag, attrs, text) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function fmtLag(ms) {
    if (ms < 1000) return `${Math.round(ms)} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
    if (ms < 3600000) return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
    return `${(ms / 3600000).toFixed(1)} h`;
  }

  // The smallest 1, 2, 2.5 or 5 × 10^k at or above v: round steps on the lag axis.
  function niceCeil(v) {
    const p = 10 ** Math.floor(Math.log10(v));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function mergeLag(lag, nowMs) {
    for (const id of [...series.keys()]) if (!(id in lag.series)) series.delete(id);
    const oldest = nowMs - lag.window_ms;
    for (const [id, points] of Object.entries(lag.series)) {
      const s = series.get(id) || [];
      for (const p of points) if (!s.length || p[0] > s[s.length - 1][0]) s.push(p);
      while (s.length && s[0][0] < oldest) s.shift();
      series.set(id, s);
      if (s.length) since = Math.max(since ?? 0, s[s.length - 1][0]);
    }
  }

  function swatch(color) {
    const s = el('span', { class: 'swatch' });
    s.style.background = color;
    return s;
  }

  function renderChangefeeds(d, colors) {
    const rows = d.changefeeds.map((cf) => el('tr', {
      'data-changefeed': cf.id, 'data-state': cf.state, 'data-lag-ms': cf.lag_ms,
      'data-checkpoint-tso': cf.checkpoint_tso,
    },
    el('td', {}, swatch(colors.get(cf.id)), cf.id),
    el('td', {}, el('span', { class: `state state-${cf.state}` }, cf.state)),
    el('td', { 'data-checkpoint-time': '' }, cf.checkpoint_time),
    el('td', { class: 'num' }, cf.checkpoint_tso),
    el('td', { class: 'num', 'data-lag': '' }, fmtLag(cf.lag_ms)),
    el('td', { class: 'num' }, cf.tables),
    el('td', { class: 'sink', title: cf.sink_uri }, cf.sink_uri)));
    byId('changefeeds').replaceChildren(...rows);
    byId('no-changefeeds').hidden = rows.length > 0;
  }

  function renderCaptures(d) {
    const rows = d.captures.map((c) => {
      const name = el('td', {});
      if (c.is_owner) name.append(el('span', { class: 'owner', 'data-owner-mark': '' }, '★ owner'));
      name.append(c.id);
      if (c.draining) name.append(el('span', { class: 'draining' }, 'draining'));
      const feeds = el('td', {}, ...c.changefeeds.map((f) => {
        const more = f.count > f.table_ids.length ? ` … +${f.count - f.table_ids.length}` : '';
        return el('div', { class: 'feed-tables', 'data-capture-tables': f.changefeed, 'data-count': f.count },
          el('b', {}, f.changefeed), `: ${f.table_ids.join(', ')}${more}`);
      }));
      return el('tr', { 'data-capture': c.id, 'data-owner': c.is_owner, 'data-tables': c.tables },
        name, el('td', {}, c.address), el('td', { class: 'num' }, c.tables), feeds);
    });
    byId('captures').replaceChildren(...rows);
  }

  function renderErrors(d) {
    const items = d.errors.map((e) => el('li', {
      'data-error': e.changefeed, 'data-error-code': e.code, 'data-error-time-ms': e.time_ms ?? '',
    },
    el('time', {}, e.time ?? 'time unknown'),
    el('b', {}, e.changefeed), el('code', {}, e.code),
    e.addr ? ` on ${e.addr}` : '',
    el('div', { class: 'msg' }, e.message)));
    byId('errors').replaceChildren(...items);
    byId('no-errors').hidden = items.length > 0;
  }

  // One polyline per run of samples; a gap of more than three periods (the capture could not
  // read etcd, or was down) breaks the line instead of bridging it.
  function lines(points, period, x, y) {
    const runs = [];
    let run = [];
    for (const p of points) {
      if (run.length && p[0] - run[run.length - 1][0] > 3 * period) { runs.push(run); run = []; }
      run.push(p);
    }
    if (run.length) runs.push(run);
    return runs.map((r) => r.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' '));
  }

  // The time axis: the whole window once the capture has sampled that long; before, the
  // samples it has (at least a minute), so a young capture's lines are not squeezed into
  // the right edge. Spans and ticks are round numbers.
  const SPANS = [[60000, 15000], [120000, 30000], [300000, 60000], [600000, 120000]];
  function chartSpan(d) {
    let oldest = d.now_ms;
    for (const s of series.values()) if (s.length) oldest = Math.min(oldest, s[0][0]);
    const known = d.now_ms - oldest;
    for (const [ms, tick] of SPANS) if (known <= ms && ms < d.lag.window_ms) return { ms, tick };
    return { ms: d.lag.window_ms, tick: 300000 };
  }

  function fmtAgo(ms) {
    if (ms === 0) return 'now';
    if (ms % 60000 === 0) return `−${ms / 60000} min`;
    if (ms < 60000) return `−${ms / 1000} s`;
    return `−${Math.floor(ms / 60000)} min ${(ms % 60000) / 1000} s`;
  }

  function renderChart(d, colors) {
    const { w, h, left, right, top, bottom } = CHART;
    const pw = w - left - right;
    const ph = h - top - bottom;
    const span = chartSpan(d);
    let max = 0;
    for (const s of series.values()) for (const p of s) max = Math.max(max, p[1]);
    const step = niceCeil(Math.max(max, 1000) / 4);
    const yMax = 4 * step;
    const x = (t) => left + pw * (1 - (d.now_ms - t) / span.ms);
    const y = (v) => top + ph * (1 - v / yMax);
    const nodes = [];
    for (let i = 0; i <= 4; i++) {
      const v = step * i;
      nodes.push(svgEl('line', { class: 'grid-line', x1: left, x2: w - right, y1: y(v), y2: y(v) }));
      nodes.push(svgEl('text', { x: left - 6, y: y(v) + 4, 'text-anchor': 'end' }, fmtLag(v)));
    }
    for (let ago = span.ms; ago >= 0; ago -= span.tick) {
      nodes.push(svgEl('text', { x: x(d.now_ms - ago), y: h - 6, 'text-anchor': ago === 0 ? 'end' : 'middle' },
        fmtAgo(ago)));
    }
    for (const [id, s] of series) {
      const color = colors.get(id) || COLORS[0];
      const g = svgEl('g', { 'data-series': id, 'data-samples': s.length,
        'data-last-lag-ms': s.length ? s[s.length - 1][1] : '' });
      for (const pts of lines(s, d.lag.period_ms, x, y)) {
        g.append(svgEl('polyline', { points: pts, fill: 'none', stroke: color, 'stroke-width': 1.5 }));
      }
      if (s.length) {
        const last = s[s.length - 1];
        g.append(svgEl('circle', { cx: x(last[0]), cy: y(last[1]), r: 2.5, fill: color }));
      }
      g.append(svgEl('title', {}, `${id}: ${s.length ? fmtLag(s[s.length - 1][1]) : 'no samples'}`));
      nodes.push(g);
    }
    const chart = byId('chart');
    chart.replaceChildren(...nodes);
    chart.setAttribute('data-max-lag-ms', max);
    chart.setAttribute('data-span-ms', span.ms);
    const minutes = span.ms / 60000;
    const so = span.ms < d.lag.window_ms ? ` so far (up to ${d.lag.window_ms / 60000} min)` : '';
    byId('chart-span').textContent =
      `last ${minutes} min${so}, sampled every ${d.lag.period_ms / 1000} s by the capture serving this page`;
  }

  function render(d) {
    mergeLag(d.lag, d.now_ms);
    // Colours follow the changefeeds' order, shared by the table's swatches and the chart.
    const colors = new Map(d.changefeeds.map((cf, i) => [cf.id, COLORS[i % COLORS.length]]));
    renderChangefeeds(d, colors);
    renderChart(d, colors);
    renderCaptures(d);
    renderErrors(d);
    byId('served-by').textContent = d.served_by || '(registering)';
    byId('updated').textContent = d.now;
  }

  function setConn(state, text) {
    const c = byId('conn');
    c.setAttribute('data-conn', state);
    c.textContent = text;
  }

  async function poll() {
    // A hidden tab does not poll (each poll reads the cluster from etcd); the history is
    // kept by the server, so nothing is lost meanwhile.
    if (!document.hidden) {
      try {
        const url = since === null ? '/dashboard/data' : `/dashboard/data?since=${since}`;
        const r = await fetch(url, { cache: 'no-store' });
        const body = await r.json();
        if (!r.ok) throw new Error(body.error_msg || `HTTP ${r.status}`);
        render(body);
        setConn('ok', 'live');
      } catch (e) {
        setConn('error', `cannot update: ${e.message}; retrying`);
      }
    }
    setTimeout(poll, POLL_MS);
  }

  poll();
})();
