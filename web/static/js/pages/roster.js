// Import the household roster (long work: upload progress, then the report).
import { t } from '../i18n.js';
import { h, clear, showError, progress } from '../dom.js';
import { upload } from '../api.js';

export default function (root) {
  const file = h('input', { type: 'file', name: 'file', id: 'roster-file', accept: '.csv,text/csv', required: true });
  const year = h('input', { type: 'number', name: 'year', value: new Date().getFullYear(), min: 2000, max: 2100 });
  const skip = h('input', { type: 'checkbox', name: 'skip_invalid' });
  const bar = progress();
  const out = h('div', { id: 'roster-out' });
  const form = h('form', { class: 'card', id: 'roster-form' },
    h('p', { class: 'muted', text: t('roster.hint') }),
    h('label', { class: 'field' }, h('span', { text: 'CSV' }), file), h('label', { class: 'field' }, h('span', { text: t('stmt.year') }), year),
    h('label', { class: 'check' }, skip, t('roster.skip')), h('button', { type: 'submit', class: 'primary', text: t('app.upload') }), bar.el);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!file.files[0]) return;
    const fd = new FormData();
    fd.append('file', file.files[0]);
    clear(out);
    try {
      const r = await upload(`/api/v1/households/import?year=${year.value}${skip.checked ? '&skip_invalid=1' : ''}`, fd, (v) => bar.set(v, v < 1 ? t('app.uploading') : t('app.processing')));
      bar.set(1, t('app.done'));
      report(r.report);
    } catch (err) {
      bar.done();
      showError(err, form);
      if (err.details.report) report(err.details.report);
    }
  });
  function report(rep) {
    if (!rep) return;
    const c = (x) => (x ? `+${x.added} ~${x.updated} =${x.unchanged}` : '');
    out.append(h('section', { class: 'card', id: 'roster-report' },
      h('p', { text: `${t('roster.households')}: ${c(rep.households)} · ${t('roster.persons')}: ${c(rep.persons)}` }),
      (rep.errors || []).length ? h('ul', { class: 'errors' }, rep.errors.slice(0, 100).map((e) => h('li', { text: typeof e === 'string' ? e : `${e.line ?? ''} ${e.column ?? ''} ${e.reason ?? e.message ?? JSON.stringify(e)}` }))) : null));
  }
  root.append(h('h1', { text: t('nav.roster') }), form, out);
}
