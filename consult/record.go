package consult

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/ivfwriter"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
)

// Recording errors.
var (
	// ErrRecordingDisabled is returned by StartRecording when SFUConfig.RecordDir is empty.
	ErrRecordingDisabled = errors.New("consult: recording is not configured")
	// ErrNoRoom is returned for a consult that has no live room.
	ErrNoRoom = errors.New("consult: no live room for that consult")
	// ErrNotRecording is returned by StopRecording when the room is not being recorded.
	ErrNotRecording = errors.New("consult: the consult is not being recorded")
)

// RecordingFile describes one recorded track: VP8 video in an IVF file, Opus
// audio in an Ogg file. A participant who leaves and rejoins while recording
// gets new files.
type RecordingFile struct {
	// ConsultID and UserID say whose track this is.
	ConsultID string `json:"consult_id"`
	UserID    string `json:"user_id"`
	// Kind is "audio" or "video".
	Kind string `json:"kind"`
	// MimeType is the codec, "video/VP8" or "audio/opus".
	MimeType string `json:"mime_type"`
	// Path is the file, under SFUConfig.RecordDir/<consult id>/.
	Path string `json:"path"`
	// StartedAt and EndedAt bound the recording of this track.
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at"`
	// Frames is the number of video frames or audio packets written.
	Frames int64 `json:"frames"`
	// Dropped is the number of RTP packets dropped because the disk fell behind.
	Dropped int64 `json:"dropped"`
	// Error is set when writing failed; the file may be truncated.
	Error string `json:"error,omitempty"`
}

// roomRecording is the recording of one room: every track published while it runs.
type roomRecording struct {
	dir     string
	tracks  []*trackRecorder
	counter int
}

// recordQueue is the number of packets buffered between forwarding and the disk.
const recordQueue = 1024

// trackRecorder writes one published track to a file on its own goroutine, so
// forwarding never waits for the disk. Packets are reordered and assembled into
// frames by a sample builder before the IVF or Ogg writer sees them.
type trackRecorder struct {
	mu     sync.Mutex
	closed bool
	ch     chan *rtp.Packet

	dropped atomic.Int64
	done    chan struct{}
	file    RecordingFile // owned by run until done is closed
}

// startTrackRecorder creates the file for t in dir and starts writing it.
func (s *SFU) startTrackRecorder(rec *roomRecording, t *publishedTrack) (*trackRecorder, error) {
	kind, ext := "audio", ".ogg"
	if t.kind == webrtc.RTPCodecTypeVideo {
		kind, ext = "video", ".ivf"
	}
	rec.counter++
	now := time.Now()
	name := fmt.Sprintf("%s-%s-%s-%d%s", now.UTC().Format("20060102T150405Z"), safeName(t.owner.userID), kind, rec.counter, ext)
	path := filepath.Join(rec.dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("consult: create recording: %w", err)
	}
	out := &bufferedFile{f: f, w: bufio.NewWriterSize(f, 64<<10)}

	var (
		sb    *samplebuilder.SampleBuilder
		write func(ts uint32, data []byte) (bool, error)
		fin   func() error
	)
	switch kind {
	case "video":
		w, err := ivfwriter.NewWith(out, ivfwriter.WithCodec(webrtc.MimeTypeVP8))
		if err != nil {
			_ = out.Close()
			return nil, fmt.Errorf("consult: ivf writer: %w", err)
		}
		sb = samplebuilder.New(128, &codecs.VP8Packet{}, 90000, samplebuilder.WithMaxTimeDelay(time.Second))
		// Each assembled frame goes to the IVF writer as one RTP packet carrying a
		// minimal VP8 descriptor (S=1), so the writer sees whole frames in order.
		// The file starts at the first keyframe (the writer would skip the rest).
		seenKey := false
		write = func(ts uint32, data []byte) (bool, error) {
			if seenKey = seenKey || data[0]&1 == 0; !seenKey {
				return false, nil
			}
			err := w.WriteRTP(&rtp.Packet{
				Header:  rtp.Header{Version: 2, Marker: true, Timestamp: ts},
				Payload: append([]byte{0x10}, data...),
			})
			return err == nil, err
		}
		fin = w.Close
	default:
		w, err := oggwriter.NewWriter(out, oggwriter.WithSampleRate(48000), oggwriter.WithChannelCount(2))
		if err != nil {
			_ = out.Close()
			return nil, fmt.Errorf("consult: ogg writer: %w", err)
		}
		track, err := w.NewTrack(uint32(t.ssrc))
		if err != nil {
			_ = w.Close()
			return nil, fmt.Errorf("consult: ogg track: %w", err)
		}
		sb = samplebuilder.New(32, &codecs.OpusPacket{}, 48000, samplebuilder.WithMaxTimeDelay(500*time.Millisecond))
		ssrc := uint32(t.ssrc)
		write = func(ts uint32, data []byte) (bool, error) {
			err := track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Timestamp: ts, SSRC: ssrc}, Payload: data})
			return err == nil, err
		}
		fin = w.Close // writes the end-of-stream page and closes the file
	}

	r := &trackRecorder{
		ch:   make(chan *rtp.Packet, recordQueue),
		done: make(chan struct{}),
		file: RecordingFile{
			ConsultID: t.owner.room.id, UserID: t.owner.userID, Kind: kind,
			MimeType: t.mime, Path: path, StartedAt: now,
		},
	}
	if !s.spawn(func() { r.run(sb, write, fin) }) {
		_ = fin()
		_ = os.Remove(path)
		return nil, errShuttingDown
	}
	return r, nil
}

// push queues a copy of p; it never blocks.
func (r *trackRecorder) push(p *rtp.Packet) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	select {
	case r.ch <- p.Clone():
	default:
		r.dropped.Add(1)
	}
}

func (r *trackRecorder) run(sb *samplebuilder.SampleBuilder, write func(uint32, []byte) (bool, error), fin func() error) {
	defer close(r.done)
	var werr error
	drain := func() {
		for s := sb.Pop(); s != nil; s = sb.Pop() {
			if werr != nil || len(s.Data) == 0 {
				continue
			}
			var ok bool
			if ok, werr = write(s.PacketTimestamp, s.Data); ok {
				r.file.Frames++
			}
		}
	}
	for p := range r.ch {
		sb.Push(p)
		drain()
	}
	sb.Flush()
	drain()
	if err := fin(); err != nil && werr == nil {
		werr = err
	}
	if werr != nil {
		r.file.Error = werr.Error()
	}
	r.file.EndedAt = time.Now()
	r.file.Dropped = r.dropped.Load()
}

// stop ends the recording, waits for the file to be complete and describes it.
// It is safe to call more than once.
func (r *trackRecorder) stop() RecordingFile {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.ch)
	}
	r.mu.Unlock()
	<-r.done
	return r.file
}

// bufferedFile batches the writers' small writes; Seek flushes first (the IVF
// writer seeks back to store the frame count on Close).
type bufferedFile struct {
	f *os.File
	w *bufio.Writer
}

func (b *bufferedFile) Write(p []byte) (int, error) { return b.w.Write(p) }

func (b *bufferedFile) Seek(offset int64, whence int) (int64, error) {
	if err := b.w.Flush(); err != nil {
		return 0, err
	}
	return b.f.Seek(offset, whence)
}

func (b *bufferedFile) Close() error {
	ferr := b.w.Flush()
	if err := b.f.Close(); ferr == nil {
		ferr = err
	}
	return ferr
}

// safeName keeps letters, digits, '-' and '_' so an id can be part of a file name.
func safeName(s string) string {
	out := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
	if out == "" {
		return "_"
	}
	if len(out) > 64 {
		out = out[:64]
	}
	return out
}

// StartRecording starts recording every track of the consult's room (and of
// participants who join later) into SFUConfig.RecordDir/<consult id>/. The caller
// is responsible for having recorded everyone's consent. Starting a recording
// that runs already is a no-op.
func (s *SFU) StartRecording(consultID string) error {
	if s.cfg.RecordDir == "" {
		return ErrRecordingDisabled
	}
	r := s.room(consultID)
	if r == nil {
		return ErrNoRoom
	}
	dir := filepath.Join(s.cfg.RecordDir, safeName(consultID))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("consult: recording directory: %w", err)
	}
	var keyframes []*publishedTrack
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrNoRoom
	}
	if r.rec != nil {
		r.mu.Unlock()
		return nil
	}
	r.rec = &roomRecording{dir: dir}
	var err error
	for _, p := range r.parts {
		for _, t := range p.pubs {
			if err = s.recordTrack(r.rec, t); err != nil {
				break
			}
			keyframes = append(keyframes, t)
		}
	}
	r.mu.Unlock()
	if err != nil {
		_, _ = s.StopRecording(consultID)
		return err
	}
	for _, t := range keyframes {
		t.requestKeyframe()
	}
	return nil
}

// recordTrack attaches a recorder to t; the caller holds the room lock.
func (s *SFU) recordTrack(rec *roomRecording, t *publishedTrack) error {
	tr, err := s.startTrackRecorder(rec, t)
	if err != nil {
		return err
	}
	rec.tracks = append(rec.tracks, tr)
	t.rec.Store(tr)
	return nil
}

// StopRecording stops the consult's recording and returns its files once they
// are complete on disk. SFUConfig.Hooks.OnRecording is called with the same list.
func (s *SFU) StopRecording(consultID string) ([]RecordingFile, error) {
	r := s.room(consultID)
	if r == nil {
		return nil, ErrNoRoom
	}
	r.mu.Lock()
	rec := r.detachRecordingLocked()
	r.mu.Unlock()
	if rec == nil {
		return nil, ErrNotRecording
	}
	return s.finishRecording(consultID, rec), nil
}

// detachRecordingLocked unhooks the room's recording from its tracks; the
// caller holds the room lock and then calls finishRecording without it.
func (r *room) detachRecordingLocked() *roomRecording {
	rec := r.rec
	if rec == nil {
		return nil
	}
	r.rec = nil
	for _, p := range r.parts {
		for _, t := range p.pubs {
			t.rec.Store(nil)
		}
	}
	return rec
}

// finishRecording closes every file of rec and reports them.
func (s *SFU) finishRecording(consultID string, rec *roomRecording) []RecordingFile {
	files := make([]RecordingFile, 0, len(rec.tracks))
	for _, tr := range rec.tracks {
		files = append(files, tr.stop())
	}
	s.hook(func(h RoomHooks) {
		if h.OnRecording != nil {
			h.OnRecording(consultID, files)
		}
	})
	return files
}
