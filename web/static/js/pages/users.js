// The admin's users: list by facility/role, create, disable.
import { t } from '../i18n.js';
import { h, clear, field, select, showError, toast } from '../dom.js';
import { get, post } from '../api.js';

const ROLES = ['village_doctor', 'doctor', 'billing_clerk', 'admin'];

export default async function (root, ctx) {
  const role = select('role', [['', t('users.all_roles')], ...ROLES.map((r) => [r, t('role.' + r)])], ctx.query.get('role') || '');
  role.id = 'users-role';
  const list = h('div', { class: 'table-wrap' });
  root.append(h('h1', { text: t('nav.users') }), h('div', { class: 'toolbar' }, role), list, createForm());
  role.addEventListener('change', load);

  async function load() {
    const qs = new URLSearchParams({ limit: '1000' });
    if (role.value) qs.set('role', role.value);
    const { users } = await get('/api/v1/users?' + qs);
    clear(list).append(h('table', { id: 'users-table', class: 'stack' },
      h('thead', {}, h('tr', {}, ['users.username', 'users.name', 'users.role', 'users.facility', ''].map((k) => h('th', { text: k ? t(k) : '' })))),
      h('tbody', {}, users.map((u) => h('tr', { 'data-user': u.username, class: u.disabled ? 'muted' : null },
        h('td', { text: u.username }), h('td', { 'data-label': t('users.name'), text: u.display_name }), h('td', { 'data-label': t('users.role'), text: t('role.' + u.role) }),
        h('td', { 'data-label': t('users.facility'), text: `${u.facility} (${t('tier.' + u.tier)})` }),
        h('td', {}, u.disabled ? t('users.disabled') : u.username === ctx.me.username || !ROLES.includes(u.role) ? '' :
          h('button', { type: 'button', class: 'danger', text: t('users.disable'), onclick: async () => {
            if (!confirm(t('users.confirm_disable', { user: u.username }))) return;
            try { await post(`/api/v1/users/${encodeURIComponent(u.username)}/disable`, {}); toast(t('app.done')); load(); } catch (e) { showError(e); }
          } })))))));
  }

  function createForm() {
    const form = h('form', { class: 'card', id: 'user-form' });
    const inputs = {
      username: h('input', { name: 'username', required: true, autocapitalize: 'none', autocomplete: 'off' }),
      display_name: h('input', { name: 'display_name' }),
      role: select('role', ROLES.map((r) => [r, t('role.' + r)]), 'village_doctor'),
      facility: h('input', { name: 'facility', required: true, placeholder: 'V420626-001' }),
      password: h('input', { name: 'password', type: 'password', required: true, autocomplete: 'new-password', minlength: 10 }),
    };
    form.append(h('h2', { text: t('users.create') }),
      h('div', { class: 'grid two' },
        field(t('users.username'), inputs.username), field(t('users.name'), inputs.display_name),
        field(t('users.role'), inputs.role), field(t('users.facility'), inputs.facility),
        field(t('login.password'), inputs.password, t('users.pw_hint'))),
      h('button', { type: 'submit', class: 'primary', text: t('users.create') }));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const body = Object.fromEntries(Object.entries(inputs).map(([k, el]) => [k, el.value.trim()]));
      body.password = inputs.password.value;
      try { await post('/api/v1/users', body); toast(t('users.created')); form.reset(); load(); } catch (err) { showError(err, form); }
    });
    return form;
  }
  await load();
}
