// The facility tree: city → county → township → village, collapsible.
import { t } from '../i18n.js';
import { h, clear, showError, toast, progress } from '../dom.js';
import { get, upload } from '../api.js';

const TIERS = ['city', 'county', 'township', 'village'];

export default async function (root, ctx) {
  const q = h('input', { type: 'search', id: 'fac-q', placeholder: t('fac.filter'), 'aria-label': t('fac.filter') });
  const tree = h('div', { class: 'tree', id: 'fac-tree' });
  const counts = h('p', { class: 'muted', id: 'fac-counts' });
  root.append(h('h1', { text: t('nav.facilities') }), h('div', { class: 'toolbar' }, q), counts, tree);
  if (ctx.me.role === 'admin') root.append(importForm(() => load()));

  let all = [];
  async function load() {
    all = (await get('/api/v1/facilities?limit=1000')).facilities;
    const n = {};
    for (const f of all) n[f.tier] = (n[f.tier] || 0) + 1;
    counts.textContent = TIERS.map((x) => `${t('tier.' + x)} ${n[x] || 0}`).join(' · ');
    draw();
  }
  function draw() {
    const needle = q.value.trim().toLowerCase();
    const kids = new Map();
    for (const f of all) {
      const p = f.parent_code || '';
      if (!kids.has(p)) kids.set(p, []);
      kids.get(p).push(f);
    }
    const match = (f) => !needle || f.name.toLowerCase().includes(needle) || f.code.toLowerCase().includes(needle);
    // keep a node when it or a descendant matches
    const keep = new Map();
    const visit = (f) => {
      let k = match(f);
      for (const c of kids.get(f.code) || []) k = visit(c) || k;
      keep.set(f.code, k);
      return k;
    };
    const roots = kids.get('') || [];
    roots.forEach(visit);
    const node = (f) => {
      if (!keep.get(f.code)) return null;
      const cs = (kids.get(f.code) || []).filter((c) => keep.get(c.code));
      const label = [h('span', { class: 'tier tier-' + f.tier, text: t('tier.' + f.tier) }), ' ',
        h('b', { text: f.name }), ' ', h('small', { class: 'muted', text: f.code })];
      if (!cs.length) return h('div', { class: 'leaf', 'data-code': f.code }, label);
      return h('details', { 'data-code': f.code, open: needle ? true : f.tier === 'city' || f.tier === 'county' },
        h('summary', {}, label, h('small', { class: 'muted', text: ` (${cs.length})` })),
        h('div', { class: 'kids' }, cs.map(node)));
    };
    clear(tree).append(...roots.map(node).filter(Boolean));
    if (!tree.firstChild) tree.append(h('p', { class: 'muted', text: t('app.none') }));
  }
  let timer;
  q.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(draw, 150); });
  await load();
}

function importForm(reload) {
  const file = h('input', { type: 'file', name: 'file', accept: '.csv,text/csv', required: true });
  const bar = progress();
  const form = h('form', {
    class: 'card', id: 'fac-import',
    onsubmit: async (e) => {
      e.preventDefault();
      if (!file.files[0]) return;
      const fd = new FormData();
      fd.append('file', file.files[0]);
      try {
        const r = await upload('/api/v1/facilities/import', fd, (v) => bar.set(v, t('app.uploading')));
        bar.set(1, t('app.done'));
        toast(t('fac.imported', r.result || {}));
        reload();
      } catch (err) {
        bar.done();
        showError(err, form);
        const rows = err.details && err.details.rows;
        if (rows) form.append(h('ul', { class: 'errors' }, rows.slice(0, 50).map((r) => h('li', { text: typeof r === 'string' ? r : JSON.stringify(r) }))));
      }
    },
  }, h('h2', { text: t('fac.import') }), h('label', { class: 'field' }, h('span', { text: t('fac.csv') }), file),
  h('button', { type: 'submit', class: 'primary', text: t('app.upload') }), bar.el);
  return form;
}
