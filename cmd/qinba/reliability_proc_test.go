package main

// Helpers for the reliability and security tests that drive the real
// binary (qinbaBinary) as a separate process: start `qinba serve`, wait for
// its address, kill it, run other subcommands.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for a process's stderr and a reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serverProc is one running `qinba serve` process.
type serverProc struct {
	cmd    *exec.Cmd
	Base   string // e.g. http://127.0.0.1:41234
	Stderr *syncBuffer
	waited chan error
}

// startServerProc starts the binary with args (serve and its flags; the
// caller gives --addr) and waits until it prints its address. env adds
// variables to the process environment.
func startServerProc(t testing.TB, bin string, env []string, args ...string) *serverProc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &serverProc{cmd: cmd, Stderr: &syncBuffer{}, waited: make(chan error, 1)}
	cmd.Stderr = p.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.waited <- cmd.Wait() }()
	t.Cleanup(func() { p.Kill() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if i := strings.Index(line, "serving on "); i >= 0 && !sent {
				found <- strings.TrimSuffix(strings.TrimSpace(line[i+len("serving on "):]), "/")
				sent = true
			}
		}
		if !sent {
			close(found)
		}
	}()
	select {
	case base, ok := <-found:
		if !ok {
			t.Fatalf("server exited before serving; stderr:\n%s", p.Stderr.String())
		}
		p.Base = base
	case <-time.After(60 * time.Second):
		t.Fatalf("server did not start in 60s; stderr:\n%s", p.Stderr.String())
	}
	return p
}

// Kill sends SIGKILL and waits for the process to be gone.
func (p *serverProc) Kill() {
	if p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.waited:
		p.waited <- nil // later Kills return at once
	case <-time.After(10 * time.Second):
	}
}

// runBinary runs a non-server subcommand and returns its combined output.
func runBinary(t testing.TB, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out), err
}

// apiClient talks JSON to a server whose base URL may change (restarts).
type apiClient struct {
	mu   sync.Mutex
	base string
	http *http.Client
}

func newAPIClient(base string) *apiClient {
	return &apiClient{base: base, http: &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
}

func (c *apiClient) setBase(b string) {
	c.mu.Lock()
	c.base = b
	c.mu.Unlock()
	c.http.CloseIdleConnections()
}

func (c *apiClient) Base() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.base
}

// call sends a JSON request; err is a transport error (no answer).
func (c *apiClient) call(ctx context.Context, method, path, access string, hdr map[string]string, body any) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		js, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		r = bytes.NewReader(js)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base()+path, r)
	if err != nil {
		return 0, nil, err
	}
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if access != "" {
		req.Header.Set("Authorization", "Bearer "+access)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("reading the answer: %w", err)
	}
	return resp.StatusCode, data, nil
}

// loginAs logs a demo user in and returns the access token.
func (c *apiClient) loginAs(t testing.TB, username, password string) string {
	t.Helper()
	st, body, err := c.call(context.Background(), "POST", "/api/v1/auth/login", "", nil, map[string]string{"username": username, "password": password})
	if err != nil || st != http.StatusOK {
		t.Fatalf("login %s: %d %s %v", username, st, body, err)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("login %s: %s", username, body)
	}
	return tr.AccessToken
}
