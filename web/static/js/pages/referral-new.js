// Open a referral, from a patient's page or a consult (?person=&consult=):
// from a consult it goes through POST /consults/{id}/referral, which fills
// in the patient, the consult and (if left empty) the summary.
import { t } from '../i18n.js';
import { h, field, showError, toast } from '../dom.js';
import { get, api } from '../api.js';

const RANK = { city: 0, county: 1, township: 2, village: 3 };

export default async function (root, ctx) {
  const me = ctx.me;
  const personId = ctx.query.get('person');
  const consultId = ctx.query.get('consult');
  root.append(h('h1', { text: t('ref.new') }));
  if (!personId) {
    root.append(h('p', { class: 'card' }, t('ref.pick_patient'), ' ', h('a', { href: '#/patients', text: t('nav.patients') })));
    return;
  }
  const [person, facs, chain, con] = await Promise.all([
    get('/api/v1/persons/' + personId),
    get('/api/v1/facilities?limit=1000'),
    get(`/api/v1/facilities/${encodeURIComponent(me.facility)}/chain`),
    consultId ? get('/api/v1/consults/' + encodeURIComponent(consultId)).catch(() => null) : null,
  ]);
  const p = person.person || person;
  const up = chain.facilities.slice(1);
  const myRank = RANK[me.tier] ?? 3;
  const others = facs.facilities.filter((f) => f.code !== me.facility && !up.some((u) => u.code === f.code) &&
    (me.role === 'doctor' || RANK[f.tier] < myRank));
  const to = h('select', { name: 'to_facility', id: 'to-facility', required: true },
    h('optgroup', { label: t('ref.up_chain') }, up.map((f) => h('option', { value: f.code, text: `${f.name} (${t('tier.' + f.tier)})` }))),
    ['city', 'county', 'township', 'village'].map((tier) => {
      const fs = others.filter((f) => f.tier === tier);
      return fs.length ? h('optgroup', { label: t('tier.' + tier) }, fs.map((f) => h('option', { value: f.code, text: f.name }))) : null;
    }));
  const urgency = h('select', { name: 'urgency', id: 'urgency' },
    ['routine', 'urgent', 'emergency'].map((u) => h('option', { value: u, text: t('urgency.' + u) })));
  const dx = h('input', { name: 'diagnoses', id: 'diagnoses', placeholder: 'I63.9, E11.9', required: true, autocapitalize: 'characters' });
  const summary = h('textarea', { name: 'summary', id: 'summary', rows: 5, required: !consultId });
  if (con) {
    to.value = con.to_facility?.code || to.value;
    summary.placeholder = [con.reason, con.advice].filter(Boolean).join('\n');
  }
  const key = crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2) + Date.now();
  const btn = h('button', { type: 'submit', class: 'primary', id: 'ref-send', text: t('ref.send') });
  const form = h('form', {
    class: 'card', id: 'ref-form',
    onsubmit: async (e) => {
      e.preventDefault();
      btn.disabled = true;
      const req = {
        to_facility: to.value, urgency: urgency.value,
        diagnoses: dx.value.split(/[,，;；\s]+/).filter(Boolean), summary: summary.value,
      };
      if (!consultId) req.person_id = Number(personId);
      const path = consultId ? `/api/v1/consults/${encodeURIComponent(consultId)}/referral` : '/api/v1/referrals';
      try {
        const r = await api(path, { method: 'POST', body: req, headers: { 'Idempotency-Key': key } });
        toast(t('ref.sent'));
        ctx.go('/referrals/' + r.id);
      } catch (err) { showError(err, form); btn.disabled = false; }
    },
  },
  h('p', {}, h('b', { text: p.name }), ' ', h('small', { class: 'muted', text: p.national_id || '' }),
    consultId ? h('small', { class: 'muted', text: ` · ${t('ref.consult')} #${consultId}` }) : null),
  field(t('ref.to'), to), field(t('ref.urgency'), urgency),
  field(t('ref.diagnoses'), dx, t('ref.dx_hint')), field(t('ref.summary'), summary), btn);
  root.append(form);
}
