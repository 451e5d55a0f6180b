// Billing: enter (or import) a bill, estimate it, settle it; the split is
// explained fund by fund. The settlement service's routes are not wired
// yet: until they are they answer 404 and the page says so.
import { t } from '../i18n.js';
import { h, clear, field, select, showError, toast, progress } from '../dom.js';
import { get, api, upload } from '../api.js';
import { split, yuan } from '../lib/split.js';

export const pending = (e) => e.status === 404 && /no such route/.test(e.message);
const today = () => new Date().toISOString().slice(0, 10);

export default async function (root, ctx) {
  const person = h('input', { name: 'person_id', id: 'bill-person', inputmode: 'numeric', required: true, value: ctx.query.get('person') || '' });
  const who = h('small', { class: 'muted', id: 'bill-who' });
  const kind = select('kind', [['inpatient', t('bill.inpatient')], ['outpatient', t('bill.outpatient')]], 'inpatient');
  const from = h('input', { type: 'date', name: 'admitted_on', value: today() });
  const to = h('input', { type: 'date', name: 'discharged_on', value: today() });
  const emergency = h('input', { type: 'checkbox', name: 'emergency' });
  const referral = h('input', { name: 'referral_id', inputmode: 'numeric', placeholder: '#' });
  const extNo = h('input', { name: 'external_no' });
  const lines = h('div', { id: 'bill-lines' });
  const addLine = () => lines.append(h('div', { class: 'card line' },
    h('div', { class: 'row' }, h('input', { name: 'name', class: 'grow', placeholder: t('bill.item'), required: true }),
      h('button', { type: 'button', class: 'link', text: '✕', 'aria-label': t('bill.remove'), onclick: (e) => e.target.closest('.line').remove() })),
    h('div', { class: 'grid three' },
      select('class', [['A', t('bill.class.A')], ['B', t('bill.class.B')], ['C', t('bill.class.C')]], 'A'),
      h('input', { name: 'quantity', inputmode: 'decimal', value: '1', 'aria-label': t('bill.qty'), required: true }),
      h('input', { name: 'unit_price', inputmode: 'decimal', placeholder: t('bill.price'), 'aria-label': t('bill.price'), required: true }))));
  addLine();
  const out = h('div', { id: 'bill-out' });
  const body = () => {
    const b = { person_id: Number(person.value), kind: kind.value, emergency: emergency.checked, lines: [] };
    if (kind.value === 'inpatient') Object.assign(b, { admitted_on: from.value, discharged_on: to.value });
    else b.visit_on = to.value;
    if (referral.value) b.referral_id = Number(referral.value);
    if (extNo.value) b.external_no = extNo.value.trim();
    lines.querySelectorAll('.line').forEach((l, i) => b.lines.push({ item_code: 'L' + (i + 1), name: l.querySelector('[name=name]').value.trim(),
      class: l.querySelector('select').value, quantity: l.querySelector('[name=quantity]').value.trim(), unit_price: l.querySelector('[name=unit_price]').value.trim() }));
    return b;
  };
  const key = () => (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random());
  const form = h('form', { class: 'card', id: 'bill-form' },
    h('h2', { text: t('bill.new') }),
    h('div', { class: 'grid two' }, field(t('bill.person'), person), field(t('bill.kind'), kind),
      field(t('bill.admitted'), from), field(t('bill.date'), to), field(t('bill.referral'), referral), field(t('bill.external'), extNo)),
    who, h('label', { class: 'check' }, emergency, t('bill.emergency')),
    h('h3', { text: t('bill.lines') }), lines,
    h('button', { type: 'button', id: 'bill-add-line', text: '+ ' + t('bill.add_line'), onclick: addLine }),
    h('div', { class: 'actions' },
      h('button', { type: 'button', id: 'bill-estimate', text: t('bill.estimate'), onclick: () => run(false) }),
      h('button', { type: 'submit', class: 'primary', id: 'bill-settle', text: t('bill.settle') })));
  form.addEventListener('submit', (e) => { e.preventDefault(); run(true); });
  person.addEventListener('change', async () => {
    try { const p = await get('/api/v1/persons/' + Number(person.value)); who.textContent = `${p.name} · ${p.national_id} · ${t('cat.' + p.category)}`; } catch { who.textContent = ''; }
  });
  async function run(settle) {
    try {
      let res, bill;
      if (settle) {
        bill = await api('/api/v1/bills', { method: 'POST', body: body(), headers: { 'Idempotency-Key': key() } });
        const s = await api(`/api/v1/bills/${bill.id}/settle`, { method: 'POST', body: { version: bill.version }, headers: { 'Idempotency-Key': key() } });
        res = (s.settlement || s).result;
      } else {
        const e = await api('/api/v1/bills/estimate', { method: 'POST', body: body() });
        res = e.result || e;
      }
      clear(out).append(h('section', { class: 'card' }, h('h2', { text: settle ? t('bill.settled') : t('bill.estimate') }), split(res),
        bill ? h('a', { href: '#/billing/' + bill.id, id: 'bill-open', text: t('bill.open') }) : null));
      if (settle) toast(t('bill.settled'));
    } catch (err) { pending(err) ? toast(t('bill.pending'), true) : showError(err, form); }
  }
  const recent = h('ul', { class: 'list', id: 'bill-recent' });
  root.append(h('h1', { text: t('nav.billing') }), form, out, h('h2', { text: t('bill.recent') }), recent, importForm());
  try {
    const { bills } = await get('/api/v1/bills?limit=20');
    recent.append(...bills.map((b) => h('li', {}, h('a', { href: '#/billing/' + b.id, text: `#${b.id} · ${b.date} · ${yuan(b.total)}` }), ' ', h('span', { class: 'chip', text: t('bill.status.' + b.status) }))));
    if (!bills.length) recent.append(h('li', { class: 'muted', text: t('app.none') }));
  } catch (e) { recent.append(h('li', { class: 'muted', id: 'bill-pending', text: pending(e) ? t('bill.pending') : e.message })); }
}

function importForm() {
  const file = h('input', { type: 'file', name: 'file', accept: '.csv,text/csv' });
  const bar = progress();
  const form = h('form', { class: 'card', id: 'bill-import' }, h('h2', { text: t('bill.import') }), h('label', { class: 'field' }, h('span', { text: 'CSV' }), file),
    h('button', { type: 'submit', text: t('app.upload') }), bar.el);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!file.files[0]) return;
    const fd = new FormData();
    fd.append('file', file.files[0]);
    try {
      const r = await upload('/api/v1/bills/import', fd, (v) => bar.set(v, v < 1 ? t('app.uploading') : t('app.processing')));
      const c = r.report?.bills || {};
      bar.set(1, t('bill.imported', { n: c.added ?? 0, u: c.updated ?? 0, r: c.rejected ?? 0 }));
    } catch (err) { bar.done(); pending(err) ? toast(t('bill.pending'), true) : showError(err, form); }
  });
  return form;
}
