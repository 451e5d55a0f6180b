// One consult: camera preview (or audio only), join the room with a room
// token, see the other side; end or cancel it; consent to recording; the
// specialist writes notes and advice; the requester opens a referral.
import { t } from '../i18n.js';
import { h, put, clear, chip, field, showError, toast } from '../dom.js';
import { get, post } from '../api.js';
import { room } from '../lib/rtc.js';

export default async function (root, ctx) {
  const id = ctx.params[0];
  const base = '/api/v1/consults/' + encodeURIComponent(id);
  let c = await get(base);
  const me = ctx.me;
  const requester = () => c.requester === me.username;
  const consultant = () => me.role === 'doctor' && c.to_facility?.code === me.facility;
  const canJoin = () => requester() || (consultant() && (c.to_user_id == null || c.to_user_id === (me.user_id ?? me.id)));
  const open = () => c.state === 'requested' || c.state === 'live';

  const stateChip = h('span', { id: 'con-state' });
  const status = h('span', { class: 'chip', id: 'con-status', text: t('con.preview') });
  const notice = h('p', { class: 'muted', id: 'con-notice' });
  const self = h('video', { class: 'self', id: 'con-self', muted: true, autoplay: true, playsInline: true });
  const remotes = h('div', { class: 'remotes', id: 'con-remotes' });
  const audioOnly = h('input', { type: 'checkbox', id: 'con-audio-only' });
  const btn = (idv, text, cls) => h('button', { type: 'button', id: idv, class: cls || '', text });
  const joinBtn = btn('con-join', t('con.join'), 'primary');
  const leaveBtn = btn('con-leave', t('con.leave'));
  const endBtn = btn('con-end', t('con.end'));
  const cancelBtn = btn('con-cancel', t('con.cancel'));
  const recBtn = btn('con-record', t('con.record'));
  const recNote = h('small', { class: 'muted', id: 'con-record-state' });
  const refer = h('a', { class: 'chip', id: 'con-refer', href: `#/referrals/new?person=${c.person_id}&consult=${id}`, text: t('con.refer') });
  const people = h('ul', { class: 'legend', id: 'con-people' });
  const recs = h('ul', { class: 'list', id: 'con-recordings' });
  put(root,
    h('div', { class: 'row' }, h('h1', { class: 'grow', text: `${t('con.title')} #${id}` }), stateChip),
    h('p', {}, h('b', { text: c.patient?.name || '' }), ' ', h('small', { class: 'muted', text: `${c.from_facility?.name || ''} → ${c.to_facility?.name || ''}` })),
    c.reason ? h('p', { class: 'pre', text: c.reason }) : null,
    h('section', { class: 'card' },
      h('div', { class: 'videos' }, h('div', {}, remotes, h('p', { class: 'vlabel', text: t('con.remote') })),
        h('div', {}, self, h('p', { class: 'vlabel', text: t('con.me') }))),
      h('div', { class: 'row' }, status, people), notice,
      h('label', { class: 'check' }, audioOnly, t('con.audio_only')),
      h('div', { class: 'actions' }, joinBtn, leaveBtn, recBtn, endBtn, cancelBtn, refer), recNote),
    notesBox(),
    recs);

  let stream = null, r = null;
  // sync shows what the consult's state and my part in it allow.
  function sync() {
    put(clear(stateChip), chip('constate', c.state));
    joinBtn.hidden = !!r || !canJoin() || !open();
    leaveBtn.hidden = !r;
    endBtn.hidden = !canJoin() || c.state !== 'live';
    cancelBtn.hidden = !requester() || c.state !== 'requested';
    recBtn.hidden = !r || c.state !== 'live';
    refer.hidden = c.from_facility?.code !== me.facility || !(c.state === 'live' || c.state === 'ended');
    if (!open() && !r) { status.textContent = t('constate.' + c.state); status.dataset.state = 'ended'; }
  }
  async function reload() {
    try { c = await get(base); } catch { return; /* keep what we have */ }
    if (r && !open()) stop(); // ended or cancelled meanwhile: no more reconnecting
    sync();
  }
  async function act(b, path, body) {
    b.disabled = true;
    try { return await post(base + path, body || {}); } catch (e) { showError(e); return null; } finally { b.disabled = false; }
  }

  async function preview() {
    if (stream) stream.getTracks().forEach((x) => x.stop());
    stream = null;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: audioOnly.checked ? false : { width: { ideal: 640 }, height: { ideal: 480 } } });
      self.srcObject = stream;
      self.hidden = audioOnly.checked;
    } catch (e) { notice.textContent = t('con.camera_error', { msg: e.message }); }
  }
  audioOnly.addEventListener('change', async () => {
    if (r) { r.setAudioOnly(audioOnly.checked); self.hidden = audioOnly.checked; } else await preview();
  });
  const setState = (s) => {
    status.textContent = t('con.' + ({ joined: 'waiting', connected: 'connected', ended: 'ended' }[s] || 'connecting'));
    status.dataset.state = s;
    if (s === 'joined' || s === 'connected' || s === 'reconnecting') reload();
  };
  joinBtn.addEventListener('click', async () => {
    joinBtn.disabled = true;
    try {
      if (!stream) await preview();
      const j = await post(base + '/token', {});
      const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
      r = room({
        url: `${proto}//${location.host}${j.signal_url}`,
        token: j.token, iceServers: j.ice_servers, stream, audioOnly: audioOnly.checked,
        onRemote(uid, s) {
          let v = remotes.querySelector(`[data-uid="${CSS.escape(uid)}"]`);
          if (!v) { v = h('video', { class: 'remote', autoplay: true, playsInline: true, dataset: { uid } }); remotes.append(v); }
          v.srcObject = s;
          v.play().catch(() => {});
        },
        onParticipants(list) {
          clear(people).append(...list.map((p) => h('li', { 'data-uid': p.user_id, text: `${p.user_id}${p.audio_only ? ' 🎙' : ''}${p.connected ? '' : ' …'}` })));
          for (const v of remotes.querySelectorAll('video')) if (!list.some((p) => p.user_id === v.dataset.uid)) v.remove();
        },
        onVideo(m) { notice.textContent = m.paused ? t('con.video_paused', { reason: t('con.reason.' + m.reason) }) : ''; },
        onState: setState,
        onError(m) { toast(m.message || m.code, true); },
      });
      setState('connecting');
      sync();
    } catch (e) { showError(e); }
    joinBtn.disabled = false;
  });
  leaveBtn.addEventListener('click', () => { stop(); sync(); });
  endBtn.addEventListener('click', async () => {
    const x = await act(endBtn, '/end');
    if (x) { c = x; stop(); sync(); toast(t('con.ended')); showRecordings(); }
  });
  cancelBtn.addEventListener('click', async () => {
    const x = await act(cancelBtn, '/cancel');
    if (x) { c = x; stop(); sync(); }
  });
  recBtn.addEventListener('click', async () => {
    const x = await act(recBtn, '/recording', { consent: true });
    if (!x) return;
    recNote.textContent = x.recording ? t('con.recording') : t('con.record_waiting', { who: (x.waiting || []).join(', ') });
    recNote.dataset.recording = String(!!x.recording);
  });
  function stop() {
    if (r) r.leave();
    r = null;
    clear(remotes);
    clear(people);
  }

  function notesBox() {
    if (!consultant()) {
      return c.advice || c.notes ? h('section', { class: 'card' }, h('h2', { text: t('con.advice') }),
        h('p', { class: 'pre', id: 'con-advice-text', text: c.advice }), c.notes ? h('p', { class: 'pre muted', text: c.notes }) : null) : null;
    }
    const notes = h('textarea', { name: 'notes', id: 'con-notes', rows: 3, value: c.notes || '' });
    const advice = h('textarea', { name: 'advice', id: 'con-advice', rows: 4, value: c.advice || '' });
    const form = h('form', {
      class: 'card', id: 'con-notes-form', onsubmit: async (e) => {
        e.preventDefault();
        try {
          c = await post(base + '/notes', { notes: notes.value, advice: advice.value }, 'PUT');
          sync();
          toast(t('app.done'));
        } catch (err) { showError(err, form); }
      },
    }, h('h2', { text: t('con.advice') }), field(t('con.notes'), notes), field(t('con.advice'), advice),
    h('button', { type: 'submit', class: 'primary', id: 'con-save-advice', text: t('con.save_advice') }));
    return form;
  }

  async function showRecordings() {
    clear(recs);
    if (!canJoin() || c.state !== 'ended') return;
    let list = [];
    try { ({ recordings: list } = await get(base + '/recordings')); } catch { return; }
    for (const x of list || []) {
      if (x.size) recs.append(h('li', {}, h('a', { href: `${base}/recordings/${x.id}`, download: '', text: `${t('con.recording_file')} ${x.kind} #${x.id}` })));
    }
  }

  sync();
  showRecordings();
  if (canJoin() && open()) await preview();
  return () => { stop(); if (stream) stream.getTracks().forEach((x) => x.stop()); };
}
