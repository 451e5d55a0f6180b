// Referral lists (inbox / outbox) that update live from the SSE stream.
import { t } from '../i18n.js';
import { h, clear, toast } from '../dom.js';
import { get, stream } from '../api.js';
import { refItem, liveChip } from '../lib/ref.js';

export default async function (root, ctx) {
  const me = ctx.me;
  const boxes = me.role === 'admin' ? [''] : me.role === 'village_doctor' ? ['outbox', 'inbox'] : ['inbox', 'outbox'];
  let box = ctx.query.get('box') ?? boxes[0];
  if (!boxes.includes(box)) box = boxes[0];
  const state = ctx.query.get('state') || '';
  const live = liveChip();
  const list = h('ul', { class: 'list', id: 'ref-list' });
  const tabs = h('div', { class: 'actions' }, me.role === 'admin' ? null : boxes.map((b) =>
    h('a', { href: `#/referrals?box=${b}`, class: b === box ? 'chip chip-live' : 'chip', id: 'box-' + b, text: t('ref.box.' + b) })));
  const filter = h('select', { id: 'ref-state', 'aria-label': t('ref.state'), onchange: () => ctx.go(`/referrals?box=${box}&state=${filter.value}`) },
    h('option', { value: '', text: t('ref.all_states') }),
    ['sent', 'accepted', 'scheduled', 'arrived', 'completed', 'declined', 'cancelled'].map((s) => h('option', { value: s, selected: s === state, text: t('state.' + s) })));
  root.append(
    h('div', { class: 'row' }, h('h1', { class: 'grow', text: t('nav.referrals') }), live.el),
    h('div', { class: 'toolbar' }, tabs, filter,
      me.role !== 'admin' ? h('a', { href: '#/referrals/new', class: 'chip', id: 'ref-new', text: '+ ' + t('ref.new') }) : null),
    list);

  const qs = new URLSearchParams({ limit: '100' });
  if (box) qs.set('box', box);
  if (state) qs.set('state', state);
  const r = await get('/api/v1/referrals?' + qs);
  const items = new Map();
  const mine = (s) => (!box || (box === 'inbox' ? s.to_facility.code === me.facility : s.from_facility.code === me.facility) || me.role === 'admin')
    && (!state || s.state === state);
  const draw = () => {
    clear(list);
    const xs = [...items.values()].sort((a, b) => (b.updated_at > a.updated_at ? 1 : b.updated_at < a.updated_at ? -1 : b.id - a.id));
    for (const s of xs) list.append(refItem(s));
    if (!xs.length) list.append(h('li', { class: 'muted', id: 'ref-empty', text: t('app.none') }));
  };
  for (const s of r.referrals) items.set(s.id, s);
  draw();
  const stop = stream(`/api/v1/referrals/stream?last_event_id=${r.stream_cursor}`, ['referral', 'notification'], (type, d) => {
    if (type === 'notification') { toast(notificationText(d)); return; }
    const s = d.referral;
    if (!s || !mine(s)) { items.delete(s?.id); draw(); return; }
    items.set(s.id, s);
    draw();
    list.querySelector(`[data-id="${s.id}"]`)?.classList.add('new');
  }, live.set);
  return stop;
}

export function notificationText(n) {
  const b = n.body || {};
  return t('notify.' + n.kind, { id: n.referral_id ?? '', patient: b.patient || b.patient_name || '', facility: b.facility || b.from || '' });
}
