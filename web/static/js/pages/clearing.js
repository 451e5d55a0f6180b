// Monthly clearing: what each fund owes each facility, with a chart; run a
// month's clearing (long work: progress shown until it answers).
import { t, lang } from '../i18n.js';
import { h, clear, showError, toast, progress } from '../dom.js';
import { get, post } from '../api.js';
import { hbars } from '../lib/chart.js';
import { yuan } from '../lib/split.js';
import { pending } from './billing.js';

export default async function (root, ctx) {
  const d = new Date(Date.now() - 20 * 86400000);
  const month = h('input', { type: 'month', id: 'clear-month', value: ctx.query.get('month') || d.toISOString().slice(0, 7) });
  const out = h('div', { id: 'clear-out' });
  const bar = progress();
  const runBtn = h('button', { type: 'button', class: 'primary', id: 'clear-run', text: t('clear.run') });
  root.append(h('h1', { text: t('nav.clearing') }),
    h('div', { class: 'toolbar' }, h('label', { class: 'field' }, h('span', { text: t('stats.month') }), month), runBtn), bar.el, out);
  month.addEventListener('change', () => ctx.go('/clearing?month=' + month.value));
  runBtn.addEventListener('click', async () => {
    runBtn.disabled = true;
    bar.set(null, t('app.processing'));
    try { const run = await post('/api/v1/clearing', { period: month.value }); bar.set(1, t('app.done')); history.replaceState(null, '', `#/clearing?month=${month.value}&run=${run.id}`); show(run); } catch (e) { bar.done(); pending(e) ? toast(t('bill.pending'), true) : showError(e); }
    runBtn.disabled = false;
  });
  const L = (l) => (lang() === 'en' ? l?.en : l?.zh) || '';
  function show(run) {
    const funds = run.funds || [];
    clear(out).append(h('section', { class: 'card' }, h('h2', { text: `${t('clear.by_fund')} · ${run.period} · ${yuan(run.owed)}` }),
      h('a', { class: 'no-print', href: `/api/v1/clearing/${run.id}?format=csv`, download: '', text: 'CSV' }),
      hbars(funds.map((f, i) => ({ label: L(f.label) || t('fund.' + f.fund), value: Number(f.amount), cls: i % 5, text: yuan(f.amount) })), { id: 'clear-chart', title: t('clear.by_fund') })),
    h('div', { class: 'table-wrap' }, h('table', { id: 'clear-table' },
      h('thead', {}, h('tr', {}, h('th', { text: t('users.facility') }), h('th', { class: 'num', text: t('bill.total') }),
        funds.map((f) => h('th', { class: 'num', text: L(f.label) || f.fund })), h('th', { class: 'num', text: t('clear.owed') }))),
      h('tbody', {}, (run.facilities || []).map((r) => h('tr', {}, h('td', { text: r.name || r.facility }), h('td', { class: 'num money', text: yuan(r.total) }),
        funds.map((f) => h('td', { class: 'num money', text: yuan((r.funds || []).find((x) => x.fund === f.fund)?.amount) })),
        h('td', { class: 'num money', text: yuan(r.owed) })))))));
  }
  const run = ctx.query.get('run');
  if (run) {
    try { show(await get('/api/v1/clearing/' + encodeURIComponent(run))); } catch (e) { showError(e); }
  } else out.append(h('p', { class: 'card muted', id: 'clear-hint', text: t('clear.hint') }));
}
