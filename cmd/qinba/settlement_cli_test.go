package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qinba/qinba/settlement"
)

// The settlement commands on a real database: import bills (all or
// nothing, then with --skip-invalid and a rejects file, then again:
// nothing changes), settle --pending, clearing (twice: refused), verify
// (then a tampered accumulator: a named mismatch and exit 1), gen bills.
func TestSettlementCLI(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ctx := context.Background()
	dir := t.TempDir()
	// run runs a command with --database-url right after its name.
	run := func(args ...string) (string, error) {
		n := 1
		if len(args) > 1 && commands[args[0]+" "+args[1]] != nil {
			n = 2
		}
		env, out := cliEnv("")
		full := append(append(append([]string{}, args[:n]...), "--database-url", ts.DBURL), args[n:]...)
		err := Run(ctx, env, full)
		return out.String(), err
	}
	exitCode := func(err error) int {
		var ee *ExitError
		if errors.As(err, &ee) {
			return ee.Code
		}
		return -1
	}
	_, ids := stlHousehold(t, ts, facVillage, "registered_poor", "head", "spouse")
	header := strings.Join(settlement.BillCSVHeader, ",") + "\n"
	good := header +
		fmt.Sprintf("C-1,%s,%d,,inpatient,2019-05-02,2019-05-08,,false,,CW001,床位费,A,6,30,180.00\n", facCounty, ids[0]) +
		fmt.Sprintf("C-1,%s,%d,,inpatient,2019-05-02,2019-05-08,,false,,SS501,手术,A,1,2400,\n", facCounty, ids[0]) +
		fmt.Sprintf("C-2,%s,%d,,outpatient,,,2019-05-09,,,XM101,血常规,A,1,20,\n", facTownship, ids[1])
	bad := good + fmt.Sprintf("C-3,%s,%d,,inpatient,2019-05-02,2019-05-01,,false,,CW001,床位费,A,1,30,\n", facCounty, ids[1])
	badFile := filepath.Join(dir, "bad.csv")
	os.WriteFile(badFile, []byte(bad), 0o600)

	out, err := run("import", "bills", "--no-progress", badFile)
	if exitCode(err) != 1 || !strings.Contains(out, "line 5: discharged_on: before the admission date") || !strings.Contains(out, "REJECTED") {
		t.Fatalf("all or nothing: %v\n%s", err, out)
	}
	if _, err := os.Stat(badFile + ".rejects.csv"); err != nil {
		t.Fatalf("rejects file: %v", err)
	}
	rejects := filepath.Join(dir, "rejects.csv")
	out, err = run("import", "bills", "--no-progress", "--skip-invalid", "--rejects", rejects, badFile)
	if err != nil || !strings.Contains(out, "2 added") || !strings.Contains(out, "1 rejected") {
		t.Fatalf("skip invalid: %v\n%s", err, out)
	}
	if data, err := os.ReadFile(rejects); err != nil || !strings.Contains(string(data), "C-3") || !strings.Contains(string(data), ",5,discharged_on,") {
		t.Fatalf("rejects: %s %v", data, err)
	}
	goodFile := filepath.Join(dir, "good.csv")
	os.WriteFile(goodFile, []byte(good), 0o600)
	if out, err := run("import", "bills", goodFile, "--no-progress"); err != nil || !strings.Contains(out, "2 unchanged") {
		t.Fatalf("re-import: %v\n%s", err, out)
	}

	out, err = run("settle", "--pending", "--no-progress")
	if err != nil || !strings.Contains(out, "settled 2 of 2 open bills") {
		t.Fatalf("settle --pending: %v\n%s", err, out)
	}
	csvOut := filepath.Join(dir, "clearing.csv")
	out, err = run("clearing", "--period", "2019-05", "--facility", facCounty, "--csv", csvOut)
	if err != nil || !strings.Contains(out, facCounty) || !strings.Contains(out, "1 settlements, 0 reversals") {
		t.Fatalf("clearing: %v\n%s", err, out)
	}
	if data, err := os.ReadFile(csvOut); err != nil || !strings.HasPrefix(string(data), strings.Join(settlement.ClearingCSVHeader, ",")) {
		t.Fatalf("clearing csv: %s %v", data, err)
	}
	if out, err := run("clearing", "--period", "2019-05", "--facility", facCounty); exitCode(err) != 1 || !strings.Contains(err.Error(), "already cleared") {
		t.Fatalf("clearing twice: %v\n%s", err, out)
	}
	if out, err := run("verify"); err != nil || !strings.HasPrefix(out, "ok: 2 journal entries") {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	if _, err := ts.Owner.Exec(ctx, `UPDATE accumulator SET outpatient_paid = outpatient_paid + 1`); err != nil {
		t.Fatal(err)
	}
	if out, err := run("verify"); exitCode(err) != 1 || !strings.Contains(out, "MISMATCH") || !strings.Contains(out, "outpatient_paid") {
		t.Fatalf("verify after tampering: %v\n%s", err, out)
	}

	gen := filepath.Join(dir, "gen.csv")
	if out, err := run("gen", "bills", "--count", "40", "--year", "2019", "--out", gen); err != nil {
		t.Fatalf("gen bills: %v\n%s", err, out)
	}
	if out, err := run("import", "bills", "--no-progress", gen); err != nil || !strings.Contains(out, "40 added") {
		t.Fatalf("import generated: %v\n%s", err, out)
	}
	env, help := cliEnv("")
	if err := Run(ctx, env, []string{"import", "bills", "-h"}); err != nil || !strings.Contains(help.String(), "external_no,facility_code,person_id") {
		t.Fatalf("help: %v\n%s", err, help)
	}
}
