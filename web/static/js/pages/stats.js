// County referral figures: flows between tiers, acceptance times, loop closure.
import { t } from '../i18n.js';
import { h, clear } from '../dom.js';
import { get } from '../api.js';
import { hbars, legend } from '../lib/chart.js';

const TIERS = ['city', 'county', 'township', 'village'];
const DIRS = { up: 0, lateral: 1, down: 2 };

export default async function (root, ctx) {
  const now = new Date();
  const month = h('input', { type: 'month', id: 'stats-month', value: ctx.query.get('month') || `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, '0')}` });
  const out = h('div', { id: 'stats' });
  root.append(h('h1', { text: t('nav.stats') }), h('div', { class: 'toolbar' }, h('label', { class: 'field' }, h('span', { text: t('stats.month') }), month)), out);
  month.addEventListener('change', () => ctx.go('/stats?month=' + month.value));
  const st = await get('/api/v1/referrals/stats?month=' + encodeURIComponent(month.value));
  clear(out);
  const fs = st.facilities || [];
  const sum = (k) => fs.reduce((a, f) => a + (f[k] || 0), 0);
  const sent = sum('sent'), accepted = sum('accepted'), closed = sum('loop_closed'), overdue = sum('overdue');
  out.append(h('div', { class: 'grid tiles' },
    tile(t('stats.sent'), sent), tile(t('stats.accepted'), accepted),
    tile(t('stats.loop_rate'), sent ? pct(closed / sent) : '–'), tile(t('stats.overdue'), overdue)));

  // 1. flows between tiers
  const flows = (st.flows || []).filter((f) => f.count > 0)
    .sort((a, b) => TIERS.indexOf(b.from_tier) - TIERS.indexOf(a.from_tier) || b.count - a.count);
  out.append(h('section', { class: 'card' }, h('h2', { text: t('stats.flows') }),
    flows.length ? [legend([t('dir.up'), t('dir.lateral'), t('dir.down')]),
      hbars(flows.map((f) => ({ label: `${t('tier.' + f.from_tier)} → ${t('tier.' + f.to_tier)}`, value: f.count, cls: DIRS[f.direction] ?? 0 })),
        { title: t('stats.flows'), id: 'chart-flows' })] : h('p', { class: 'muted', text: t('app.none') })));

  // 2. acceptance times (median, hours) of receiving facilities
  const acc = fs.filter((f) => f.accept_median_seconds != null).sort((a, b) => b.accept_median_seconds - a.accept_median_seconds).slice(0, 15);
  out.append(h('section', { class: 'card' }, h('h2', { text: t('stats.accept_time') }),
    acc.length ? hbars(acc.map((f) => ({ label: f.facility.name, value: f.accept_median_seconds / 3600, cls: 1,
      text: `${hours(f.accept_median_seconds)} (P90 ${hours(f.accept_p90_seconds)})` })), { title: t('stats.accept_time'), id: 'chart-accept' })
      : h('p', { class: 'muted', text: t('app.none') })));

  // 3. loop closure by sending tier, then the facilities that sent most
  const byTier = TIERS.map((tier) => {
    const xs = fs.filter((f) => f.facility.tier === tier);
    const s = xs.reduce((a, f) => a + f.sent, 0), c = xs.reduce((a, f) => a + f.loop_closed, 0);
    return { tier, s, c };
  }).filter((x) => x.s > 0);
  const top = fs.filter((f) => f.sent > 0).sort((a, b) => b.sent - a.sent).slice(0, 10);
  out.append(h('section', { class: 'card' }, h('h2', { text: t('stats.loop') }),
    byTier.length ? hbars(byTier.map((x) => ({ label: `${t('tier.' + x.tier)} (${x.c}/${x.s})`, value: x.c / x.s, cls: 0, text: pct(x.c / x.s) })),
      { max: 1, title: t('stats.loop'), id: 'chart-loop' }) : h('p', { class: 'muted', text: t('app.none') }),
    top.length ? h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, [t('users.facility'), t('stats.sent'), t('stats.loop_closed'), t('stats.loop_rate')].map((x, i) => h('th', { class: i ? 'num' : null, text: x })))),
      h('tbody', {}, top.map((f) => h('tr', {}, h('td', { text: f.facility.name }), h('td', { class: 'num', text: f.sent }),
        h('td', { class: 'num', text: f.loop_closed }), h('td', { class: 'num', text: f.loop_closure_rate == null ? '–' : pct(f.loop_closure_rate) })))))) : null));
}

const tile = (label, value) => h('div', { class: 'card' }, h('div', { class: 'muted', text: label }), h('div', { class: 'total', text: String(value) }));
const pct = (x) => `${Math.round(x * 1000) / 10}%`;
const hours = (s) => (s == null ? '–' : s < 3600 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`);
