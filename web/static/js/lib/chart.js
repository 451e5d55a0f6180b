// Bar charts as inline SVG, built from DOM nodes (no library, no HTML).
import { h, svg } from '../dom.js';

// hbars draws one horizontal bar per row: {label, value, cls (0-4), text}.
// Labels sit above their bars, so the chart reads on a 360 px phone.
export function hbars(rows, { max, title, id } = {}) {
  const W = 320, rowH = 30, top = 4;
  const m = max || Math.max(1, ...rows.map((r) => r.value || 0));
  const el = svg('svg', { class: 'chart', viewBox: `0 0 ${W} ${top + rows.length * rowH + 4}`, role: 'img', 'aria-label': title || '', id });
  if (title) el.append(svg('title', { text: title }));
  rows.forEach((r, i) => {
    const y = top + i * rowH;
    const w = Math.max(r.value > 0 ? 1.5 : 0, ((r.value || 0) / m) * (W - 100));
    el.append(
      svg('text', { x: 0, y: y + 10, text: r.label }),
      svg('rect', { class: 'bar' + (r.cls || 0), x: 0, y: y + 14, width: w.toFixed(1), height: 10, rx: 2 },
        svg('title', { text: `${r.label}: ${r.text ?? r.value}` })),
      svg('text', { x: (w + 4).toFixed(1), y: y + 23, text: r.text ?? String(r.value) }));
  });
  return el;
}

// vbars draws groups of vertical bars side by side: groups [{label,
// values: [n…]}], series names for the legend.
export function vbars(groups, series, { title, id, fmt = String } = {}) {
  const W = 320, H = 180, base = 150, left = 4;
  const m = Math.max(1, ...groups.flatMap((g) => g.values.map((v) => v || 0)));
  const gw = (W - left) / Math.max(1, groups.length);
  const bw = Math.min(24, (gw - 6) / Math.max(1, series.length));
  const el = svg('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title || '', id });
  if (title) el.append(svg('title', { text: title }));
  el.append(svg('line', { class: 'axis', x1: 0, x2: W, y1: base, y2: base }));
  groups.forEach((g, i) => {
    const x0 = left + i * gw + (gw - bw * series.length) / 2;
    g.values.forEach((v, j) => {
      const hgt = ((v || 0) / m) * (base - 14);
      el.append(svg('rect', { class: 'bar' + (j % 5), x: (x0 + j * bw).toFixed(1), y: (base - hgt).toFixed(1), width: (bw - 2).toFixed(1), height: hgt.toFixed(1) },
        svg('title', { text: `${g.label} · ${series[j]}: ${fmt(v)}` })));
    });
    el.append(svg('text', { x: (left + i * gw + gw / 2).toFixed(1), y: base + 14, 'text-anchor': 'middle', text: g.label }));
  });
  return el;
}

export function legend(series) {
  return h('ul', { class: 'legend' }, series.map((s, i) => h('li', {}, h('i', { class: 'sw' + (i % 5) }), s)));
}
