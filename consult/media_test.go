package consult

import "testing"

func TestIsVP8Keyframe(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		payload []byte
		want    bool
	}{
		{"empty", nil, false},
		{"key, plain descriptor", []byte{0x10, 0x10, 0x02, 0x00}, true},
		{"inter frame", []byte{0x10, 0x11, 0x02, 0x00}, false},
		{"not the start of a frame", []byte{0x00, 0x10, 0x02}, false},
		{"start of partition 1", []byte{0x11, 0x10}, false},
		{"key, 7-bit picture id", []byte{0x90, 0x80, 0x05, 0x10}, true},
		{"key, 15-bit picture id, TL0PICIDX, TID", []byte{0x90, 0xe0, 0x81, 0x02, 0x07, 0x40, 0x10}, true},
		{"inter, 15-bit picture id", []byte{0x90, 0x80, 0x81, 0x02, 0x11}, false},
		{"truncated extension", []byte{0x90, 0x80}, false},
	} {
		if got := isVP8Keyframe(tt.payload); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestNewMediaValidates(t *testing.T) {
	t.Parallel()
	if _, err := NewMedia(MediaConfig{UDPPortMin: 5000}); err == nil {
		t.Error("half a port range accepted")
	}
	if _, err := NewMedia(MediaConfig{UDPPortMin: 6000, UDPPortMax: 5000}); err == nil {
		t.Error("inverted port range accepted")
	}
	if _, err := NewMedia(MediaConfig{UDPPortMin: 50000, UDPPortMax: 50100, NAT1To1IPs: []string{"203.0.113.7"}}); err != nil {
		t.Errorf("production-like config refused: %v", err)
	}
}
