package consult

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A recording holds, per participant, a valid IVF file of VP8 frames starting
// with a keyframe and an Ogg Opus file.
func TestRecording(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b := setup(t, setupOpts{sfu: func(c *SFUConfig) { c.RecordDir = dir }})
	alice := b.connect(t, "c1", "alice", clientOpts{})
	bob := b.connect(t, "c1", "bob", clientOpts{})
	bob.waitPackets("alice", "video", 5)
	alice.waitPackets("bob", "video", 5)

	if _, err := b.sfu.StopRecording("c1"); !errors.Is(err, ErrNotRecording) {
		t.Errorf("StopRecording before start = %v, want ErrNotRecording", err)
	}
	if err := b.sfu.StartRecording("c1"); err != nil {
		t.Fatal(err)
	}
	if err := b.sfu.StartRecording("c1"); err != nil {
		t.Fatalf("second StartRecording: %v", err)
	}
	// A second of media passes through the server while recording.
	bob.waitMore("alice", "video", 30)
	alice.waitMore("bob", "video", 30)
	bob.waitMore("alice", "audio", 50)

	files, err := b.sfu.StopRecording("c1")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 4 {
		t.Fatalf("got %d files, want 4: %+v", len(files), files)
	}
	seen := map[string]bool{}
	for _, f := range files {
		seen[f.UserID+"/"+f.Kind] = true
		if f.ConsultID != "c1" || f.EndedAt.Before(f.StartedAt) || f.Error != "" {
			t.Errorf("bad file record %+v", f)
		}
		if !strings.HasPrefix(f.Path, filepath.Join(dir, "c1")+string(os.PathSeparator)) {
			t.Errorf("%s is not under the consult's directory", f.Path)
		}
		data, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		switch f.Kind {
		case "video":
			frames := checkIVF(t, f.Path, data)
			if frames < 10 || int64(frames) != f.Frames {
				t.Errorf("%s: %d frames in the file, %d reported", f.Path, frames, f.Frames)
			}
		case "audio":
			checkOgg(t, f.Path, data)
			if f.Frames < 25 {
				t.Errorf("%s: only %d audio packets", f.Path, f.Frames)
			}
		}
	}
	for _, k := range []string{"alice/audio", "alice/video", "bob/audio", "bob/video"} {
		if !seen[k] {
			t.Errorf("no recording of %s", k)
		}
	}
	b.hooks.waitEvent(t, "recording c1 4")
}

// checkIVF parses an IVF file of VP8 frames and returns the number of frames.
func checkIVF(t *testing.T, path string, data []byte) int {
	t.Helper()
	if len(data) < 32 {
		t.Fatalf("%s: %d bytes, shorter than an IVF header", path, len(data))
	}
	h := data[:32]
	if string(h[0:4]) != "DKIF" || binary.LittleEndian.Uint16(h[4:]) != 0 || binary.LittleEndian.Uint16(h[6:]) != 32 || string(h[8:12]) != "VP80" {
		t.Fatalf("%s: bad IVF header % x", path, h)
	}
	if w, hh := binary.LittleEndian.Uint16(h[12:]), binary.LittleEndian.Uint16(h[14:]); w == 0 || hh == 0 {
		t.Errorf("%s: frame size %dx%d", path, w, hh)
	}
	declared := int(binary.LittleEndian.Uint32(h[24:]))
	frames := 0
	var lastPTS uint64
	for off := 32; off < len(data); frames++ {
		if off+12 > len(data) {
			t.Fatalf("%s: truncated frame header at %d", path, off)
		}
		size := int(binary.LittleEndian.Uint32(data[off:]))
		pts := binary.LittleEndian.Uint64(data[off+4:])
		frame := data[off+12:]
		if size == 0 || size > len(frame) {
			t.Fatalf("%s: frame %d claims %d bytes, %d left", path, frames, size, len(frame))
		}
		frame = frame[:size]
		if frames == 0 {
			// VP8 key frame: frame tag with P=0, then the start code 9d 01 2a.
			if frame[0]&1 != 0 || !bytes.Equal(frame[3:6], []byte{0x9d, 0x01, 0x2a}) {
				t.Errorf("%s: first frame is not a VP8 keyframe: % x", path, frame[:10])
			}
		} else if pts < lastPTS {
			t.Errorf("%s: frame %d pts %d goes back from %d", path, frames, pts, lastPTS)
		}
		lastPTS = pts
		off += 12 + size
	}
	if declared != frames {
		t.Errorf("%s: header declares %d frames, file has %d", path, declared, frames)
	}
	return frames
}

// checkOgg checks the capture patterns and the Opus identification header.
func checkOgg(t *testing.T, path string, data []byte) {
	t.Helper()
	if len(data) < 47 || string(data[:4]) != "OggS" || string(data[28:36]) != "OpusHead" {
		t.Fatalf("%s: not an Ogg Opus file", path)
	}
	if pages := bytes.Count(data, []byte("OggS")); pages < 10 {
		t.Errorf("%s: only %d Ogg pages", path, pages)
	}
}

// When the room empties, a running recording is finished and reported.
func TestRecordingEndsWithRoom(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{sfu: func(c *SFUConfig) { c.RecordDir = t.TempDir() }})
	alice := b.connect(t, "c1", "alice", clientOpts{})
	bob := b.connect(t, "c1", "bob", clientOpts{})
	bob.waitPackets("alice", "video", 5)
	if err := b.sfu.StartRecording("c1"); err != nil {
		t.Fatal(err)
	}
	bob.waitMore("alice", "video", 10)
	alice.leave()
	bob.leave()
	b.hooks.waitEvent(t, "empty c1")
	b.hooks.waitEvent(t, "recording c1 4")
	b.hooks.mu.Lock()
	files := b.hooks.recs[0]
	b.hooks.mu.Unlock()
	for _, f := range files {
		if f.Kind == "video" && f.UserID == "alice" {
			data, err := os.ReadFile(f.Path)
			if err != nil {
				t.Fatal(err)
			}
			checkIVF(t, f.Path, data)
		}
	}
}

func TestRecordingErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	if err := b.sfu.StartRecording("c1"); !errors.Is(err, ErrRecordingDisabled) {
		t.Errorf("without RecordDir: %v, want ErrRecordingDisabled", err)
	}
	b2 := setup(t, setupOpts{sfu: func(c *SFUConfig) { c.RecordDir = t.TempDir() }})
	if err := b2.sfu.StartRecording("nope"); !errors.Is(err, ErrNoRoom) {
		t.Errorf("no room: %v, want ErrNoRoom", err)
	}
	if _, err := b2.sfu.StopRecording("nope"); !errors.Is(err, ErrNoRoom) {
		t.Errorf("no room: %v, want ErrNoRoom", err)
	}
	if got := safeName("../../etc/passwd"); strings.ContainsAny(got, "./") {
		t.Errorf("safeName kept path characters: %q", got)
	}
}
