// Consults: those addressed to or started by my facility (?box=incoming or
// outgoing narrows it); start one for a patient (?person=ID).
import { t } from '../i18n.js';
import { h, clear, chip, field, fmtTime, showError } from '../dom.js';
import { get, api } from '../api.js';

export default async function (root, ctx) {
  const person = ctx.query.get('person');
  root.append(h('h1', { text: t('nav.consults') }));
  if (person) root.append(await newForm(ctx, person));
  const box = ['incoming', 'outgoing'].includes(ctx.query.get('box')) ? ctx.query.get('box') : '';
  const pick = h('select', { id: 'con-box', onchange: () => ctx.go('/consults' + (pick.value ? '?box=' + pick.value : '')) },
    ['', 'incoming', 'outgoing'].map((b) => h('option', { value: b, selected: b === box, text: t('con.box.' + (b || 'all')) })));
  const list = h('ul', { class: 'list', id: 'con-list' });
  root.append(h('div', { class: 'row' }, pick), list);
  const r = await get('/api/v1/consults?limit=100' + (box ? '&box=' + box : ''));
  clear(list);
  for (const c of r.consults || []) {
    list.append(h('li', { 'data-id': c.id },
      h('div', { class: 'row' }, h('a', { class: 'grow', href: '#/consults/' + c.id }, h('b', { text: c.patient?.name || `#${c.id}` })),
        chip('constate', c.state)),
      h('small', { class: 'muted', text: `${c.from_facility?.name || ''} → ${c.to_facility?.name || ''} · ${c.requester} · ${fmtTime(c.created_at)}` })));
  }
  if (!list.firstChild) list.append(h('li', { class: 'muted', text: t('app.none') }));
}

async function newForm(ctx, person) {
  const [p, chain] = await Promise.all([get('/api/v1/persons/' + person), get(`/api/v1/facilities/${encodeURIComponent(ctx.me.facility)}/chain`)]);
  const to = h('select', { name: 'to_facility', id: 'con-to' }, chain.facilities.slice(1).map((f) => h('option', { value: f.code, text: `${f.name} (${t('tier.' + f.tier)})` })));
  const reason = h('textarea', { name: 'reason', id: 'con-reason', rows: 3, required: true });
  const key = crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2) + Date.now();
  const form = h('form', {
    class: 'card', id: 'con-form',
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        const c = await api('/api/v1/consults', { method: 'POST', body: { person_id: Number(person), to_facility: to.value, reason: reason.value }, headers: { 'Idempotency-Key': key } });
        ctx.go('/consults/' + c.id);
      } catch (err) { showError(err, form); }
    },
  }, h('h2', { text: t('con.new') }), h('p', {}, h('b', { text: p.name }), ' ', h('small', { class: 'muted', text: p.national_id })),
  field(t('con.to'), to), field(t('con.reason'), reason), h('button', { type: 'submit', class: 'primary', id: 'con-start', text: t('con.start') }));
  return form;
}
