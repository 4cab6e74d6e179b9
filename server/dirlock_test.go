package server

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ftkv/timing"
)

// TestHelperHoldsDataDirLock is not a test: TestDataDirLockedByAnotherProcess
// runs the test binary with FTKV_TEST_LOCK_DIR set, and this takes that
// directory's lock, says so, and holds it until it is killed.
func TestHelperHoldsDataDirLock(t *testing.T) {
	dir := os.Getenv("FTKV_TEST_LOCK_DIR")
	if dir == "" {
		t.Skip("a helper process of TestDataDirLockedByAnotherProcess")
	}
	if _, err := lockDataDir(dir, 0); err != nil {
		fmt.Println("lock failed:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	time.Sleep(time.Minute)
	os.Exit(0)
}

// TestDataDirLockedByAnotherProcess: a server does not open a data
// directory that another process holds (an incarnation the cluster no
// longer counts, a second cluster started in the same directory): it
// waits KillWait for that process to exit, then refuses with the
// holder's pid. Once the holder is killed (kill -9), the directory opens.
// (An attack saw a deposed coordinator's late respawn recover the live
// server's log, trimming and deleting the segments it was writing.)
func TestDataDirLockedByAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldsDataDirLock$")
	cmd.Env = append(os.Environ(), "FTKV_TEST_LOCK_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if line, _ := bufio.NewReader(out).ReadString('\n'); line != "locked\n" {
		t.Fatalf("the helper process said %q", line)
	}
	cfg := Config{ID: 0, CoordAddr: "127.0.0.1:1", Secret: testSecret, DataDir: dir, Logger: zerolog.Nop(),
		Timing: timing.New(100 * time.Millisecond)}
	start := time.Now()
	_, err = New(cfg)
	want := fmt.Sprintf("in use by another server process (pid %d)", cmd.Process.Pid)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("opening a directory another process holds: %v, want an error saying %q", err, want)
	}
	if waited := time.Since(start); waited < cfg.Timing.KillWait/2 {
		t.Fatalf("refused after %s, before waiting for the holder to exit", waited)
	}
	if _, err := os.Stat(dir + "/" + identityFile); err == nil {
		t.Fatal("the refused server claimed the directory")
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("after the holder was killed: %v", err)
	}
	_ = s.dur.log.Close()
	s.unlockDataDir()
}
