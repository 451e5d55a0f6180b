package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qinba/qinba/facility"
	"github.com/qinba/qinba/internal/db"
	"github.com/qinba/qinba/internal/dbtest"
)

// cliDB is a fresh migrated database holding the demo county's facilities;
// it returns the owner's URL, as the CLI is run by an operator.
func cliDB(t *testing.T) string {
	t.Helper()
	url := dbtest.NewURL(t)
	ctx := context.Background()
	pool, err := db.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := facility.Import(ctx, pool, bytes.NewReader(facility.DemoCSV)); err != nil {
		t.Fatal(err)
	}
	return url
}

func TestCLIRosterImport(t *testing.T) {
	t.Parallel()
	url := cliDB(t)
	dir := t.TempDir()
	roster := filepath.Join(dir, "roster.csv")
	var out, errOut bytes.Buffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }}
	ctx := context.Background()
	run := func(args ...string) error {
		out.Reset()
		errOut.Reset()
		return Run(ctx, env, args)
	}

	if err := run("gen", "roster", "--households", "300", "--persons", "900", "--seed", "3", "--out", roster); err != nil {
		t.Fatal(err)
	}
	if err := run("import", "roster", "--database-url", url, "--year", "2024", roster); err != nil {
		t.Fatalf("import: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "households     300 added       0 updated       0 unchanged       0 rejected") ||
		!strings.Contains(out.String(), "persons        900 added") {
		t.Errorf("summary:\n%s", out.String())
	}
	// The progress bars went to stderr, one per phase.
	for _, phase := range []string{"copy", "write"} {
		if !strings.Contains(errOut.String(), phase) {
			t.Errorf("no %s progress on stderr:\n%q", phase, errOut.String())
		}
	}
	// Flags may follow the file; a re-import changes nothing.
	if err := run("import", "roster", "--database-url", url, roster, "--year", "2024", "--no-progress"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "0 added       0 updated     900 unchanged") || errOut.Len() != 0 {
		t.Errorf("re-import:\n%s\n%s", out.String(), errOut.String())
	}
	if err := run("households", "stats", "--database-url", url); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "total                   300        900") {
		t.Errorf("stats:\n%s", out.String())
	}

	// A bad file: every bad line on stderr, nothing written, the rejects
	// next to the file.
	data, _ := os.ReadFile(roster)
	lines := strings.Split(string(data), "\n")
	lines[2] = strings.Replace(lines[2], ",true", ",maybe", 1)
	lines[2] = strings.Replace(lines[2], ",false", ",maybe", 1)
	lines = append(lines[:len(lines)-1], "X1,123,nobody,head,V420626-001,dibao,true", "")
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte(strings.Join(lines, "\n")), 0o644)
	err := run("import", "roster", "--database-url", url, "--no-progress", bad)
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 1 {
		t.Fatalf("bad file: %v", err)
	}
	for _, frag := range []string{"line 3: insured: must be true or false", "line 902: national_id: must be 18 characters", "REJECTED, nothing written", bad + ".rejects.csv"} {
		if !strings.Contains(out.String()+errOut.String(), frag) {
			t.Errorf("output lacks %q:\n%s\n%s", frag, out.String(), errOut.String())
		}
	}
	rejects, err := os.ReadFile(bad + ".rejects.csv")
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(bytes.NewReader(rejects)).ReadAll()
	if err != nil || len(recs) < 3 || recs[0][7] != "line" || recs[0][9] != "reason" {
		t.Fatalf("rejects file: %v %q", err, recs)
	}
	// --skip-invalid: the rest is written (here: unchanged), the bad
	// households go to --rejects.
	other := filepath.Join(dir, "out", "rej.csv")
	os.MkdirAll(filepath.Dir(other), 0o755)
	if err := run("import", "roster", "--database-url", url, "--no-progress", "--skip-invalid", "--rejects", other, "--year", "2024", bad); err != nil {
		t.Fatalf("skip-invalid: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "rejected") || !strings.Contains(errOut.String(), "written to "+other) {
		t.Errorf("skip-invalid output:\n%s\n%s", out.String(), errOut.String())
	}
	if st, err := os.Stat(other); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("rejects file %v %v", st, err)
	}

	for _, args := range [][]string{
		{"import", "roster", "--database-url", url},
		{"import", "roster", "--database-url", url, roster, roster},
		{"gen", "roster", "--households", "2", "--persons", "100"},
	} {
		if err := run(args...); !errors.As(err, &ee) || ee.Code != 2 {
			t.Errorf("%v: %v", args, err)
		}
	}
	if err := run("import", "roster", "--database-url", url, filepath.Join(dir, "missing.csv")); err == nil {
		t.Error("missing file accepted")
	}
	os.WriteFile(bad, []byte("wrong,header\n"), 0o644)
	if err := run("import", "roster", "--database-url", url, "--no-progress", bad); !errors.As(err, &ee) || ee.Code != 1 || !strings.Contains(errOut.String(), "line 1: the header must be") {
		t.Errorf("wrong header: %v %s", err, errOut.String())
	}
	if err := run("import", "roster", "-h"); err != nil || !strings.Contains(errOut.String(), "--skip-invalid") || !strings.Contains(errOut.String(), "FILE.rejects.csv") {
		t.Errorf("help: %v\n%s", err, errOut.String())
	}
}

func TestCLIGenRosterFullCounty(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	env := &Env{Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
	if err := Run(context.Background(), env, []string{"gen", "roster"}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != 82590+1 {
		t.Errorf("%d lines, want 82591", n)
	}
	if len(demoVillages()) != 280 {
		t.Errorf("%d demo villages", len(demoVillages()))
	}
}
