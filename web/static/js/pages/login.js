import { t } from '../i18n.js';
import { h, field, showError } from '../dom.js';
import { login } from '../api.js';
import { signedIn, ME_PATH } from '../app.js';
import { api } from '../api.js';

export default function (root) {
  const user = h('input', { name: 'username', id: 'username', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
  const pass = h('input', { name: 'password', id: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const btn = h('button', { type: 'submit', id: 'login-btn', class: 'primary', text: t('login.submit') });
  const form = h('form', {
    class: 'card narrow', id: 'login-form', method: 'post', action: '/web/session',
    onsubmit: async (e) => {
      e.preventDefault();
      btn.disabled = true;
      try {
        const r = await login(user.value.trim(), pass.value);
        let me = r && r.user;
        if (!me) me = await api(ME_PATH);
        signedIn(me.user || me);
      } catch (err) {
        showError(err, form);
        pass.select();
      } finally { btn.disabled = false; }
    },
  },
  h('h1', { text: t('login.title') }),
  field(t('login.username'), user),
  field(t('login.password'), pass),
  btn);
  root.append(form);
  user.focus();
}
