// The consult signalling client (protocol in consult/signal.go): one
// WebSocket, the server offers and we answer; our microphone and camera go
// on the offer's first audio and video m-lines; each other participant's
// tracks arrive as a stream whose id is their user id.

export function room(o) {
  // o: {url, token, iceServers, stream (local MediaStream), audioOnly,
  //     onRemote(uid, stream), onGone(uid), onParticipants(list),
  //     onVideo(msg), onState(s), onError(msg)}
  const pc = new RTCPeerConnection({ iceServers: o.iceServers || [] });
  const senders = {};
  for (const tr of o.stream ? o.stream.getTracks() : []) senders[tr.kind] = pc.addTrack(tr, o.stream);
  let ws = null, welcomed = false, leaving = false, tries = 0, timer = null;
  const send = (m) => { if (ws && ws.readyState === 1) ws.send(JSON.stringify(m)); };
  const state = (s) => o.onState && o.onState(s);

  pc.ontrack = (e) => {
    const s = e.streams[0];
    if (s && o.onRemote) o.onRemote(s.id, s);
  };
  pc.onicecandidate = (e) => { if (e.candidate) send({ type: 'candidate', candidate: e.candidate.toJSON() }); };
  pc.oniceconnectionstatechange = () => {
    const s = pc.iceConnectionState;
    state(s === 'connected' || s === 'completed' ? 'connected' : s);
    if (s === 'failed' || s === 'disconnected') send({ type: 'restart' });
  };

  async function onMessage(ev) {
    let m;
    try { m = JSON.parse(ev.data); } catch { return; }
    switch (m.type) {
      case 'welcome': welcomed = true; tries = 0; state('joined'); break;
      case 'offer':
        await pc.setRemoteDescription({ type: 'offer', sdp: m.sdp });
        await pc.setLocalDescription(await pc.createAnswer());
        send({ type: 'answer', sdp: pc.localDescription.sdp });
        break;
      case 'participants': {
        o.onParticipants && o.onParticipants(m.participants || []);
        break;
      }
      case 'video': o.onVideo && o.onVideo(m); break;
      case 'error': o.onError && o.onError(m); break;
    }
  }

  function connect(resume) {
    ws = new WebSocket(o.url, ['qinba-consult', o.token]);
    ws.onopen = () => send({ type: 'join', resume, audio_only: !!o.audioOnly });
    ws.onmessage = (ev) => { onMessage(ev).catch((e) => o.onError && o.onError({ code: 'client', message: e.message })); };
    ws.onclose = (ev) => {
      if (leaving) return;
      // A dropped socket resumes the same session (ICE restart) within
      // the server's grace; a refusal before the welcome is final.
      if (!welcomed && tries > 0) { state('ended'); o.onError && o.onError({ code: 'closed', message: ev.reason || 'closed' }); return; }
      tries++;
      state('reconnecting');
      timer = setTimeout(() => connect(welcomed), Math.min(1000 * tries, 5000));
    };
  }
  connect(false);

  return {
    pc,
    setAudioOnly(b) {
      o.audioOnly = b;
      if (senders.video) senders.video.replaceTrack(b ? null : o.stream.getVideoTracks()[0] || null);
      send({ type: 'settings', audio_only: b });
    },
    setMaxVideo(kbps) { send({ type: 'settings', max_video_kbps: kbps }); },
    leave() {
      leaving = true;
      clearTimeout(timer);
      send({ type: 'leave' });
      try { ws && ws.close(); } catch { /* closed */ }
      pc.close();
      state('ended');
    },
  };
}
