// The audit log, newest first, with filters and paging.
import { t } from '../i18n.js';
import { h, clear, field, fmtTime, showError } from '../dom.js';
import { get } from '../api.js';

export default async function (root) {
  const inputs = {
    username: h('input', { name: 'username', autocapitalize: 'none' }),
    action: h('input', { name: 'action', placeholder: 'login, read, deny…' }),
    record_type: h('input', { name: 'record_type', placeholder: 'person, referral…' }),
  };
  const body = h('tbody');
  const more = h('button', { type: 'button', hidden: true, text: t('app.more') });
  const form = h('form', { class: 'toolbar', id: 'audit-form' },
    field(t('users.username'), inputs.username), field(t('audit.action'), inputs.action), field(t('audit.record_type'), inputs.record_type),
    h('button', { type: 'submit', class: 'primary', text: t('app.search') }));
  root.append(h('h1', { text: t('nav.audit') }), form,
    h('div', { class: 'table-wrap' }, h('table', { id: 'audit-table', class: 'stack' },
      h('thead', {}, h('tr', {}, ['audit.at', 'users.username', 'audit.action', 'audit.record', 'users.facility', 'audit.ip'].map((k) => h('th', { text: t(k) })))),
      body)), more);
  let before = null;
  async function load(reset) {
    const qs = new URLSearchParams({ limit: '100' });
    for (const [k, el] of Object.entries(inputs)) if (el.value.trim()) qs.set(k, el.value.trim());
    if (!reset && before) qs.set('before', before);
    try {
      const r = await get('/api/v1/audit?' + qs);
      if (reset) clear(body);
      for (const e of r.entries) {
        body.append(h('tr', {}, h('td', { text: fmtTime(e.at) }), h('td', { 'data-label': t('users.username'), text: e.username }), h('td', { 'data-label': t('audit.action'), text: e.action }),
          h('td', { 'data-label': t('audit.record'), text: [e.record_type, e.record_id].filter(Boolean).join(':') }), h('td', { 'data-label': t('users.facility'), text: e.facility }), h('td', { 'data-label': t('audit.ip'), text: e.ip })));
      }
      before = r.next_before;
      more.hidden = !before;
    } catch (err) { showError(err, form); }
  }
  form.addEventListener('submit', (e) => { e.preventDefault(); load(true); });
  more.addEventListener('click', () => load(false));
  await load(true);
}
