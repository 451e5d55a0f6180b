// The explanation of a settlement: who pays what, then each fund's base,
// rate, caps and amount in words, from the engine's bilingual trace.
import { t, lang } from '../i18n.js';
import { h } from '../dom.js';
import { hbars } from './chart.js';

export const FUNDS = ['basic', 'critical', 'assistance', 'supplementary', 'backstop', 'hospital'];
const L = (l) => (l ? (lang() === 'en' ? l.en : l.zh) : '');
export const yuan = (s) => '¥' + (s ?? '0.00');
const pct = (r) => (r == null ? '' : `${+(Number(r) * 100).toFixed(4)}%`);

export function split(r) {
  const tr = r.trace || {};
  const label = (f) => L((tr.steps || []).find((s) => s.fund === f)?.label) || t('fund.' + f);
  const rows = [...FUNDS.map((f) => [f, label(f), r[f]]), ['patient', t('fund.patient'), r.patient]];
  return h('div', { class: 'split', id: 'split' },
    h('div', { class: 'table-wrap' }, h('table', { id: 'split-table' },
      h('tbody', {},
        h('tr', { class: 'total' }, h('td', { text: t('bill.total') }), h('td', { class: 'num money', 'data-fund': 'total', text: yuan(r.total) })),
        h('tr', {}, h('td', { text: L({ zh: '政策范围内费用', en: 'Eligible (in-policy) amount' }) }), h('td', { class: 'num money', 'data-fund': 'eligible', text: yuan(r.eligible) })),
        rows.map(([f, l, v]) => h('tr', { class: f === 'patient' ? 'total' : null }, h('td', { text: l }), h('td', { class: 'num money', 'data-fund': f, text: yuan(v) })))))),
    hbars(rows.map(([f, l, v], i) => ({ label: l, value: Number(v), cls: f === 'patient' ? 4 : i % 4, text: yuan(v) })).filter((x) => x.value > 0), { title: t('bill.split'), id: 'split-chart' }),
    (tr.notes || []).map((n) => h('p', { class: 'muted', text: L(n) })),
    h('h3', { text: t('bill.how') }),
    h('ol', { class: 'list', id: 'split-steps' }, (tr.steps || []).map(step)));
}

function step(s) {
  const li = h('li', { 'data-step': s.fund }, h('b', { text: L(s.label) }), ' ');
  if (!s.applies) { li.append(h('span', { class: 'muted', text: `${t('split.na')}: ${L(s.reason)}` })); return li; }
  li.append(h('div', { text: `${t('split.base')}: ${L(s.base_label)} = ${yuan(s.base)}` }));
  if (s.rate != null) li.append(h('div', { text: `${t('split.rate')}: ${pct(s.rate)}` }));
  for (const d of s.derivation || []) {
    const x = { '=': `: ${d.value}`, info: `: ${d.value}`, max0: ` → ${d.result}`, round2: ` → ${d.result}`, clamp: ` → ${d.result}` }[d.op] ?? ` ${d.op} ${d.value} → ${d.result}`;
    li.append(h('div', { class: 'muted', text: `· ${L(d.label)}${x}` }));
  }
  for (const g of s.segments || []) li.append(h('div', { class: 'muted', text: `· ${yuan(g.from)} – ${g.to == null ? '∞' : yuan(g.to)} × ${pct(g.rate)}: ${yuan(g.base)} → ${g.amount}` }));
  li.append(h('div', { text: `${t('split.computed')}: ${yuan(s.computed)}` }));
  for (const c of s.caps || []) {
    li.append(h('div', { class: c.bit ? 'bad' : 'muted', text: `${t('split.cap')}: ${L(c.label)} — ${c.limit == null ? t('split.nolimit') : yuan(c.limit)}` +
      `${Number(c.used) ? `, ${t('split.used')} ${yuan(c.used)}` : ''}${c.remaining != null ? `, ${t('split.left')} ${yuan(c.remaining)}` : ''}${c.bit ? ' · ' + t('split.bit') : ''}` }));
  }
  li.append(h('div', { class: 'total', text: `${s.fund === 'deductible' ? t('split.deductible') : t('split.pays')}: ${yuan(s.amount)}` }));
  return li;
}
