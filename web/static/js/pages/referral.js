// One referral: details, history, attachments and the actions open to
// this user; follows the stream so a change elsewhere shows at once.
import { t } from '../i18n.js';
import { h, put, clear, chip, fmtTime, field, showError, toast, progress } from '../dom.js';
import { get, post, stream, upload } from '../api.js';
import { liveChip } from '../lib/ref.js';

export default async function (root, ctx) {
  const id = ctx.params[0];
  const live = liveChip();
  const body = h('div', { id: 'ref-detail' });
  root.append(h('div', { class: 'row' }, h('h1', { class: 'grow', text: `${t('ref.title')} #${id}` }), live.el), body);
  let d;
  const load = async () => {
    d = await get('/api/v1/referrals/' + id);
    draw();
  };
  function draw() {
    clear(body);
    const me = ctx.me;
    const receiver = d.to_facility.code === me.facility && me.role === 'doctor';
    const sender = d.from_facility.code === me.facility && me.role !== 'admin';
    put(body,
      h('section', { class: 'card' },
        h('div', { class: 'row' }, h('h2', { class: 'grow' },
          h('a', { href: '#/patients/' + d.patient.person_id, text: d.patient.name }), ' ',
          h('small', { class: 'muted', text: d.patient.national_id_masked || '' })),
        chip('urgency', d.urgency), h('span', { id: 'ref-state', 'data-state': d.state }, chip('state', d.state))),
        h('dl', { class: 'kv' },
          h('dt', { text: t('ref.from') }), h('dd', { text: d.from_facility.name }),
          h('dt', { text: t('ref.to') }), h('dd', { text: d.to_facility.name }),
          h('dt', { text: t('ref.direction') }), h('dd', { text: t('dir.' + d.direction) }),
          h('dt', { text: t('ref.diagnoses') }), h('dd', { text: (d.diagnoses || []).join(', ') }),
          h('dt', { text: t('ref.created') }), h('dd', { text: fmtTime(d.created_at) }),
          h('dt', { text: t('ref.due') }), h('dd', { text: fmtTime(d.due_at) + (d.overdue ? ' · ' + t('ref.overdue') : '') }),
          d.scheduled_for ? [h('dt', { text: t('ref.scheduled_for') }), h('dd', { text: fmtTime(d.scheduled_for) })] : null,
          d.consult_id ? [h('dt', { text: t('ref.consult') }), h('dd', {}, h('a', { href: '#/consults/' + d.consult_id, text: '#' + d.consult_id }))] : null),
        h('h3', { text: t('ref.summary') }), h('p', { class: 'pre', text: d.summary || '' })),
      d.counter_referral ? counter(d.counter_referral) : null,
      actions(receiver, sender),
      attachments(sender),
      history());
  }
  function counter(c) {
    return h('section', { class: 'card', id: 'counter' }, h('h2', { text: t('ref.counter') }),
      h('dl', { class: 'kv' },
        h('dt', { text: t('ref.findings') }), h('dd', { text: c.findings }),
        h('dt', { text: t('ref.treatment') }), h('dd', { text: c.treatment }),
        h('dt', { text: t('ref.advice') }), h('dd', { text: c.advice }),
        h('dt', { text: t('ref.return_down') }), h('dd', { text: c.return_down ? t('app.yes') : t('app.no') })));
  }
  async function act(action, extra, form) {
    try {
      await post(`/api/v1/referrals/${id}/${action}`, { version: d.version, ...extra });
      toast(t('ref.done.' + action));
      await load();
    } catch (err) {
      if (err.code === 'conflict') { toast(t('ref.conflict'), true); await load(); return; }
      showError(err, form);
    }
  }
  function actions(receiver, sender) {
    const box = h('section', { class: 'card', id: 'ref-actions' }, h('h2', { text: t('ref.actions') }));
    const note = h('textarea', { name: 'note', id: 'act-note', rows: 2 });
    const s = d.state;
    let any = false;
    const form = h('form', { onsubmit: (e) => e.preventDefault() });
    if (receiver && s === 'sent') {
      any = true;
      const reason = h('textarea', { name: 'reason', id: 'decline-reason', rows: 2 });
      form.append(field(t('ref.note'), note),
        h('div', { class: 'actions' },
          h('button', { type: 'button', class: 'primary', id: 'act-accept', text: t('ref.act.accept'), onclick: () => act('accept', note.value ? { note: note.value } : {}, form) })),
        field(t('ref.reason'), reason),
        h('div', { class: 'actions' },
          h('button', { type: 'button', class: 'danger', id: 'act-decline', text: t('ref.act.decline'), onclick: () => act('decline', { reason: reason.value }, form) })));
    }
    if (receiver && s === 'accepted') {
      any = true;
      const when = h('input', { type: 'datetime-local', name: 'scheduled_for', id: 'schedule-at', required: true, value: tomorrow() });
      form.append(field(t('ref.scheduled_for'), when), field(t('ref.note'), note),
        h('div', { class: 'actions' }, h('button', { type: 'button', class: 'primary', id: 'act-schedule', text: t('ref.act.schedule'),
          onclick: () => act('schedule', { scheduled_for: new Date(when.value).toISOString(), ...(note.value ? { note: note.value } : {}) }, form) })));
    }
    if (receiver && s === 'scheduled') {
      any = true;
      form.append(h('div', { class: 'actions' }, h('button', { type: 'button', class: 'primary', id: 'act-arrive', text: t('ref.act.arrive'), onclick: () => act('arrive', {}, form) })));
    }
    if (receiver && s === 'arrived') {
      any = true;
      const f = h('textarea', { name: 'counter_referral.findings', id: 'cr-findings', rows: 3 });
      const tr = h('textarea', { name: 'counter_referral.treatment', id: 'cr-treatment', rows: 3 });
      const ad = h('textarea', { name: 'counter_referral.advice', id: 'cr-advice', rows: 3 });
      const down = h('input', { type: 'checkbox', id: 'cr-down', checked: true });
      form.append(h('h3', { text: t('ref.counter') }), field(t('ref.findings'), f), field(t('ref.treatment'), tr), field(t('ref.advice'), ad),
        h('label', { class: 'check' }, down, t('ref.return_down')),
        h('div', { class: 'actions' }, h('button', { type: 'button', class: 'primary', id: 'act-complete', text: t('ref.act.complete'),
          onclick: () => act('complete', { counter_referral: { findings: f.value, treatment: tr.value, advice: ad.value, return_down: down.checked } }, form) })));
    }
    if (sender && s === 'sent') {
      any = true;
      const reason = h('input', { name: 'reason', id: 'cancel-reason' });
      form.append(field(t('ref.cancel_reason'), reason),
        h('div', { class: 'actions' }, h('button', { type: 'button', class: 'danger', id: 'act-cancel', text: t('ref.act.cancel'), onclick: () => act('cancel', reason.value ? { reason: reason.value } : {}, form) })));
    }
    if (!any) return null;
    box.append(form);
    return box;
  }
  function attachments(sender) {
    const list = h('ul', { class: 'list' }, (d.attachments || []).map((a) => h('li', {},
      h('a', { href: `/api/v1/referrals/${id}/attachments/${a.id}`, download: a.filename, text: a.filename }), ' ',
      h('small', { class: 'muted', text: `${Math.ceil(a.size / 1024)} KB · ${fmtTime(a.created_at)}` }))));
    const sec = h('section', { class: 'card' }, h('h2', { text: t('ref.attachments') }), list);
    if (!d.attachments?.length) list.append(h('li', { class: 'muted', text: t('app.none') }));
    if (sender && !['declined', 'cancelled', 'completed'].includes(d.state)) {
      const file = h('input', { type: 'file', name: 'file', accept: 'image/*,application/pdf' });
      const bar = progress();
      sec.append(h('form', {
        class: 'no-print', onsubmit: async (e) => {
          e.preventDefault();
          if (!file.files[0]) return;
          const fd = new FormData();
          fd.append('file', file.files[0]);
          try {
            await upload(`/api/v1/referrals/${id}/attachments`, fd, (v) => bar.set(v));
            bar.done();
            await load();
          } catch (err) { bar.done(); showError(err); }
        },
      }, h('label', { class: 'field' }, h('span', { text: t('ref.add_attachment') }), file),
      h('button', { type: 'submit', text: t('app.upload') }), bar.el));
    }
    return sec;
  }
  function history() {
    return h('section', { class: 'card' }, h('h2', { text: t('ref.history') }),
      h('ol', { class: 'list', id: 'ref-events' }, (d.events || []).map((e) => h('li', {},
        h('b', { text: t('event.' + e.action) }), ' ', e.to_state ? chip('state', e.to_state) : null, ' ',
        h('small', { class: 'muted', text: fmtTime(e.at) }),
        e.detail && (e.detail.note || e.detail.reason) ? h('div', { text: e.detail.note || e.detail.reason }) : null))));
  }
  await load();
  // No cursor: the stream starts live, and each (re)connection reloads the
  // referral so nothing between the load and the connection is missed.
  let opened = false;
  return stream('/api/v1/referrals/stream', ['referral'], (type, m) => {
    if (String(m.referral?.id) === String(id)) load().catch(() => {});
  }, (st) => {
    live.set(st);
    if (st === 'live' && opened) load().catch(() => {});
    if (st === 'live') opened = true;
  });
}

function tomorrow() {
  const d = new Date(Date.now() + 86400000);
  d.setMinutes(0, 0, 0);
  d.setHours(9);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}
