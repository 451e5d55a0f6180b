package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/qinba/qinba/auth"
)

// cliEnv is an Env with stdin and captured output.
func cliEnv(stdin string) (*Env, *bytes.Buffer) {
	var out bytes.Buffer
	return &Env{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}, &out
}

func TestCLIUserAddAndDisable(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ctx := context.Background()
	const pw = "correct horse battery"

	env, out := cliEnv(pw + "\n")
	err := Run(ctx, env, []string{"user", "add", "--database-url", ts.DBURL, "--facility", facTownship, "--role", "doctor",
		"--username", "Li.Wei", "--display-name", "李伟", "--password-stdin"})
	if err != nil {
		t.Fatalf("user add: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "user li.wei created: doctor at T420626-01 (township)") {
		t.Errorf("user add printed %q", out.String())
	}
	tok := ts.login(t, "li.wei", pw)
	if st, b := ts.do(t, "GET", "/api/v1/auth/me", tok, nil); st != http.StatusOK || b["tier"] != "township" || b["region"] != testRegion {
		t.Fatalf("me: %d %v", st, b)
	}

	// Refusals: no --password-stdin, short password, wrong tier for the
	// role, unknown facility, a taken name, the password on the command line.
	for _, tc := range []struct {
		name, stdin string
		args        []string
		want        string
	}{
		{"no password-stdin", pw, []string{"--facility", facVillage, "--role", "village_doctor", "--username", "x.one"}, "--password-stdin"},
		{"short password", "short\n", []string{"--facility", facVillage, "--role", "village_doctor", "--username", "x.two", "--password-stdin"}, "at least 10"},
		{"empty stdin", "", []string{"--facility", facVillage, "--role", "village_doctor", "--username", "x.three", "--password-stdin"}, "no password"},
		{"village doctor in a township", pw, []string{"--facility", facTownship, "--role", "village_doctor", "--username", "x.four", "--password-stdin"}, "village facility"},
		{"doctor in a village", pw, []string{"--facility", facVillage, "--role", "doctor", "--username", "x.five", "--password-stdin"}, "township or county or city"},
		{"unknown facility", pw, []string{"--facility", "NOPE-1", "--role", "doctor", "--username", "x.six", "--password-stdin"}, "no facility"},
		{"unknown role", pw, []string{"--facility", facCounty, "--role", "superuser", "--username", "x.seven", "--password-stdin"}, "role"},
		{"bad username", pw, []string{"--facility", facCounty, "--role", "doctor", "--username", "a b", "--password-stdin"}, "username"},
		{"taken", pw, []string{"--facility", facTownship, "--role", "doctor", "--username", "li.wei", "--password-stdin"}, "taken"},
		{"password as argument", pw, []string{"--facility", facCounty, "--role", "doctor", "--username", "x.eight", "--password-stdin", "secret-on-cmdline"}, "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, out := cliEnv(tc.stdin)
			err := Run(ctx, env, append([]string{"user", "add", "--database-url", ts.DBURL}, tc.args...))
			if err == nil {
				t.Fatalf("accepted; output %q", out)
			}
			if !strings.Contains(err.Error()+out.String(), tc.want) {
				t.Errorf("error %q (output %q) does not mention %q", err, out, tc.want)
			}
		})
	}

	// Disable: the next login is refused like a wrong password, and the
	// access token already issued stops working at once.
	env, out = cliEnv("")
	if err := Run(ctx, env, []string{"user", "disable", "--database-url", ts.DBURL, "li.wei"}); err != nil {
		t.Fatalf("user disable: %v\n%s", err, out)
	}
	if st, b := ts.do(t, "GET", "/api/v1/auth/me", tok, nil); st != http.StatusUnauthorized {
		t.Errorf("access token of a disabled user: %d %v, want 401", st, b)
	}
	st, b := ts.do(t, "POST", "/api/v1/auth/login", token{}, map[string]string{"username": "li.wei", "password": pw})
	if st != http.StatusUnauthorized || !strings.Contains(jsonString(b), "invalid username or password") {
		t.Errorf("login of a disabled user: %d %v", st, b)
	}
	if st, _ := ts.do(t, "POST", "/api/v1/auth/refresh", token{}, map[string]string{"refresh_token": tok.Refresh}); st != http.StatusUnauthorized {
		t.Errorf("refresh of a disabled user: %d, want 401", st)
	}
	if err := Run(ctx, env, []string{"user", "disable", "--database-url", ts.DBURL, "nobody.here"}); err == nil {
		t.Error("disabling an unknown user succeeded")
	}
	var n int
	if err := ts.Pool.QueryRow(ctx, `SELECT count(*) FROM audit_log WHERE username = 'cli' AND record_id = 'li.wei' AND action IN ('create', 'disable')`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("%d audit entries for the CLI's create and disable, want 2", n)
	}
}

func TestSeedDemoUsersIdempotent(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t)
	ctx := context.Background()
	for i := range 2 {
		env, out := cliEnv("")
		if err := Run(ctx, env, []string{"seed", "--demo", "--database-url", ts.DBURL}); err != nil {
			t.Fatalf("seed %d: %v\n%s", i, err, out)
		}
		want := "6 demo users added"
		if i == 1 {
			want = "0 demo users added, 6 already there"
		}
		for _, frag := range []string{want, "DEMO LOGINS", "demo.village", "V420626-001", "demo.township", "T420626-01", "demo.county",
			"demo.billing", "demo.admin", "demo.auditor", demoPassword} {
			if !strings.Contains(out.String(), frag) {
				t.Errorf("seed %d output lacks %q:\n%s", i, frag, out)
			}
		}
	}
	for _, du := range demoUsers {
		u, err := auth.GetUserByName(ctx, ts.Pool, du.username)
		if err != nil {
			t.Fatalf("%s: %v", du.username, err)
		}
		if u.Role != du.role || u.Facility != du.facility {
			t.Errorf("%s is %s at %s", u.Username, u.Role, u.Facility)
		}
	}
	tok := ts.login(t, "demo.county", demoPassword)
	if st, b := ts.do(t, "GET", "/api/v1/auth/me", tok, nil); st != http.StatusOK || b["tier"] != "county" {
		t.Errorf("demo county doctor: %d %v", st, b)
	}
}
