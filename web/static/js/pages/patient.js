// A patient: identity, household, insurance, referral history; start a
// consult or a referral from here.
import { t } from '../i18n.js';
import { h } from '../dom.js';
import { get } from '../api.js';
import { refItem } from '../lib/ref.js';
import { personItem } from './patients.js';

export default async function (root, ctx) {
  const id = ctx.params[0];
  const p = await get('/api/v1/persons/' + id);
  const doc = ['village_doctor', 'doctor'].includes(ctx.me.role);
  root.append(h('section', { class: 'card', id: 'patient' },
    h('div', { class: 'row' }, h('h1', { class: 'grow', text: p.name }),
      p.category !== 'none' ? h('span', { class: 'chip chip-urgent', text: t('cat.' + p.category) }) : null),
    h('dl', { class: 'kv' },
      h('dt', { text: t('pat.id') }), h('dd', { text: p.national_id }),
      h('dt', { text: t('pat.sex') }), h('dd', { text: t('pat.sex.' + p.sex) }),
      h('dt', { text: t('pat.birth') }), h('dd', { text: p.birth_date }),
      h('dt', { text: t('pat.village') }), h('dd', { text: p.village_code }),
      h('dt', { text: t('pat.relation') }), h('dd', { text: t('rel.' + p.relation) }),
      h('dt', { text: t('pat.insured') }), h('dd', { text: (p.insurance || []).filter((y) => y.insured).map((y) => y.year).join(', ') || '–' })),
    h('div', { class: 'actions' }, doc ? [
      h('a', { class: 'chip', id: 'pat-consult', href: `#/consults?person=${id}`, text: t('pat.consult') }),
      h('a', { class: 'chip', id: 'pat-refer', href: `#/referrals/new?person=${id}`, text: t('pat.refer') })] : [
      ctx.me.role === 'billing_clerk' ? h('a', { class: 'chip', id: 'pat-bill', href: `#/billing?person=${id}`, text: t('bill.new') }) : null,
      h('a', { class: 'chip', id: 'pat-statement', href: `#/statements?household=${encodeURIComponent(p.household_id)}`, text: t('nav.statements') })])));
  const hh = h('ul', { class: 'list', id: 'household' });
  const refs = h('ul', { class: 'list', id: 'pat-refs' });
  root.append(h('div', { class: 'grid two' },
    h('section', {}, h('h2', { text: t('pat.household') }), hh),
    h('section', {}, h('h2', { text: t('pat.history') }), refs)));
  const [house, list] = await Promise.all([
    get('/api/v1/households/' + encodeURIComponent(p.household_id)).catch(() => null),
    ctx.me.role === 'billing_clerk' ? null : get('/api/v1/referrals?limit=200').catch(() => null),
  ]);
  if (house) hh.append(...house.members.filter((m) => String(m.id) !== String(id)).map(personItem));
  if (!hh.firstChild) hh.append(h('li', { class: 'muted', text: t('app.none') }));
  const mine = (list?.referrals || []).filter((s) => String(s.patient?.person_id) === String(id));
  refs.append(...mine.map(refItem));
  if (!mine.length) refs.append(h('li', { class: 'muted', text: t('app.none') }));
}
