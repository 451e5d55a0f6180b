//go:build soak

package main

import (
	"testing"
	"time"
)

// TestSoakCrashSafety is the long crash run (`make soak`): 25 SIGKILLs of
// the real server, each after 1 to 6 s of concurrent settlements and
// referral changes. Its figures go to var/soak-figures.txt for the README.
func TestSoakCrashSafety(t *testing.T) {
	start := time.Now()
	fig := runCrashTest(t, crashConfig{Kills: 25, MinUp: time.Second, MaxUp: 6 * time.Second, BillWorkers: 8, RefWorkers: 4})
	took := time.Since(start)
	t.Logf("crash safety (soak): %s in %s", fig, took.Round(time.Second))
	if !t.Failed() {
		writeSoakFigures(t, "TestSoakCrashSafety", fig, took)
	}
}
