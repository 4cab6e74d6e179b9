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
	"ftkv/wire"
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

// TestDeletedDataDirRefusesWrites: the data directory of a running server
// is deleted (rm -rf). Its log would go on taking writes into files no
// restart finds: instead the log fails, writes are refused (never OK),
// and the heartbeats report the failure (the coordinator moves the
// server's copies and respawns it). (An attack deleted a live server's
// directory; it went on acknowledging, and status showed nothing.)
func TestDeletedDataDirRefusesWrites(t *testing.T) {
	dir := abandonedDir(t)
	a, _ := startAlone(t, dir, nil)
	cn := dialConn(t, a.client, false)
	key := keysOf("gone", 0, 2, 1)[0]
	put := func() wire.Status {
		ans, err := cn.do(&wire.Frame{Op: wire.OpPut, Key: []byte(key), Value: []byte("v")}, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return ans.Status
	}
	// Before the deletion, UNAVAILABLE is retried as a client does (the
	// lone primary's lease lapsing on a loaded machine, or its promotion
	// mark not yet synced); after it, every answer counts.
	if ans, err := cn.write(&wire.Frame{Op: wire.OpPut, Key: []byte(key), Value: []byte("v")}, 10*time.Second); err != nil || ans.Status != wire.StatusOK {
		t.Fatalf("a put before the deletion: %v %v %s", err, ans.Status, ans.Value)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if a.dur.report().Failed { // (what each heartbeat carries)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the heartbeats never reported the deleted data directory")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := put(); st == wire.StatusOK {
		t.Fatal("a put was acknowledged after the data directory was deleted")
	}
}
