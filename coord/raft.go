package coord

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/rs/zerolog"
	"go.etcd.io/bbolt"

	"ftkv/coord/decide"
)

// clusterState is what the coordinators replicate through Raft: every
// decision is committed as a new clusterState before any server hears
// of it, and a coordinator that becomes leader takes the cluster over
// from it.
type clusterState struct {
	Secret string      `json:"secret"`
	View   []byte      `json:"view,omitempty"` // wire.AppendView; none before the first view and after a clean stop
	Nodes  []savedNode `json:"nodes"`
	Config string      `json:"config"`
	Spares []string    `json:"spares"` // spare hosts not yet taken
	// Stopped: the cluster was shut down in order (every server dumped
	// its tables and exited); the next leader starts it afresh.
	Stopped bool `json:"stopped,omitempty"`
	// Unstopped: with Stopped, the servers the stop did not stop (gone
	// before it reached them, or still starting): their logs were not
	// synced by it, so their copies count as after a kill (aloneLocked).
	Unstopped []int `json:"unstopped,omitempty"`
	// Current: per shard, which copies hold every acknowledged write
	// (decide.Current); none in a state of an older version (all count).
	Current decide.Current `json:"current,omitempty"`
	// Home: the local servers' working directory (Coordinator.home); ""
	// in a state of an older version.
	Home string `json:"home,omitempty"`
	// NoLogs: no run of the cluster has logged its writes so far (each
	// with data_dir none); false in a state of an older version.
	NoLogs bool `json:"no_logs,omitempty"`
}

type savedNode struct {
	ID   int    `json:"id"`
	Inc  uint64 `json:"incarnation"`
	PID  int    `json:"pid"`
	Host string `json:"host,omitempty"` // where it runs (a spare, say)
}

// stateStore makes a clusterState durable: once Save returned nil, every
// later leader starts from it (or from a later one).
type stateStore interface {
	Save(st clusterState) error
}

// memStore is a stateStore for tests of the decisions: it keeps the last
// state in memory.
type memStore struct {
	mu sync.Mutex
	st clusterState
	n  int
}

func (m *memStore) Save(st clusterState) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st, m.n = st, m.n+1
	return nil
}

func (m *memStore) last() (clusterState, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st, m.n
}

// fsm is the Raft state machine: the last committed clusterState. Every
// command is a whole state (a cluster map is small), so applying one is
// replacing the last.
type fsm struct {
	mu  sync.Mutex
	st  clusterState
	has bool
	// onApply runs after each committed state, outside the lock; old
	// says it was committed before this process started (replayed from
	// the directory at start), not decided now, or (for a stop) that the
	// group started the cluster again after it (restarted).
	onApply func(st clusterState, old bool)
	logs    raft.LogStore // (set before the library runs)
	applied uint64        // the index of the last state applied (mu)
	// oldUpTo is the last log index in the directory at start (set
	// before the library runs); live is set once the start-up's own
	// snapshot restore is over.
	oldUpTo uint64
	live    atomic.Bool
	r       atomic.Pointer[raft.Raft] // (once the library runs)
	late    bool                      // the last state applied was written in an earlier term (mu)
}

func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	var st clusterState
	if err := json.Unmarshal(l.Data, &st); err != nil {
		return fmt.Errorf("coordinator state at index %d: %w", l.Index, err)
	}
	old := l.Index <= f.oldUpTo
	if st.Stopped && !old {
		old = f.restarted(l.Index)
	}
	late := false
	if r := f.r.Load(); r != nil {
		late = l.Term < r.CurrentTerm()
	}
	f.mu.Lock()
	f.applied, f.late = l.Index, late
	f.mu.Unlock()
	f.set(st, old)
	return nil
}

// appliedLate reports whether the last state applied was written in an
// earlier term than this member's: it learns it late (it was down, cut
// off or frozen while it was committed).
func (f *fsm) appliedLate() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.late
}

// lastApplied is the index of the last state applied, and whether that
// state is a stop.
func (f *fsm) lastApplied() (uint64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied, f.st.Stopped
}

// restarted reports whether the log already holds, after index, a state
// of a cluster that runs again: a coordinator frozen (or cut off) while
// the cluster was stopped learns of the stop only as it catches up, maybe
// after the group was started again, and then belongs to the group that
// runs (it exited, and the group ran on two of three).
func (f *fsm) restarted(index uint64) bool {
	if f.logs == nil {
		return false
	}
	last, err := f.logs.LastIndex()
	if err != nil {
		return false
	}
	for i := index + 1; i <= last; i++ {
		var l raft.Log
		if f.logs.GetLog(i, &l) != nil || l.Type != raft.LogCommand {
			continue
		}
		var st clusterState
		if json.Unmarshal(l.Data, &st) == nil && !st.Stopped {
			return true
		}
	}
	return false
}

// loggedSecret is the cluster's secret as the newest state in this
// member's own log holds it. At start the library applies only a
// snapshot: the entries after it wait until a leader says they are
// committed, and one retries a member that was down for long only after
// a backoff of up to about 10 s. A member restarted in that window must
// still know the secret, or it refuses the leader's notice that the
// cluster stopped (and then runs elections alone for ever) and its
// questions (handoff.go). The secret never changes in a cluster's life.
func (f *fsm) loggedSecret() string {
	if f.logs == nil {
		return ""
	}
	first, err1 := f.logs.FirstIndex()
	last, err2 := f.logs.LastIndex()
	if err1 != nil || err2 != nil {
		return ""
	}
	for i := last; i >= first && i > 0; i-- {
		var l raft.Log
		if f.logs.GetLog(i, &l) != nil || l.Type != raft.LogCommand {
			continue
		}
		var st clusterState
		if json.Unmarshal(l.Data, &st) == nil && st.Secret != "" {
			return st.Secret
		}
	}
	return ""
}

func (f *fsm) set(st clusterState, old bool) {
	f.mu.Lock()
	f.st, f.has = st, true
	cb := f.onApply
	f.mu.Unlock()
	if cb != nil {
		cb(st, old)
	}
}

func (f *fsm) state() (clusterState, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st, f.has
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := json.Marshal(f.st)
	return fsmSnapshot(b), err
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return err
	}
	var st clusterState
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("coordinator snapshot: %w", err)
	}
	f.set(st, !f.live.Load())
	return nil
}

type fsmSnapshot []byte

func (s fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s fsmSnapshot) Release() {}

// raftNode is this coordinator's member of the Raft group (a group of
// one for a single coordinator).
type raftNode struct {
	r      *raft.Raft
	fsm    *fsm
	store  *raftboltdb.BoltStore
	trans  raft.Transport
	notify chan bool
	apply  time.Duration
	// addrs maps each member's Raft address to its coordinator index.
	addrs map[raft.ServerAddress]int

	// unreachable: the members this one's heartbeats, as the leader,
	// currently fail to reach (by coordinator index), from the library's
	// heartbeat observations; emptied when the leadership changes.
	obs         *raft.Observer
	obsDone     chan struct{}
	obsOnce     sync.Once
	unreachMu   sync.Mutex
	unreachable map[int]bool
}

// watchHeartbeats follows the leader's failed and resumed heartbeats.
func (n *raftNode) watchHeartbeats() {
	ch := make(chan raft.Observation, 64)
	n.obsDone, n.unreachable = make(chan struct{}), map[int]bool{}
	n.obs = raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.LeaderObservation:
			return true
		}
		return false
	})
	n.r.RegisterObserver(n.obs)
	go func() {
		for {
			select {
			case <-n.obsDone:
				return
			case o := <-ch:
				n.unreachMu.Lock()
				switch d := o.Data.(type) {
				case raft.FailedHeartbeatObservation:
					if k, err := strconv.Atoi(string(d.PeerID)); err == nil {
						n.unreachable[k] = true
					}
				case raft.ResumedHeartbeatObservation:
					if k, err := strconv.Atoi(string(d.PeerID)); err == nil {
						delete(n.unreachable, k)
					}
				case raft.LeaderObservation:
					clear(n.unreachable)
				}
				n.unreachMu.Unlock()
			}
		}
	}()
}

// unreachableMember reports whether member k fails the heartbeats this
// coordinator sends as the leader.
func (n *raftNode) unreachableMember(k int) bool {
	n.unreachMu.Lock()
	defer n.unreachMu.Unlock()
	return n.unreachable[k]
}

// DataDir is the default Raft data directory of coordinator id (-1: a
// single coordinator) under dir.
func DataDir(dir string, id int) string {
	if id < 0 {
		return filepath.Join(dir, "ftkv-coord")
	}
	return filepath.Join(dir, "ftkv-coord-"+strconv.Itoa(id))
}

// memberFile names, in a Raft data directory, the member that owns it.
const memberFile = "MEMBER"

// memberName is how coordinator id (-1: a single one) is named in its
// directory's memberFile.
func memberName(id int) string {
	if id < 0 {
		return "ftkv coordinator alone"
	}
	return "ftkv coordinator " + strconv.Itoa(id)
}

// checkMember makes sure dir is coordinator id's own: a directory of
// another member (a restore from the wrong backup, a copy) would carry
// that member's votes and log as this one's, and two members voting as
// one can elect two leaders in one term. It reports whether the directory
// is unclaimed (new, of an older version, or its claim was cut short): the
// caller claims it once it holds the store's lock. A claimed directory
// whose store is gone has lost the member's votes: refused too.
func checkMember(dir string, id int) (unclaimed bool, err error) {
	want := memberName(id)
	b, err := os.ReadFile(filepath.Join(dir, memberFile))
	if os.IsNotExist(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("-d %s: %s: %w", dir, memberFile, unwrapPathErr(err))
	}
	got := strings.TrimSpace(string(b))
	switch {
	case got == "":
		return true, nil
	case got != want:
		return false, fmt.Errorf("%w: -d %s is the Raft directory of %q, not of %s (each coordinator keeps its own; restore this one's own directory)",
			ErrConfigMismatch, dir, strings.TrimPrefix(got, "ftkv "), strings.TrimPrefix(want, "ftkv "))
	}
	if fi, err := os.Stat(filepath.Join(dir, "raft.db")); err != nil || fi.Size() == 0 {
		return false, fmt.Errorf("-d %s: the Raft store raft.db of %s is missing or empty: its votes and log are lost (restore it from a backup, or move the whole directory aside to start this member anew)",
			dir, strings.TrimPrefix(want, "ftkv "))
	}
	return false, nil
}

// claimMember writes dir's memberFile for coordinator id (its store's
// lock held: two coordinators started on one new directory cannot both
// claim it).
func claimMember(dir string, id int) error {
	path := filepath.Join(dir, memberFile)
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	err := writeSynced(tmp, []byte(memberName(id)+"\n"))
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("-d %s: %w", dir, unwrapPathErr(err))
	}
	return nil
}

// writeSynced writes b to a new file at path and syncs it.
func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir syncs directory dir (a rename in it is durable).
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// ErrStoreInUse: another process holds the Raft store's lock.
var ErrStoreInUse = errors.New("the Raft store is in use by another process")

// CheckStore reads every page of the Raft store at path that bbolt
// reaches (its free list as it opens, then every bucket's keys and
// values), so that a damaged file ends the start with a clear error: bbolt
// panics on a damaged page as it meets it (or faults on its map, caught
// as a panic here). An absent file is fine (a fresh directory). Pages
// that point back at each other make bbolt loop without end, so bin/coord
// runs this in a child process with a time limit (Options.CheckStore).
func CheckStore(path string) (err error) {
	if _, serr := os.Stat(path); serr != nil {
		return nil
	}
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: lockWait})
	if errors.Is(err, bbolt.ErrTimeout) {
		return ErrStoreInUse
	}
	if err != nil {
		return err
	}
	defer db.Close()
	var walk func(b *bbolt.Bucket) error
	walk = func(b *bbolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				if nb := b.Bucket(k); nb != nil {
					return walk(nb)
				}
			}
			return nil
		})
	}
	return db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(_ []byte, b *bbolt.Bucket) error { return walk(b) })
	})
}

// lockWait is how long opening the Raft store waits for another
// process's lock on it before saying the directory is in use.
// timing: exception — a local file lock, not a network or failure wait.
const lockWait = 500 * time.Millisecond

// minRaftTimer is hashicorp/raft's smallest accepted timer.
// timing: exception — the library refuses anything shorter.
const minRaftTimer = 5 * time.Millisecond

// openRaft opens (or creates) the Raft data directory and starts this
// coordinator's Raft member. A fresh directory is bootstrapped with every
// member of the group (identical on each, which hashicorp/raft accepts).
func openRaft(o Options, f *fsm, log zerolog.Logger) (*raftNode, error) {
	dir := o.DataDir
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("-d %s: %w", dir, unwrapPathErr(err))
	}
	// It keeps the cluster secret: a directory that already existed open
	// to others is made the owner's only (an attack read the secret from
	// a snapshot of a 0755 -d and shut a server down with it).
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return nil, fmt.Errorf("-d %s: cannot make it private to its owner (it keeps the cluster secret): %w", dir, unwrapPathErr(err))
		}
		log.Warn().Str("dir", dir).Str("was", fmt.Sprintf("%04o", fi.Mode().Perm())).Msg("the Raft directory keeps the cluster secret: made 0700")
	}
	hl := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: raftLogWriter{log, len(o.Cluster.Coordinators) == 0}, DisableTime: true})
	unclaimed, err := checkMember(dir, o.ID)
	if err != nil {
		return nil, err
	}
	check := CheckStore
	if o.CheckStore != nil {
		check = o.CheckStore
	}
	if err := check(filepath.Join(dir, "raft.db")); err != nil {
		if errors.Is(err, ErrStoreInUse) {
			return nil, fmt.Errorf("-d %s: the Raft data directory is in use by another coordinator (each coordinator needs its own; is this one already running?)", dir)
		}
		return nil, fmt.Errorf("-d %s: the coordinator's Raft store raft.db is damaged (%v): restore the directory from a backup (in a group of coordinators, the others carry on without this one)", dir, err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db"), BoltOptions: &bbolt.Options{Timeout: lockWait}})
	if err != nil {
		if errors.Is(err, bbolt.ErrTimeout) {
			return nil, fmt.Errorf("-d %s: the Raft data directory is in use by another coordinator (each coordinator needs its own; is this one already running?)", dir)
		}
		return nil, fmt.Errorf("-d %s: %w", dir, err)
	}
	if unclaimed {
		if err := claimMember(dir, o.ID); err != nil {
			store.Close()
			return nil, err
		}
	}
	n := &raftNode{fsm: f, store: store, notify: make(chan bool, 16), apply: o.Timing.RaftApply, addrs: map[raft.ServerAddress]int{}}
	fail := func(err error) (*raftNode, error) {
		store.Close()
		if n.trans != nil {
			if c, ok := n.trans.(io.Closer); ok {
				c.Close()
			}
		}
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hl)
	if err != nil {
		return fail(fmt.Errorf("-d %s: %w", dir, err))
	}
	// hashicorp/raft makes it 0755 and its snapshots (the secret) 0644.
	if err := os.Chmod(filepath.Join(dir, "snapshots"), 0o700); err != nil {
		return fail(fmt.Errorf("-d %s: %w", dir, unwrapPathErr(err)))
	}
	cfg := raft.DefaultConfig()
	cfg.Logger = hl
	cfg.NotifyCh = n.notify
	cfg.SnapshotThreshold, cfg.TrailingLogs = 256, 256
	var members []raft.Server
	tm := o.Timing
	if len(o.Cluster.Coordinators) == 0 {
		cfg.LocalID = "0"
		addr, tr := raft.NewInmemTransport("ftkv-coord")
		n.trans = tr
		members = []raft.Server{{ID: "0", Address: addr}}
		solo := max(tm.RaftSolo, minRaftTimer)
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = solo, solo, solo
	} else {
		cfg.LocalID = raft.ServerID(strconv.Itoa(o.ID))
		for k, cs := range o.Cluster.Coordinators {
			members = append(members, raft.Server{ID: raft.ServerID(strconv.Itoa(k)), Address: raft.ServerAddress(cs.RaftAddr)})
			n.addrs[raft.ServerAddress(cs.RaftAddr)] = k
		}
		me := o.Cluster.Coordinators[o.ID]
		adv, err := net.ResolveTCPAddr("tcp", me.RaftAddr)
		if err != nil {
			return fail(fmt.Errorf("%s:%d: coordinator %s: %w", o.Cluster.Path, me.Line, me.RaftAddr, err))
		}
		var tr *raft.NetworkTransport
		if t := o.tls; t != nil {
			tr, err = newTLSRaftTransport(me.RaftAddr, adv, t.raftSrv, t.raftCli, 3, tm.Dial, hl)
		} else {
			if o.groupKey == nil && !adv.IP.IsLoopback() {
				hl.Warn("the Raft port takes requests from anyone who reaches it: set group_secret_file (or TLS) unless every coordinator is on a private network")
			}
			tr, err = newRaftTransport(me.RaftAddr, adv, 3, tm.Dial, o.groupKey, tm.Handshake, hl)
		}
		if err != nil {
			if strings.Contains(err.Error(), "address already in use") {
				return fail(fmt.Errorf("coordinator %d: Raft address %s is in use (is coordinator -id %d already running?)", o.ID, me.RaftAddr, o.ID))
			}
			return fail(fmt.Errorf("coordinator %d: Raft address %s: %w", o.ID, me.RaftAddr, err))
		}
		n.trans = tr
		cfg.HeartbeatTimeout, cfg.ElectionTimeout = max(tm.RaftHeartbeat, minRaftTimer), max(tm.RaftElection, minRaftTimer)
		cfg.LeaderLeaseTimeout = max(tm.RaftLeaderLease, minRaftTimer)
	}
	cfg.CommitTimeout = max(tm.RaftCommit, time.Millisecond) // timing: exception — the library's floor
	if err := raft.ValidateConfig(cfg); err != nil {
		return fail(fmt.Errorf("raft: %w", err))
	}
	logs, err := raft.NewLogCache(512, store)
	if err != nil {
		return fail(err)
	}
	has, err := raft.HasExistingState(logs, store, snaps)
	if err != nil {
		return fail(fmt.Errorf("-d %s: %w", dir, err))
	}
	if !has {
		if err := raft.BootstrapCluster(cfg, logs, store, snaps, n.trans, raft.Configuration{Servers: members}); err != nil {
			return fail(fmt.Errorf("-d %s: bootstrap: %w", dir, err))
		}
	}
	f.logs = logs
	if f.oldUpTo, err = logs.LastIndex(); err != nil {
		return fail(fmt.Errorf("-d %s: %w", dir, err))
	}
	r, err := raft.NewRaft(cfg, f, logs, store, snaps, n.trans)
	f.live.Store(true)
	if err != nil {
		return fail(fmt.Errorf("raft: %w", err))
	}
	n.r = r
	f.r.Store(r)
	n.watchHeartbeats()
	return n, nil
}

// Save commits st to the group: it returns nil once a quorum holds it.
// Only the leader can; a deposed one gets an error and must not act.
func (n *raftNode) Save(st clusterState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := n.r.Apply(b, n.apply).Error(); err != nil {
		return fmt.Errorf("not committed: %w", err)
	}
	return nil
}

// leader returns the leader's coordinator index (-1 when unknown; 0 for
// a single coordinator that leads).
func (n *raftNode) leader() int {
	addr, _ := n.r.LeaderWithID()
	if addr == "" {
		return -1
	}
	if k, ok := n.addrs[addr]; ok {
		return k
	}
	return 0 // a single coordinator: the in-memory transport's address
}

func (n *raftNode) close() {
	n.obsOnce.Do(func() {
		n.r.DeregisterObserver(n.obs)
		close(n.obsDone)
	})
	_ = n.r.Shutdown().Error()
	if c, ok := n.trans.(io.Closer); ok {
		c.Close()
	}
	n.store.Close()
}

// raftLogWriter routes hashicorp/raft's log lines into the coordinator's
// log: its warnings and errors (the library is chatty below), at their
// level. A single coordinator's election at its start ("heartbeat
// timeout reached") is how it becomes its own leader, logged at info.
type raftLogWriter struct {
	l      zerolog.Logger
	single bool
}

func (w raftLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	ev := w.l.Warn()
	switch {
	case strings.HasPrefix(msg, "[ERROR]"):
		ev = w.l.Error()
	case w.single && strings.Contains(msg, "heartbeat timeout reached, starting election"):
		ev = w.l.Info()
	}
	// The level is the line's own now: hclog's "[WARN]  " goes.
	if i := strings.IndexByte(msg, ']'); strings.HasPrefix(msg, "[") && i > 0 {
		msg = strings.TrimSpace(msg[i+1:])
	}
	ev.Str("component", "raft").Msg(msg)
	return len(p), nil
}
