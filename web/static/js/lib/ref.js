// Shared pieces of the referral pages.
import { t } from '../i18n.js';
import { h, chip, fmtTime } from '../dom.js';

// refItem renders one referral summary as a list entry linking to it.
export function refItem(s) {
  return h('li', { 'data-id': s.id, class: 'ref' },
    h('div', { class: 'row' },
      h('a', { class: 'grow', href: '#/referrals/' + s.id }, h('b', { text: s.patient?.name || '#' + s.id }),
        ' ', h('small', { class: 'muted', text: s.patient?.national_id_masked || '' })),
      chip('urgency', s.urgency), chip('state', s.state),
      s.overdue ? h('span', { class: 'chip chip-overdue', text: t('ref.overdue') }) : null),
    h('div', { class: 'muted' },
      `${s.from_facility?.name || ''} → ${s.to_facility?.name || ''} · ${t('dir.' + s.direction)} · ${(s.diagnoses || []).join(', ')}`),
    h('small', { class: 'muted' }, `#${s.id} · ${t('ref.updated')} ${fmtTime(s.updated_at)}`,
      s.scheduled_for ? ` · ${t('ref.scheduled_for')} ${fmtTime(s.scheduled_for)}` : ''));
}

// liveChip shows the state of a live stream.
export function liveChip() {
  const el = h('span', { class: 'chip chip-retry', id: 'live', text: t('live.retry') });
  return {
    el,
    set(state) { el.className = 'chip chip-' + state; el.textContent = t('live.' + state); el.dataset.state = state; },
  };
}
