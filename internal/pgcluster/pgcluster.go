// Package pgcluster runs a private PostgreSQL 15 cluster for development and
// tests when no DATABASE_URL is given. It uses the system's initdb and pg_ctl,
// listens on 127.0.0.1 only, and installs PostgreSQL with apt when it is
// missing and the process runs as root.
package pgcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Cluster is a private PostgreSQL cluster living in one directory.
type Cluster struct {
	// Dir holds the data directory (Dir/data), the socket directory
	// (Dir/run) and the server log (Dir/postgres.log).
	Dir string
	// Port is the TCP port on 127.0.0.1. Zero picks a free one on first init.
	Port int
	// Fast turns off fsync and synchronous commit; for tests only.
	Fast bool

	bin     string
	runUser string // "" when running as a non-root user
}

// New describes a cluster in dir; nothing is started.
func New(dir string) *Cluster { return &Cluster{Dir: dir} }

// URL is the connection string of database db on the cluster, as the
// superuser postgres.
func (c *Cluster) URL(db string) string { return c.UserURL("postgres", db) }

// UserURL is the connection string of database db as user. Loopback
// connections are trusted, so no password is needed.
func (c *Cluster) UserURL(user, db string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", user, c.Port, db)
}

func (c *Cluster) dataDir() string { return filepath.Join(c.Dir, "data") }
func (c *Cluster) runDir() string  { return filepath.Join(c.Dir, "run") }
func (c *Cluster) logFile() string { return filepath.Join(c.Dir, "postgres.log") }
func (c *Cluster) portFile() string {
	return filepath.Join(c.Dir, "port")
}

// Start initialises the cluster if needed and starts it if it is not
// running. It is safe to call while another process holds the same cluster
// running: the running server is reused. Callers that share a directory
// across processes should serialise Start with a file lock (see Lock).
func (c *Cluster) Start(ctx context.Context) error {
	abs, err := filepath.Abs(c.Dir)
	if err != nil {
		return err
	}
	c.Dir = abs
	if err := c.findBinaries(ctx); err != nil {
		return err
	}
	if err := os.MkdirAll(c.runDir(), 0o755); err != nil {
		return err
	}
	if err := c.chown(c.Dir, c.runDir()); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(c.dataDir(), "PG_VERSION")); errors.Is(err, os.ErrNotExist) {
		if err := c.initdb(ctx); err != nil {
			return err
		}
	}
	if b, err := os.ReadFile(c.portFile()); err == nil {
		if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			c.Port = p
		}
	}
	if c.Port == 0 {
		p, err := freePort()
		if err != nil {
			return err
		}
		c.Port = p
		if err := os.WriteFile(c.portFile(), []byte(strconv.Itoa(p)), 0o644); err != nil {
			return err
		}
	}
	if c.Running(ctx) {
		return nil
	}
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories=%s -c max_connections=300 -c shared_buffers=128MB",
		c.Port, c.runDir())
	if c.Fast {
		opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	}
	out, err := c.pgctl(ctx, "start", "-w", "-t", "60", "-D", c.dataDir(), "-l", c.logFile(), "-o", opts)
	if err != nil {
		return fmt.Errorf("pg_ctl start: %v: %s\n%s", err, out, c.tailLog())
	}
	return nil
}

// Stop shuts the cluster down (fast mode) if it runs.
func (c *Cluster) Stop(ctx context.Context) error {
	if c.bin == "" {
		if err := c.findBinaries(ctx); err != nil {
			return err
		}
	}
	if !c.Running(ctx) {
		return nil
	}
	out, err := c.pgctl(ctx, "stop", "-w", "-m", "fast", "-D", c.dataDir())
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v: %s", err, out)
	}
	return nil
}

// Restart stops and starts the server, keeping the data. It is used by
// fault-injection tests.
func (c *Cluster) Restart(ctx context.Context) error {
	if err := c.Stop(ctx); err != nil {
		return err
	}
	return c.Start(ctx)
}

// BinDir is the directory holding the PostgreSQL server programs (pg_dump,
// pg_restore, pgbench live there too).
func (c *Cluster) BinDir() string { return c.bin }

// Running reports whether the cluster's server is up.
func (c *Cluster) Running(ctx context.Context) bool {
	if c.bin == "" {
		if err := c.findBinaries(ctx); err != nil {
			return false
		}
	}
	if _, err := os.Stat(filepath.Join(c.dataDir(), "PG_VERSION")); err != nil {
		return false
	}
	_, err := c.pgctl(ctx, "status", "-D", c.dataDir())
	return err == nil
}

// CreateDatabase creates database name on the running cluster if missing.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, "psql"), "-X", "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(c.Port),
		"-U", "postgres", "-d", "postgres", "-tAc", "SELECT 1 FROM pg_database WHERE datname = '"+name+"'")
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("psql: %w", err)
	}
	if strings.TrimSpace(string(out)) == "1" {
		return nil
	}
	cmd = exec.CommandContext(ctx, filepath.Join(c.bin, "createdb"), "-h", "127.0.0.1", "-p", strconv.Itoa(c.Port), "-U", "postgres", name)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("createdb %s: %v: %s", name, err, out)
	}
	return nil
}

func (c *Cluster) initdb(ctx context.Context) error {
	if err := os.MkdirAll(c.dataDir(), 0o700); err != nil {
		return err
	}
	if err := c.chown(c.dataDir()); err != nil {
		return err
	}
	cmd := c.command(ctx, filepath.Join(c.bin, "initdb"), "-D", c.dataDir(), "-U", "postgres",
		"--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %v: %s", err, out)
	}
	return nil
}

func (c *Cluster) pgctl(ctx context.Context, args ...string) ([]byte, error) {
	cmd := c.command(ctx, filepath.Join(c.bin, "pg_ctl"), args...)
	// pg_ctl start leaves the server running with our stdout inherited unless
	// we detach it; a buffer keeps the child from holding our pipes.
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err := cmd.Run()
	return buf.Bytes(), err
}

// command runs name as the cluster's owner: the postgres user when we are
// root (initdb refuses to run as root), ourselves otherwise.
func (c *Cluster) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if c.runUser != "" {
		return exec.CommandContext(ctx, "runuser", append([]string{"-u", c.runUser, "--", name}, args...)...)
	}
	return exec.CommandContext(ctx, name, args...)
}

func (c *Cluster) chown(paths ...string) error {
	if c.runUser == "" {
		return nil
	}
	u, err := user.Lookup(c.runUser)
	if err != nil {
		return fmt.Errorf("look up user %s: %w", c.runUser, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, p := range paths {
		if err := os.Chown(p, uid, gid); err != nil {
			return err
		}
	}
	// The postgres user must be able to reach the cluster directory.
	for d := c.Dir; d != "/" && d != "."; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return err
		}
		if st.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, st.Mode().Perm()|0o001); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *Cluster) tailLog() string {
	b, _ := os.ReadFile(c.logFile())
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// findBinaries locates PostgreSQL 15 (or any installed major version),
// installing it with apt when missing and running as root.
func (c *Cluster) findBinaries(ctx context.Context) error {
	if os.Geteuid() == 0 {
		c.runUser = "postgres"
	}
	if dir := LookupBinDir(); dir != "" {
		c.bin = dir
		return c.ensureUser()
	}
	if os.Geteuid() != 0 {
		return errors.New("PostgreSQL server programs (initdb, pg_ctl) not found: install them with " +
			"`sudo apt-get install -y postgresql` (Debian/Ubuntu), or set DATABASE_URL to an existing database")
	}
	for _, args := range [][]string{{"update"}, {"install", "-y", "--no-install-recommends", "postgresql"}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	if dir := LookupBinDir(); dir != "" {
		c.bin = dir
		return c.ensureUser()
	}
	return errors.New("postgresql installed by apt, but initdb was not found under /usr/lib/postgresql")
}

func (c *Cluster) ensureUser() error {
	if c.runUser == "" {
		return nil
	}
	if _, err := user.Lookup(c.runUser); err == nil {
		return nil
	}
	out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", c.runUser).CombinedOutput()
	if err != nil {
		return fmt.Errorf("useradd %s: %v: %s", c.runUser, err, out)
	}
	return nil
}

// LookupBinDir returns the directory of the installed PostgreSQL server
// programs, or "" when none is installed.
func LookupBinDir() string {
	for _, v := range []string{"15", "16", "17", "14", "13"} {
		d := filepath.Join("/usr/lib/postgresql", v, "bin")
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return filepath.Dir(r)
		}
	}
	return ""
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Lock takes an exclusive advisory lock on path (created if needed) and
// returns the function that releases it. It serialises cluster start-up
// between test binaries running in parallel.
func Lock(ctx context.Context, path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
