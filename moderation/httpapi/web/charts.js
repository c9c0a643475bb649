// charts.js: a small dependency-free SVG chart renderer for the dashboard's
// analytics panel. Two charts: lineChart (series over evenly spaced points,
// with optional marker links) and barChart (labelled horizontal bars).
// Every label goes through textContent; colours come from CSS classes
// (the dashboard's Content-Security-Policy allows no inline style).
'use strict';

window.DanmakuCharts = (() => {
  const NS = 'http://www.w3.org/2000/svg';

  function node(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = String(text);
    return e;
  }

  // niceMax rounds a maximum up to 1, 2 or 5 times a power of ten.
  function niceMax(v) {
    if (v <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function clear(svg, w, h) {
    while (svg.firstChild) svg.firstChild.remove();
    svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
    svg.setAttribute('preserveAspectRatio', 'none');
  }

  // lineChart draws opts.series ([{name, cls, values}], values of equal
  // length) over opts.labels (x labels, same length) in a w×h box, with a
  // y axis from 0 to a round maximum. opts.markers ([{i, href, title}])
  // draw a linked dot on the first series at point i.
  function lineChart(svg, opts) {
    const w = opts.width || 400;
    const h = opts.height || 140;
    const pad = { l: 30, r: 6, t: 8, b: 18 };
    clear(svg, w, h);
    const n = Math.max(...opts.series.map((s) => s.values.length), 0);
    svg.dataset.points = String(n);
    if (n === 0) {
      svg.append(node('text', { x: w / 2, y: h / 2, 'text-anchor': 'middle', class: 'chart-empty' }, opts.empty || 'no data'));
      return;
    }
    const top = niceMax(Math.max(...opts.series.flatMap((s) => s.values)));
    svg.dataset.max = String(top);
    const x = (i) => pad.l + (n === 1 ? (w - pad.l - pad.r) / 2 : (i * (w - pad.l - pad.r)) / (n - 1));
    const y = (v) => pad.t + (1 - v / top) * (h - pad.t - pad.b);
    for (const f of [0, 0.5, 1]) {
      svg.append(node('line', { x1: pad.l, x2: w - pad.r, y1: y(top * f), y2: y(top * f), class: 'grid' }));
      svg.append(node('text', { x: pad.l - 4, y: y(top * f) + 4, 'text-anchor': 'end', class: 'axis' }, Math.round(top * f)));
    }
    if (opts.labels && opts.labels.length) {
      svg.append(node('text', { x: pad.l, y: h - 4, class: 'axis' }, opts.labels[0]));
      svg.append(node('text', { x: w - pad.r, y: h - 4, 'text-anchor': 'end', class: 'axis' }, opts.labels[n - 1]));
    }
    for (const s of opts.series) {
      const pts = s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
      const line = node('polyline', { points: pts, class: 'series ' + (s.cls || ''), 'data-series': s.name, fill: 'none' });
      line.append(node('title', {}, s.name));
      svg.append(line);
    }
    const first = opts.series[0];
    for (const m of opts.markers || []) {
      const a = node('a', { href: m.href, target: '_blank', rel: 'noopener' });
      const dot = node('circle', { cx: x(m.i), cy: y(first.values[m.i]), r: 4.5, class: 'marker', 'data-testid': 'chart-highlight' });
      dot.append(node('title', {}, m.title));
      a.append(dot);
      svg.append(a);
    }
    if (opts.legend) {
      let lx = pad.l + 4;
      for (const s of opts.series) {
        svg.append(node('rect', { x: lx, y: pad.t, width: 10, height: 3, class: 'legend ' + (s.cls || '') }));
        const t = node('text', { x: lx + 14, y: pad.t + 5, class: 'axis' }, s.name);
        svg.append(t);
        lx += 20 + s.name.length * 6.5;
      }
    }
  }

  // barChart draws opts.items ([{label, value, title}]) as horizontal bars,
  // longest for the largest value, one row of opts.row px each.
  function barChart(svg, opts) {
    const w = opts.width || 400;
    const row = opts.row || 18;
    const items = opts.items || [];
    const labelW = opts.labelWidth || 150;
    const h = Math.max(row, items.length * row) + 4;
    clear(svg, w, h);
    svg.setAttribute('height', String(h));
    svg.dataset.bars = String(items.length);
    if (items.length === 0) {
      svg.append(node('text', { x: w / 2, y: row - 4, 'text-anchor': 'middle', class: 'chart-empty' }, opts.empty || 'no data'));
      return;
    }
    const peak = Math.max(...items.map((it) => it.value), 1);
    const span = w - labelW - 44;
    items.forEach((it, i) => {
      const y0 = 2 + i * row;
      const label = node('text', { x: labelW - 6, y: y0 + row * 0.7, 'text-anchor': 'end', class: 'bar-label' }, it.label);
      svg.append(label);
      const bw = Math.max(2, (it.value / peak) * span);
      const bar = node('rect', { x: labelW, y: y0 + 2, width: bw.toFixed(1), height: row - 5, class: 'bar ' + (opts.cls || ''),
        'data-label': it.label, 'data-value': it.value });
      bar.append(node('title', {}, it.title || `${it.label}: ${it.value}`));
      svg.append(bar);
      svg.append(node('text', { x: labelW + bw + 4, y: y0 + row * 0.7, class: 'bar-value' }, it.value));
    });
  }

  return { lineChart, barChart, niceMax };
})();
