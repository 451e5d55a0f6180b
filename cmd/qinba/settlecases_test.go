package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
)

func sharedDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("QINBA_SHARED"); d != "" {
		return d
	}
	d, err := filepath.Abs("../../../shared")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// The real binary settles the public vectors to the fen.
func TestSettleCasesBinaryMatchesVectors(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join(sharedDir(t), "settlement", "vectors-public.json"))
	if err != nil {
		t.Fatalf("the shared vectors are needed: %v", err)
	}
	var vec struct {
		Policy string          `json:"policy"`
		Input  json.RawMessage `json:"input"`
		Output any             `json:"output"`
	}
	if err := json.Unmarshal(raw, &vec); err != nil {
		t.Fatal(err)
	}
	bin := qinbaBinary(t)
	cmd := exec.CommandContext(context.Background(), bin, "settle-cases", "--policy", filepath.Join(sharedDir(t), "settlement", vec.Policy))
	cmd.Stdin = bytes.NewReader(vec.Input)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("settle-cases: %v", err)
	}
	var got any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	if !reflect.DeepEqual(got, vec.Output) {
		t.Fatalf("settle-cases output differs from the vectors' expected output")
	}
	// A document that does not parse is a non-zero exit; a bad policy too.
	cmd = exec.Command(bin, "settle-cases")
	cmd.Stdin = bytes.NewReader([]byte(`{"cases": [`))
	if err := cmd.Run(); err == nil {
		t.Error("unparsable input exited 0")
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"id": "x"}`), 0o644)
	cmd = exec.Command(bin, "settle-cases", "--policy", bad)
	cmd.Stdin = bytes.NewReader(vec.Input)
	if err := cmd.Run(); err == nil {
		t.Error("invalid policy exited 0")
	}
}
