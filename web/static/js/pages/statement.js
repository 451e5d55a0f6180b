// A poor household's annual statement: members, every bill of the year and
// who paid what; printable (print CSS), or the server's printable page.
import { t } from '../i18n.js';
import { h, clear, showError } from '../dom.js';
import { get } from '../api.js';
import { FUNDS, yuan } from '../lib/split.js';
import { pending } from './billing.js';

export default async function (root, ctx) {
  const hh = h('input', { name: 'household', id: 'stmt-household', value: ctx.query.get('household') || '', required: true });
  const year = h('input', { type: 'number', name: 'year', id: 'stmt-year', value: ctx.query.get('year') || new Date().getFullYear(), min: 2000, max: 2100 });
  const out = h('div', { id: 'stmt-out' });
  const form = h('form', { class: 'toolbar' }, h('label', { class: 'field' }, h('span', { text: t('stmt.household') }), hh),
    h('label', { class: 'field' }, h('span', { text: t('stmt.year') }), year), h('button', { type: 'submit', class: 'primary', text: t('app.search') }),
    h('button', { type: 'button', id: 'stmt-print', text: t('app.print'), onclick: () => print() }));
  root.append(h('h1', { class: 'no-print', text: t('stmt.title') }), form, out);
  form.addEventListener('submit', (e) => { e.preventDefault(); ctx.go(`/statements?household=${encodeURIComponent(hh.value.trim())}&year=${year.value}`); });
  if (!hh.value) return;
  const path = `/api/v1/households/${encodeURIComponent(hh.value)}/statement?year=${year.value}`;
  let s;
  try { s = await get(path); } catch (e) {
    if (pending(e)) out.append(h('p', { class: 'card muted', id: 'stmt-pending', text: t('bill.pending') }));
    else showError(e);
    return;
  }
  const cols = ['total', ...FUNDS, 'patient'];
  const money = (x) => cols.map((k) => h('td', { class: 'num money', text: yuan(x?.[k]) }));
  clear(out).append(h('article', { class: 'card statement', id: 'statement' },
    h('h2', { text: `${t('stmt.title')} · ${s.year}` }),
    h('p', { text: `${t('stmt.household')}: ${s.household} · ${t('cat.' + s.category)} · ${s.village_code}` }),
    h('p', { class: 'no-print' }, h('a', { href: path + '&format=html', target: '_blank', rel: 'noopener', text: t('stmt.printable') })),
    h('div', { class: 'table-wrap' }, h('table', { id: 'stmt-bills' },
      h('thead', {}, h('tr', {}, [t('bill.date'), t('pat.title'), t('users.facility'), ...cols.map((k) => (k === 'total' ? t('bill.total') : t('fund.' + k)))]
        .map((x, i) => h('th', { class: i > 2 ? 'num' : null, text: x })))),
      h('tbody', {}, (s.bills || []).map((b) => h('tr', { class: b.status === 'settled' ? null : 'muted' },
        h('td', { text: b.date }), h('td', { text: b.person_name }), h('td', { text: b.facility_name }), money(b)))),
      h('tfoot', {}, h('tr', { class: 'total' }, h('td', { text: t('clear.total') }), h('td'), h('td'), money(s.totals))))),
    h('h3', { text: t('pat.household') }),
    h('ul', { class: 'list' }, (s.members || []).map((m) => h('li', {}, `${m.name} · ${t('rel.' + m.relation)} · ${m.national_id} · ${t('fund.patient')} ${yuan(m.totals?.patient)}`))),
    h('p', { class: 'print-only muted', text: `${t('app.name')} · ${new Date().toLocaleString()}` })));
}
