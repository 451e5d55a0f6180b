// Find a patient by name or identity number.
import { t } from '../i18n.js';
import { h, clear, showError } from '../dom.js';
import { get } from '../api.js';

export default async function (root, ctx) {
  const q = h('input', { type: 'search', name: 'q', id: 'pat-q', value: ctx.query.get('q') || '', placeholder: t('pat.search'), autocomplete: 'off', 'aria-label': t('pat.search') });
  const list = h('ul', { class: 'list', id: 'pat-list' });
  const form = h('form', { class: 'toolbar', role: 'search' }, q, h('button', { type: 'submit', class: 'primary', id: 'pat-go', text: t('app.search') }));
  root.append(h('h1', { text: t('nav.patients') }), form, h('p', { class: 'muted', text: t('pat.hint') }), list);
  let seq = 0;
  async function search() {
    const v = q.value.trim();
    history.replaceState(null, '', '#/patients' + (v ? '?q=' + encodeURIComponent(v) : ''));
    if (!v) { clear(list); return; }
    const my = ++seq;
    try {
      const r = await get('/api/v1/persons?limit=50&q=' + encodeURIComponent(v));
      if (my !== seq) return;
      clear(list).append(...r.persons.map(personItem));
      if (!r.persons.length) list.append(h('li', { class: 'muted', text: t('pat.none') }));
    } catch (e) { showError(e, form); }
  }
  form.addEventListener('submit', (e) => { e.preventDefault(); search(); });
  let timer;
  q.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(search, 400); });
  if (q.value) await search();
  q.focus();
}

export function personItem(p) {
  return h('li', { 'data-person': p.id },
    h('div', { class: 'row' }, h('a', { class: 'grow', href: '#/patients/' + p.id }, h('b', { text: p.name })),
      p.category && p.category !== 'none' ? h('span', { class: 'chip chip-urgent', text: t('cat.' + p.category) }) : null),
    h('small', { class: 'muted', text: `${p.national_id} · ${t('pat.sex.' + p.sex)} · ${p.birth_date} · ${t('rel.' + p.relation)}` }));
}
