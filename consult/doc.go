// Package consult owns video consultations.
//
// Its media layer (media.go, sfu.go, signal.go, roomtoken.go, turn.go,
// record.go, weaklink.go) is a selective forwarding unit built on pion/webrtc:
//
//   - Media is the one webrtc.API (VP8 and Opus, NACK, RTCP reports, TWCC),
//     the only place pion objects are built.
//   - SFU owns one room per live consult. Each participant (up to six) sends its
//     audio and video once and receives everyone else's; keyframe requests are
//     forwarded so a newcomer gets a picture at once; a leaver's tracks are
//     removed for the others; a participant whose network changes resumes with
//     an ICE restart. RoomHooks tell the consult records when a room goes live
//     and when it ends.
//   - SignalHandler serves the WebSocket signalling protocol documented in
//     signal.go, authenticated by room tokens (RoomTokens).
//   - TURNServer relays media for participants behind restrictive networks,
//     with per-participant time-limited credentials.
//   - WeakLinkConfig is the rule that stops video to a participant whose
//     downlink cannot carry it before audio suffers.
//   - StartRecording and StopRecording write each track to IVF (VP8) or Ogg
//     (Opus) files.
package consult
