// One bill: its lines, its settlement explained, its history; reverse.
import { t } from '../i18n.js';
import { h, put, field, fmtTime, showError, toast } from '../dom.js';
import { get, api } from '../api.js';
import { split, yuan } from '../lib/split.js';
import { pending } from './billing.js';

export default async function (root, ctx) {
  const id = ctx.params[0];
  let b;
  try { b = await get('/api/v1/bills/' + id); } catch (e) {
    if (pending(e)) { root.append(h('p', { class: 'card', text: t('bill.pending') })); return; }
    throw e;
  }
  const s = b.settlement;
  const reversed = b.status === 'reversed' || (s && s.reversed_by);
  const reason = h('input', { name: 'reason', id: 'reverse-reason', required: true });
  const form = h('form', { class: 'card', id: 'reverse-form' }, field(t('bill.reverse_reason'), reason),
    h('button', { type: 'submit', class: 'danger', id: 'bill-reverse', text: t('bill.reverse') }));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await api(`/api/v1/settlements/${s.id}/reverse`, { method: 'POST', body: { reason: reason.value }, headers: { 'Idempotency-Key': String(Date.now()) } });
      toast(t('app.done'));
      ctx.go(`/billing/${id}?r=${Date.now()}`);
    } catch (err) { showError(err, form); }
  });
  put(root, h('h1', { text: `${t('bill.title')} #${id}` }),
    h('p', { class: 'muted', text: `${t('bill.' + b.kind)} · ${b.facility} · ${b.date} · ${yuan(b.total)} · ${t('bill.status.' + b.status)}` }),
    h('div', { class: 'table-wrap' }, h('table', { id: 'bill-lines' }, h('tbody', {}, (b.lines || []).map((l) => h('tr', {},
      h('td', { text: l.name }), h('td', { text: t('bill.class.' + l.class) }), h('td', { class: 'num', text: `${l.quantity} × ${l.unit_price}` }),
      h('td', { class: 'num money', text: yuan(l.amount) })))))),
    s ? h('section', { class: 'card' }, h('h2', { text: t('bill.split') }), split(typeof s.result === 'string' ? JSON.parse(s.result) : s.result)) : null,
    reversed ? h('p', { class: 'card bad', text: t('bill.reversed') }) : s ? form : null,
    (b.settlements || []).length ? h('ul', { class: 'list', id: 'bill-history' }, b.settlements.map((x) => h('li', {},
      `#${x.id} · ${x.kind} · ${x.posted_on} · ${yuan(x.total)} · ${t('fund.patient')} ${yuan(x.patient)}`))) : null,
    h('small', { class: 'muted', text: fmtTime(b.updated_at) }));
}
