// The app shell: header, role navigation, language switch and a hash
// router that loads each page's module on first use.
import { t, lang, setLang, initLang } from './i18n.js';
import { h, clear, $, toast } from './dom.js';
import { api, logout } from './api.js';

export const ME_PATH = '/api/v1/auth/me';

// Pages: hash pattern → module (js/pages/NAME.js) and the roles that see it.
const ALL = ['village_doctor', 'doctor', 'billing_clerk', 'admin', 'auditor'];
const DOCS = ['village_doctor', 'doctor'];
const routes = [
  [/^\/login$/, 'login', null],
  [/^\/patients$/, 'patients', [...DOCS, 'billing_clerk']],
  [/^\/patients\/(\d+)$/, 'patient', [...DOCS, 'billing_clerk']],
  [/^\/referrals$/, 'referrals', [...DOCS, 'admin']],
  [/^\/referrals\/new$/, 'referral-new', DOCS],
  [/^\/referrals\/(\d+)$/, 'referral', [...DOCS, 'admin']],
  [/^\/consults$/, 'consults', DOCS],
  [/^\/consults\/(\d+)$/, 'consult', DOCS],
  [/^\/billing$/, 'billing', ['billing_clerk']],
  [/^\/billing\/(\d+)$/, 'bill', ['billing_clerk']],
  [/^\/clearing$/, 'clearing', ['billing_clerk', 'admin']],
  [/^\/statements$/, 'statement', ['billing_clerk', 'admin']],
  [/^\/facilities$/, 'facilities', ALL],
  [/^\/users$/, 'users', ['admin']],
  [/^\/stats$/, 'stats', ['admin']],
  [/^\/roster$/, 'roster', ['admin']],
  [/^\/audit$/, 'audit', ['auditor']],
];

// The navigation of each role, first entry = home.
const NAV = {
  village_doctor: ['patients', 'referrals', 'consults'],
  doctor: ['referrals', 'consults', 'patients'],
  billing_clerk: ['billing', 'clearing', 'statements', 'patients'],
  admin: ['stats', 'facilities', 'users', 'referrals', 'roster', 'clearing'],
  auditor: ['audit', 'facilities'],
};

export const session = { me: null };

export function go(path) { location.hash = '#' + path; }

function home() { return '/' + (NAV[session.me?.role] || ['facilities'])[0]; }

function renderBar() {
  const bar = $('#bar');
  clear(bar);
  bar.append(h('a', { class: 'brand', href: '#' + home(), text: t('app.name') }));
  const right = h('div', { class: 'bar-right' });
  right.append(h('button', {
    type: 'button', class: 'link', id: 'lang-switch', lang: lang() === 'en' ? 'zh-CN' : 'en',
    text: lang() === 'en' ? '中文' : 'English',
    onclick: async () => { await setLang(lang() === 'en' ? 'zh-CN' : 'en'); document.title = t('app.name'); renderBar(); route(); },
  }));
  if (session.me) {
    right.append(h('span', { class: 'who', id: 'who', text: `${session.me.username} · ${t('role.' + session.me.role)}` }));
    right.append(h('button', {
      type: 'button', class: 'link', id: 'logout', text: t('app.logout'),
      onclick: async () => { await logout(); session.me = null; go('/login'); renderBar(); },
    }));
  }
  bar.append(right);
  const nav = $('#nav');
  clear(nav);
  nav.hidden = !session.me;
  if (session.me) {
    const cur = location.hash.slice(1).split(/[/?]/)[1];
    for (const p of NAV[session.me.role] || []) {
      nav.append(h('a', { href: '#/' + p, class: p === cur ? 'on' : null, 'data-page': p, text: t('nav.' + p) }));
    }
  }
}

let cleanup = null, seq = 0;

async function route() {
  const my = ++seq;
  const full = location.hash.slice(1) || '';
  const [path, qs] = full.split('?');
  if (!session.me && path !== '/login') { go('/login'); return; }
  if (session.me && (path === '' || path === '/' || path === '/login')) { go(home()); return; }
  let found = null, params = [];
  for (const [re, mod, roles] of routes) {
    const m = path.match(re);
    if (m) { found = [mod, roles]; params = m.slice(1); break; }
  }
  if (typeof cleanup === 'function') { try { cleanup(); } catch { /* page gone */ } }
  cleanup = null;
  renderBar();
  const main = $('#main');
  clear(main);
  if (!found) { main.append(h('p', { class: 'card', text: t('app.notfound') })); return; }
  if (found[1] && !found[1].includes(session.me.role)) { main.append(h('p', { class: 'card', text: t('app.forbidden') })); return; }
  main.append(h('p', { class: 'muted', text: t('app.loading') }));
  try {
    const page = await import(`./pages/${found[0]}.js`);
    if (my !== seq) return;
    clear(main);
    const ctx = { me: session.me, params, query: new URLSearchParams(qs || ''), go, alive: () => my === seq };
    cleanup = await page.default(main, ctx);
  } catch (e) {
    if (my !== seq) return;
    clear(main);
    main.append(h('p', { class: 'card bad', text: e.message || String(e) }));
  }
}

// signedIn is called by the login page.
export function signedIn(me) {
  session.me = me;
  renderBar();
  go(home());
}

window.addEventListener('qinba:signedout', () => {
  if (!session.me) return;
  session.me = null;
  toast(t('app.expired'), true);
  go('/login');
});

window.addEventListener('hashchange', route);

(async function boot() {
  await initLang();
  document.title = t('app.name');
  try { session.me = await api(ME_PATH); } catch { session.me = null; }
  if (session.me && session.me.user) session.me = session.me.user;
  renderBar();
  route();
})();
