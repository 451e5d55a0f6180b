package settlement

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// sharedDir returns the directory of the shared settlement files:
// $QINBA_SHARED/settlement, or ../../shared/settlement from the package.
func sharedDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("QINBA_SHARED"); d != "" {
		return filepath.Join(d, "settlement")
	}
	return filepath.Join("..", "..", "shared", "settlement")
}

// readShared reads a shared file and fails (never skips) when it is missing.
func readShared(t testing.TB, name string) []byte {
	t.Helper()
	path := filepath.Join(sharedDir(t), name)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("shared file missing (set QINBA_SHARED to the shared directory): %v", err)
	}
	return data
}

type vectorFile struct {
	Policy string          `json:"policy"`
	Input  json.RawMessage `json:"input"`
	Output json.RawMessage `json:"output"`
}

func TestVectorsPublic(t *testing.T) {
	var vf vectorFile
	if err := json.Unmarshal(readShared(t, "vectors-public.json"), &vf); err != nil {
		t.Fatalf("vectors-public.json: %v", err)
	}
	p, err := LoadPolicyFile(filepath.Join(sharedDir(t), vf.Policy))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := RunCases(p, bytes.NewReader(vf.Input), &out); err != nil {
		t.Fatalf("RunCases: %v", err)
	}
	got := casesByID(t, "got", out.Bytes())
	want := casesByID(t, "want", vf.Output)
	if len(got.order) != len(want.order) {
		t.Errorf("got %d cases, want %d", len(got.order), len(want.order))
	}
	for i, id := range want.order {
		if i < len(got.order) && got.order[i] != id {
			t.Errorf("case %d: got id %q, want %q (order must follow the input)", i, got.order[i], id)
		}
		w := want.cases[id]
		g, ok := got.cases[id]
		if !ok {
			t.Errorf("case %s: missing from output", id)
			continue
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("case %s:\n%s", id, strings.Join(jsonDiff("", g, w), "\n"))
		}
	}
}

type parsedCases struct {
	order []string
	cases map[string]any
}

func casesByID(t *testing.T, which string, data []byte) parsedCases {
	t.Helper()
	var doc struct {
		Cases []map[string]any `json:"cases"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s output does not parse: %v\n%s", which, err, data)
	}
	pc := parsedCases{cases: map[string]any{}}
	for _, c := range doc.Cases {
		id := fmt.Sprint(c["id"])
		pc.order = append(pc.order, id)
		pc.cases[id] = c
	}
	return pc
}

// jsonDiff lists the differences between two parsed JSON values.
func jsonDiff(path string, got, want any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("  %s: got %v, want %v", path, js(got), js(want))}
		}
		keys := map[string]bool{}
		for k := range w {
			keys[k] = true
		}
		for k := range g {
			keys[k] = true
		}
		var ks []string
		for k := range keys {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		var out []string
		for _, k := range ks {
			gv, gok := g[k]
			wv, wok := w[k]
			switch {
			case !gok:
				out = append(out, fmt.Sprintf("  %s.%s: missing, want %v", path, k, js(wv)))
			case !wok:
				out = append(out, fmt.Sprintf("  %s.%s: got %v, want no such key", path, k, js(gv)))
			default:
				out = append(out, jsonDiff(path+"."+k, gv, wv)...)
			}
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("  %s: got %v, want %v", path, js(got), js(want))}
		}
		var out []string
		for i := range w {
			out = append(out, jsonDiff(fmt.Sprintf("%s[%d]", path, i), g[i], w[i])...)
		}
		return out
	}
	if !reflect.DeepEqual(got, want) {
		return []string{fmt.Sprintf("  %s: got %v, want %v", path, js(got), js(want))}
	}
	return nil
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestEmbeddedReferenceMatchesShared checks that the embedded copy of the
// reference policy is the shared file.
func TestEmbeddedReferenceMatchesShared(t *testing.T) {
	shared := readShared(t, "baokang-2019.json")
	if got := ReferencePolicy().Source(); !bytes.Equal(got, shared) {
		t.Fatal("policies/baokang-2019.json differs from the shared baokang-2019.json")
	}
}
