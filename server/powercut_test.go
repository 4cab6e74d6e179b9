package server

import (
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ftkv/internal/wal"
	"ftkv/wire"
)

// powerCut is two servers with fsync always on memory file systems that
// lose every byte not synced when the power goes (StrictMemFS), under a
// fake coordinator: for tests of what an acknowledgement promises.
type powerCut struct {
	t            *testing.T
	fc           *fakeCoord
	ma, mb       *wal.StrictMemFS
	dirs         []string
	a, b         *testServer
	stopA, stopB func()
}

func startPowerCut(t *testing.T) *powerCut {
	t.Helper()
	p := &powerCut{t: t, fc: startFakeCoord(t), ma: wal.NewStrictMemFS(), mb: wal.NewStrictMemFS(),
		dirs: []string{abandonedDir(t), abandonedDir(t)}}
	var stopA, stopB func()
	p.a, stopA = startDurableServer(t, p.fc, 0, p.dirs[0], "always", false, p.fs(p.ma, 1))
	p.b, stopB = startDurableServer(t, p.fc, 1, p.dirs[1], "always", false, p.fs(p.mb, 1))
	p.stopA, p.stopB = stopA, stopB
	return p
}

// fs is the configuration of a server (incarnation inc) on m.
func (p *powerCut) fs(m *wal.StrictMemFS, inc uint64) func(*Config) {
	return func(c *Config) { c.walFS, c.Logger, c.Incarnation = m, zerolog.Nop(), inc }
}

// slowSyncs makes every sync of both disks from now on take d.
func (p *powerCut) slowSyncs(d time.Duration) {
	p.ma.SlowSyncs(d)
	p.mb.SlowSyncs(d)
}

// cut loses every byte either disk has not synced, stops both servers and
// starts them again (incarnation 2) on what their disks kept.
func (p *powerCut) cut() (a2, b2 *testServer) {
	p.t.Helper()
	dead := errors.New("power cut")
	p.ma.Crash()
	p.mb.Crash()
	p.ma.Fail(dead, dead)
	p.mb.Fail(dead, dead)
	p.stopA()
	p.stopB()
	p.ma.Fail(nil, nil)
	p.mb.Fail(nil, nil)
	p.slowSyncs(0)
	a2, _ = startDurableServer(p.t, p.fc, 0, p.dirs[0], "always", false, p.fs(p.ma, 2))
	b2, _ = startDurableServer(p.t, p.fc, 1, p.dirs[1], "always", false, p.fs(p.mb, 2))
	return a2, b2
}

// recovered reports whether key is in shard's table on a and on b.
func recovered(a, b *testServer, shard int, key string) (onA, onB bool) {
	_, onA = a.tableFor(shard).get([]byte(key))
	_, onB = b.tableFor(shard).get([]byte(key))
	return onA, onB
}

// waitApplied waits until s's table of shard holds key.
func waitApplied(t *testing.T, s *testServer, shard int, key string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, ok := s.tableFor(shard).get([]byte(key)); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server %d never applied %q", s.cfg.ID, key)
		}
	}
}

// mustPut writes key=v at epoch on cn (retried while UNAVAILABLE) and fails
// the test unless it is acknowledged.
func mustPut(t *testing.T, cn *conn, epoch uint64, key, v string) {
	t.Helper()
	if ans, err := cn.doRetry(&wire.Frame{Op: wire.OpPut, Epoch: epoch, Key: []byte(key), Value: []byte(v)}, 10*time.Second); err != nil || ans.Status != wire.StatusOK {
		t.Fatalf("put %q: %v %v %s", key, err, ans.Status, ans.Value)
	}
}
