package decide

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"ftkv/wire"
)

// harness steps a Core of n members (epoch 1, member i primary of shard i
// with secondary i+1, all confirmed) through a scenario.
type harness struct {
	t   *testing.T
	c   *Core
	now time.Time
}

func newHarness(t *testing.T, n int) *harness {
	t.Helper()
	v := wire.View{Epoch: 1}
	for i := 0; i < n; i++ {
		v.Servers = append(v.Servers, wire.Member{ID: uint32(i), Incarnation: 1, State: wire.StateServing, Host: "localhost"})
		v.Shards = append(v.Shards, wire.Placement{Primary: int32(i), Secondary: int32((i + 1) % n)})
	}
	h := &harness{t: t, now: time.Unix(1000, 0)}
	c, err := New(simConfig(), v, nil, nil, []string{"spare"}, h.now)
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	h.beat()
	return h
}

func (h *harness) step(ev Event) []Action { h.t.Helper(); return h.c.Step(ev) }

// tick advances the clock by d and ticks.
func (h *harness) tick(d time.Duration) []Action {
	h.now = h.now.Add(d)
	return h.step(Tick{Now: h.now})
}

// beat delivers a heartbeat of every listed member's newest incarnation
// at the current epoch (all members if none listed).
func (h *harness) beat(ids ...int) []Action {
	if len(ids) == 0 {
		for i := range h.c.nodes {
			ids = append(ids, i)
		}
	}
	var out []Action
	for _, i := range ids {
		nd := h.c.nodes[i]
		out = append(out, h.step(Heartbeat{Now: h.now, HB: wire.Heartbeat{ID: uint32(i), Incarnation: nd.Inc, Epoch: h.c.view.Epoch, PID: 77}})...)
	}
	return out
}

// advance keeps the listed members heartbeating while time passes.
func (h *harness) advance(d time.Duration, ids ...int) []Action {
	var out []Action
	for end := h.now.Add(d); h.now.Before(end); {
		out = append(out, h.tick(simFT/10)...)
		out = append(out, h.beat(ids...)...)
	}
	return out
}

func find[T Action](acts []Action) (T, bool) {
	for _, a := range acts {
		if x, ok := a.(T); ok {
			return x, true
		}
	}
	var zero T
	return zero, false
}

func count[T Action](acts []Action) int {
	n := 0
	for _, a := range acts {
		if _, ok := a.(T); ok {
			n++
		}
	}
	return n
}

func mustPublish(t *testing.T, acts []Action) wire.View {
	t.Helper()
	p, ok := find[Publish](acts)
	if !ok {
		t.Fatalf("no Publish in %+v", acts)
	}
	return p.View
}

func pl(p, s int32) wire.Placement { return wire.Placement{Primary: p, Secondary: s} }

func TestFailover(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(h *harness)
		event  func(h *harness) []Action
		shards []wire.Placement
		states []uint8
		cause  string // what the log says (Publish.Detail)
	}{
		{
			name:   "exit of a primary promotes its secondary",
			event:  func(h *harness) []Action { return h.step(ProcessExited{ID: 1, Inc: 1}) },
			shards: []wire.Placement{pl(0, -1), pl(2, -1), pl(2, 0)},
			states: []uint8{wire.StateServing, wire.StateDead, wire.StateServing},
			cause:  "server 1: exited, replaced or its re-seeding failed",
		},
		{
			name:   "silence longer than the failure timeout",
			event:  func(h *harness) []Action { return h.advance(simFT+simFT/5, 0, 2) },
			shards: []wire.Placement{pl(0, -1), pl(2, -1), pl(2, 0)},
			states: []uint8{wire.StateServing, wire.StateDown, wire.StateServing},
			cause:  "server 1: no heartbeat for ",
		},
		{
			name: "both copies gone: the shard is unavailable",
			setup: func(h *harness) {
				h.step(ProcessExited{ID: 1, Inc: 1})
				h.step(Published{})
			},
			event:  func(h *harness) []Action { return h.step(ProcessExited{ID: 2, Inc: 1}) },
			shards: []wire.Placement{pl(0, -1), pl(-1, -1), pl(0, -1)},
			states: []uint8{wire.StateServing, wire.StateDead, wire.StateDead},
			cause:  "server 2: exited",
		},
		{
			// Today's loop judged member 0 (silent) before member 2
			// (exited) in one round and failed both: shard 2 lost both
			// copies on silence (the simulation finds it).
			name: "silence is judged after the exits of the same round",
			setup: func(h *harness) {
				mustPublish(h.t, h.advance(simFT+simFT/5, 1, 2)) // 0 failed on silence...
				h.step(ProcessExited{ID: 2, Inc: 1})             // ...2 exits meanwhile...
				h.step(PublishFailed{})                          // ...and that view is lost
			},
			event:  func(h *harness) []Action { return h.tick(simFT / 10) },
			shards: []wire.Placement{pl(0, 1), pl(1, -1), pl(0, -1)},
			states: []uint8{wire.StateServing, wire.StateServing, wire.StateDead},
			cause:  "server 2: exited",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, 3)
			if tc.setup == nil {
				tc.setup = func(*harness) {}
			}
			tc.setup(h)
			acts := tc.event(h)
			v := mustPublish(t, acts)
			if p, _ := find[Publish](acts); !strings.HasPrefix(p.Detail, tc.cause) {
				t.Fatalf("cause %q, want %q", p.Detail, tc.cause)
			}
			if v.Epoch != h.c.view.Epoch+1 {
				t.Fatalf("epoch %d after %d", v.Epoch, h.c.view.Epoch)
			}
			if !reflect.DeepEqual(v.Shards, tc.shards) {
				t.Fatalf("shards %v, want %v", v.Shards, tc.shards)
			}
			for i, st := range tc.states {
				if v.Servers[i].State != st {
					t.Fatalf("member %d %s, want %s", i, wire.StateName(v.Servers[i].State), wire.StateName(st))
				}
			}
		})
	}
}

func TestSilenceRules(t *testing.T) {
	t.Run("not at exactly the timeout", func(t *testing.T) {
		h := newHarness(t, 3)
		if acts := h.advance(simFT, 0, 2); count[Publish](acts) != 0 {
			t.Fatalf("failed over at the timeout: %+v", acts)
		}
	})
	t.Run("a lagging round does not judge", func(t *testing.T) {
		h := newHarness(t, 3)
		if acts := h.tick(2 * simFT); count[Publish](acts) != 0 {
			t.Fatalf("a round after a stall judged silence: %+v", acts)
		}
		h.beat()
		if acts := h.tick(simFT / 10); count[Publish](acts) != 0 {
			t.Fatalf("failed over members that heartbeat: %+v", acts)
		}
	})
	t.Run("a member whose heartbeat waits unread is not judged", func(t *testing.T) {
		// Member 1's heartbeat waits unread on its link (the shell's
		// event loop was held up, its ticks were not): not judged, while
		// member 3, silent as long, is; once nothing waits, member 1's
		// silence counts.
		h := newHarness(t, 5)
		h.advance(simFT-simFT/10, 0, 2, 4)
		h.now = h.now.Add(simFT / 5)
		v := mustPublish(t, h.step(Tick{Now: h.now, Unread: []int{1}}))
		if v.Servers[1].State != wire.StateServing || v.Servers[3].State != wire.StateDown {
			t.Fatalf("want member 3 failed, member 1 (heartbeat unread) serving: %v", states(v))
		}
		h.step(Published{})
		h.beat(0, 2, 4)
		v = mustPublish(t, h.tick(simFT/10))
		if v.Servers[1].State != wire.StateDown {
			t.Fatalf("member 1 silent with nothing unread: %v", states(v))
		}
	})
	t.Run("one silent member per round", func(t *testing.T) {
		h := newHarness(t, 5)
		h.advance(simFT-simFT/10, 0, 2, 4)
		acts := h.tick(simFT / 5)
		v := mustPublish(t, acts)
		if v.Servers[1].State != wire.StateDown || v.Servers[3].State != wire.StateServing {
			t.Fatalf("want only member 1 failed: %v", states(v))
		}
	})
	t.Run("a silent last copy is dropped as a secondary", func(t *testing.T) {
		h := newHarness(t, 3)
		v := h.c.View()
		v.Shards = []wire.Placement{pl(0, 1), pl(1, 2), pl(2, -1)}
		h.c, _ = New(simConfig(), v, nil, nil, nil, h.now)
		// Member 2 (the last copy of shard 2) falls silent: kept, but no
		// longer shard 1's secondary; the log says whom and why.
		for _, a := range h.advance(3*simFT, 0, 1) {
			p, ok := a.(Publish)
			if !ok {
				continue
			}
			if p.View.Shards[1] != pl(1, -1) || p.View.Servers[2].State != wire.StateServing {
				t.Fatalf("published %v %v, want member 2 dropped as shard 1's secondary", p.View.Shards, states(p.View))
			}
			if !strings.HasPrefix(p.Detail, "server 2: no heartbeat for ") {
				t.Fatalf("the log's account of the drop: %q", p.Detail)
			}
			return
		}
		t.Fatal("the silent secondary was not dropped")
	})
	t.Run("never the last complete copy", func(t *testing.T) {
		h := newHarness(t, 3)
		h.step(ProcessExited{ID: 1, Inc: 1})
		h.step(Published{})
		// Member 2 now leads shard 1 alone; it falls silent.
		acts := h.advance(3*simFT, 0)
		for _, a := range acts {
			if p, ok := a.(Publish); ok && p.View.Servers[2].State == wire.StateDown {
				t.Fatalf("the last copy was failed on silence: %v", p.View.Shards)
			}
		}
	})
}

func TestLeaseRefusedFromTheDecision(t *testing.T) { // hole 3
	h := newHarness(t, 3)
	if !h.c.Lease(1, 1) {
		t.Fatal("a serving member's lease is refused")
	}
	mustPublish(t, h.advance(simFT+simFT/5, 0, 2))
	if h.c.Lease(1, 1) {
		t.Fatal("a member failed in a view being published may renew its lease")
	}
	h.step(PublishFailed{})
	if !h.c.Lease(1, 1) {
		t.Fatal("a failover that was not published still refuses the lease")
	}
	if h.c.Lease(1, 0) || h.c.Lease(7, 1) {
		t.Fatal("an unknown incarnation or member may renew a lease")
	}
}

func TestPublishedRestamp(t *testing.T) {
	h := newHarness(t, 3)
	mustPublish(t, h.step(ProcessExited{ID: 1, Inc: 1}))
	h.step(Published{Epoch: 1}) // not newer: ignored
	if _, ok := h.c.Pending(); !ok {
		t.Fatal("a Published with an old epoch completed the publication")
	}
	acts := h.step(Published{Epoch: 7<<32 | 1})
	if h.c.view.Epoch != 7<<32|1 {
		t.Fatalf("epoch %d, want the shell's stamp", h.c.view.Epoch)
	}
	if k, ok := find[Kill](acts); !ok || k != (Kill{ID: 1, Inc: 1}) {
		t.Fatalf("no kill of the failed incarnation: %+v", acts)
	}
	if n := count[Push](acts); n != 2 {
		t.Fatalf("%d pushes, want one to each live member", n)
	}
	if s, ok := find[Spawn](acts); !ok || s != (Spawn{ID: 1, Inc: 2, Old: 1, Host: "localhost"}) {
		t.Fatalf("no respawn: %+v", acts)
	}
}

func TestRespawnBackoff(t *testing.T) {
	h := newHarness(t, 3)
	h.step(ProcessExited{ID: 1, Inc: 1})
	h.step(Published{})
	cfg := h.c.cfg
	want := []time.Duration{cfg.RespawnMin, 2 * cfg.RespawnMin}
	for k, wait := range want {
		inc := h.c.nodes[1].Inc
		acts := h.step(SpawnFailed{ID: 1, Inc: inc})
		if kl, ok := find[Kill](acts); !ok || kl.Inc != inc {
			t.Fatalf("attempt %d: failed incarnation not killed: %+v", k, acts)
		}
		if count[Spawn](h.advance(wait-simFT/10, 0, 2)) != 0 {
			t.Fatalf("attempt %d: respawned before the back-off of %s", k, wait)
		}
		if count[Spawn](h.advance(simFT/5, 0, 2)) != 1 {
			t.Fatalf("attempt %d: not respawned after the back-off", k)
		}
	}
	// The third failure in a row moves it to the spare host at once.
	s, ok := find[Spawn](h.step(SpawnFailed{ID: 1, Inc: h.c.nodes[1].Inc}))
	if !ok || s.Host != "spare" {
		t.Fatalf("not respawned on the spare: %+v", s)
	}
	// An exit during start-up is a failed spawn.
	h.step(ProcessExited{ID: 1, Inc: s.Inc})
	if st := h.c.nodes[1].State; st != Failed {
		t.Fatalf("state %s after an exit during start-up", st)
	}
}

// TestRecovery walks one member through failure, respawn, re-seed,
// seeded and hand-back.
func TestRecovery(t *testing.T) {
	h := newHarness(t, 3)
	h.step(ProcessExited{ID: 1, Inc: 1})
	h.step(Published{})
	h.beat(0, 2)
	// Registered: the first heartbeat of incarnation 2.
	acts := h.beat(1)
	v := mustPublish(t, acts)
	if v.Servers[1].State != wire.StateReseeding || v.Servers[1].Incarnation != 2 || v.Servers[1].PID != 77 {
		t.Fatalf("re-seed view member 1: %+v", v.Servers[1])
	}
	if want := []wire.Placement{pl(0, 1), pl(2, 1), pl(2, 0)}; !reflect.DeepEqual(v.Shards, want) {
		t.Fatalf("re-seed shards %v, want %v", v.Shards, want)
	}
	acts = h.step(Published{})
	if n := count[AskSeed](acts); n != 2 {
		t.Fatalf("%d AskSeed, want 2: %+v", n, acts)
	}
	// The seeded view waits for both seeds and every confirmation.
	h.step(SeedResult{ID: 1, Inc: 2, Shard: 0, OK: true})
	if acts := h.step(SeedResult{ID: 1, Inc: 2, Shard: 1, OK: true}); count[Publish](acts) != 0 {
		t.Fatal("seeded published before every member confirmed the re-seed view")
	}
	v = mustPublish(t, h.beat())
	if v.Servers[1].State != wire.StateServing {
		t.Fatalf("seeded view: %v", states(v))
	}
	h.step(Published{})
	// Hand-back of shard 1 from member 2, once confirmed.
	acts = h.beat()
	f, ok := find[Freeze](acts)
	if !ok || f.Shard != 1 || f.Primary != 2 {
		t.Fatalf("no freeze of shard 1 on member 2: %+v", acts)
	}
	v = mustPublish(t, h.step(FreezeResult{Shard: 1, Epoch: f.Epoch, OK: true}))
	if want := []wire.Placement{pl(0, 1), pl(1, 2), pl(2, 0)}; !reflect.DeepEqual(v.Shards, want) {
		t.Fatalf("hand-back shards %v, want %v", v.Shards, want)
	}
	h.step(Published{})
	if acts := h.beat(); len(acts) != 0 {
		t.Fatalf("actions in a whole cluster: %+v", acts)
	}
}

func TestSeedFailureCondemns(t *testing.T) {
	h := newHarness(t, 3)
	h.step(ProcessExited{ID: 1, Inc: 1})
	h.step(Published{})
	h.beat(0, 2)
	h.beat(1)
	h.step(Published{})
	acts := h.step(SeedResult{ID: 1, Inc: 2, Shard: 0, OK: false})
	if k, ok := find[Kill](acts); !ok || k.Inc != 2 {
		t.Fatalf("no kill of the incarnation that failed its re-seed: %+v", acts)
	}
	v := mustPublish(t, acts)
	if v.Servers[1].State != wire.StateDead || v.Shards[0].Secondary != -1 {
		t.Fatalf("failover after a failed re-seed: %v %v", states(v), v.Shards)
	}
}

func TestRepushEveryLagging(t *testing.T) { // hole 8
	for _, legacy := range []bool{false, true} {
		h := newHarness(t, 3)
		h.c.firstLaggingOnly = legacy
		h.step(ProcessExited{ID: 1, Inc: 1})
		h.step(Published{})
		// Neither 0 nor 2 confirms epoch 2.
		h.step(Heartbeat{Now: h.now, HB: wire.Heartbeat{ID: 0, Incarnation: 1, Epoch: 1}})
		acts := h.tick(h.c.cfg.Repush + simFT/10)
		want := 2
		if legacy {
			want = 1
		}
		if n := count[Push](acts); n != want {
			t.Fatalf("legacy=%v: %d re-pushes, want %d: %+v", legacy, n, want, acts)
		}
		// No second re-push while one may still be in flight; a failed one
		// is retried after PushRetry.
		if n := count[Push](h.tick(simFT / 10)); n != 0 {
			t.Fatalf("legacy=%v: re-pushed again at once", legacy)
		}
		h.step(PushResult{ID: 0, Inc: 1, Epoch: 2})
		if n := count[Push](h.tick(h.c.cfg.PushRetry)); n != 1 {
			t.Fatalf("legacy=%v: a failed push not retried", legacy)
		}
	}
}

func TestLinkDownFailsSecondary(t *testing.T) { // hole 9
	link := func(h *harness, d time.Duration, epoch uint64) {
		h.step(Heartbeat{Now: h.now, HB: wire.Heartbeat{ID: 0, Incarnation: 1, Epoch: epoch}, Links: []Link{{Shard: 0, Secondary: 1, Incarnation: 1, DownFor: d}}})
	}
	t.Run("fails the secondary after twice the timeout", func(t *testing.T) {
		// Indirect evidence: a primary's or its secondary's loop that a
		// busy machine held up for over a failure timeout is no partition.
		h := newHarness(t, 3)
		h.advance(simFT * 6 / 10) // (reports count from half a timeout after the secondary was first heard)
		link(h, 2*simFT, 1)
		if count[Publish](h.tick(simFT/10)) != 0 {
			t.Fatal("failed at twice the timeout")
		}
		h.beat(1, 2)
		link(h, 2*simFT+1, 1)
		acts := h.tick(simFT / 10)
		v := mustPublish(t, acts)
		if p, _ := find[Publish](acts); !strings.HasPrefix(p.Detail, "server 1: the primary of shard 0 cannot replicate to it") {
			t.Fatalf("cause %q", p.Detail)
		}
		if v.Servers[1].State != wire.StateDown || v.Servers[0].State != wire.StateServing {
			t.Fatalf("want the secondary failed: %v", states(v))
		}
		if want := []wire.Placement{pl(0, -1), pl(2, -1), pl(2, 0)}; !reflect.DeepEqual(v.Shards, want) {
			t.Fatalf("shards %v, want %v", v.Shards, want)
		}
	})
	t.Run("not on a report of an older view", func(t *testing.T) {
		h := newHarness(t, 3)
		h.advance(simFT * 6 / 10)
		link(h, 3*simFT, 0)
		if count[Publish](h.tick(simFT/10)) != 0 {
			t.Fatal("failed on a stale report")
		}
	})
	for _, older := range []bool{false, true} {
		t.Run(fmt.Sprintf("not the last copy of its own shard, older report %v", older), func(t *testing.T) { dropUnreachable(t, older, link) })
	}
	t.Run("a re-seeding secondary, on a report of the view before", func(t *testing.T) {
		// Member 1 is respawned and given to shard 0 as its re-seeding
		// secondary; member 0 cannot reach it, so it refuses that view
		// (its writes wait meanwhile) and reports the link at the epoch
		// before. A review: each re-seeding of a secondary cut off from
		// its primary held the shard's writes for 6 s of an 8 s cut.
		// (Member 0 counts the link down from when it was given member
		// 1: the reports count once that is past LinkStall.)
		h, v := reseedingSecondary(t)
		acts := stallUntilPublished(h, []int{1, 2}, func(down time.Duration) {
			h.step(Heartbeat{Now: h.now, HB: wire.Heartbeat{ID: 0, Incarnation: 1, Epoch: v.Epoch - 1},
				Links: []Link{{Shard: 0, Secondary: 1, Incarnation: 2, DownFor: down}}})
		})
		nv := mustPublish(t, acts)
		if p, _ := find[Publish](acts); !strings.HasPrefix(p.Detail, "server 1: the primary of shard 0 cannot replicate to it") {
			t.Fatalf("cause %q", p.Detail)
		}
		if nv.Servers[1].State != wire.StateDown || nv.Shards[0] != pl(0, -1) {
			t.Fatalf("want the re-seeding secondary failed and shard 0 alone on member 0: %v %v", states(nv), nv.Shards)
		}
		// It never served: its respawn backs off (the partition may
		// outlast it, and each try holds the shard's writes a while).
		min := simConfig().RespawnMin
		if count[Spawn](h.step(Published{}))+count[Spawn](h.advance(min-simFT/10, 0, 2)) != 0 {
			t.Fatalf("respawned before the back-off of %s", min)
		}
		if count[Spawn](h.advance(simFT/5, 0, 2)) != 1 {
			t.Fatal("not respawned after the back-off")
		}
	})
	t.Run("a re-seeding secondary, not on a short stall nor on its former incarnation", func(t *testing.T) {
		h, v := reseedingSecondary(t)
		for _, l := range []Link{
			{Shard: 0, Secondary: 1, Incarnation: 2, DownFor: simFT},     // not past LinkStall
			{Shard: 0, Secondary: 1, Incarnation: 1, DownFor: 4 * simFT}, // the incarnation it replaced
		} {
			h.beat(1, 2)
			h.step(Heartbeat{Now: h.now, HB: wire.Heartbeat{ID: 0, Incarnation: 1, Epoch: v.Epoch - 1}, Links: []Link{l}})
			if acts := h.tick(simFT / 10); count[Publish](acts) != 0 {
				t.Fatalf("report %+v published %+v", l, acts)
			}
		}
	})
}

// stallUntilPublished has member 0 report, with report, a link down
// since now, with heartbeats of members beating and ticks of a tenth of
// the failure timeout, until a tick publishes (within LinkStall and two
// failure timeouts) or not, and returns that tick's actions.
func stallUntilPublished(h *harness, beating []int, report func(down time.Duration)) []Action {
	h.t.Helper()
	start := h.now
	for {
		h.beat(beating...)
		report(h.now.Sub(start))
		acts := h.tick(simFT / 10)
		if count[Publish](acts) != 0 || h.now.Sub(start) > h.c.cfg.LinkStall+2*simFT {
			return acts
		}
	}
}

// reseedingSecondary is a harness where member 1, failed and respawned
// (incarnation 2), is the re-seeding secondary of shard 0, and the view
// that made it so (published).
func reseedingSecondary(t *testing.T) (*harness, wire.View) {
	t.Helper()
	h := newHarness(t, 3)
	h.step(ProcessExited{ID: 1, Inc: 1})
	h.step(Published{})
	h.beat(0, 2)
	v := mustPublish(t, h.beat(1))
	h.step(Published{})
	if v.Servers[1].State != wire.StateReseeding || v.Shards[0] != pl(0, 1) {
		t.Fatalf("re-seed view: %v %v", states(v), v.Shards)
	}
	return h, v
}

// dropUnreachable: a secondary its primary cannot reach, kept as the last
// copy of its own shard, is dropped as that primary's secondary (and
// joins again after RespawnMax).
func dropUnreachable(t *testing.T, older bool, link func(h *harness, d time.Duration, epoch uint64)) {
	{
		h := newHarness(t, 3)
		h.step(ProcessExited{ID: 2, Inc: 1})
		h.step(Published{})
		h.beat(0, 1) // (member 2's respawn does not register)
		h.advance(simFT*6/10, 0, 1)
		// Member 1 leads shard 1 alone now; 0 cannot reach it for shard 0.
		// It is not failed (the last copy of shard 1), but dropped as
		// shard 0's secondary, whose writes would wait for the link as
		// long as the cut lasts (a review: 30 s for a 30 s cut).
		link(h, 3*simFT, 2)
		// Also when the primary reports at the epoch before: it refused
		// the view that named the secondary it cannot reach.
		if older {
			link(h, 3*simFT, 1)
		}
		acts := h.tick(simFT / 10)
		v := mustPublish(t, acts)
		if v.Servers[1].State != wire.StateServing {
			t.Fatalf("failed the last copy of shard 1: %v", states(v))
		}
		if p, _ := find[Publish](acts); !strings.HasPrefix(p.Detail, "server 1: the primary of shard 0 cannot replicate to it (for ") {
			t.Fatalf("the log's account of the drop: %q", p.Detail)
		}
		if want := []wire.Placement{pl(0, -1), pl(1, -1), pl(0, -1)}; !reflect.DeepEqual(v.Shards, want) {
			t.Fatalf("shards %v, want %v", v.Shards, want)
		}
		h.step(Published{})
		// It joins shard 0 again (rule 4b) only after RespawnMax: a
		// lasting cut does not stall the shard at every round.
		for end := h.now.Add(h.c.cfg.RespawnMax - simFT); h.now.Before(end); {
			for _, a := range h.beat(0, 1) {
				if p, ok := a.(Publish); ok && p.View.Shards[0].Secondary == 1 {
					t.Fatalf("member 1 joined shard 0 again %v after the drop", h.c.cfg.RespawnMax-end.Sub(h.now))
				}
			}
			h.now = h.now.Add(simFT / 5)
		}
		for end := h.now.Add(2 * simFT); ; h.now = h.now.Add(simFT / 5) {
			if p, ok := find[Publish](h.beat(0, 1)); ok && p.View.Shards[0].Secondary == 1 {
				break
			}
			if h.now.After(end) {
				t.Fatal("member 1 never joined shard 0 again after the back-off")
			}
		}
		// The link is still cut: dropped again, and the next join waits
		// twice as long (each try stalls the shard's writes a moment).
		// (Member 0 refuses the view that names member 1: it never
		// confirms it, and reports at the epoch before.)
		h.step(Published{})
		before := h.c.view.Epoch - 1
		v = mustPublish(t, stallUntilPublished(h, []int{1}, func(down time.Duration) { link(h, down, before) }))
		if v.Shards[0].Secondary != -1 {
			t.Fatalf("not dropped again: %v", v.Shards)
		}
		h.step(Published{})
		dropped := h.now
		for end := h.now.Add(2*h.c.cfg.RespawnMax - simFT); h.now.Before(end); h.now = h.now.Add(simFT / 5) {
			if p, ok := find[Publish](h.beat(0, 1)); ok && p.View.Shards[0].Secondary == 1 {
				t.Fatalf("joined again %v after the second drop, want the back-off doubled (%v)", h.now.Sub(dropped), 2*h.c.cfg.RespawnMax)
			}
		}
	}
}

func TestHandBackFreeze(t *testing.T) {
	h := newHarness(t, 3)
	// A cluster where shard 1 sits on member 2 with member 1 serving as
	// its secondary (after a recovery).
	v := h.c.View()
	v.Epoch = 5
	v.Shards = []wire.Placement{pl(0, 1), pl(2, 1), pl(2, 0)}
	c, _ := New(simConfig(), v, nil, nil, nil, h.now)
	h.c = c
	f, ok := find[Freeze](h.beat())
	if !ok {
		t.Fatal("no freeze")
	}
	// A failed freeze is retried after FreezeRetry, not before.
	h.step(FreezeResult{Shard: 1, Epoch: f.Epoch})
	if count[Freeze](h.beat()) != 0 {
		t.Fatal("freeze retried at once")
	}
	h.now = h.now.Add(h.c.cfg.FreezeRetry)
	f, ok = find[Freeze](h.beat())
	if !ok {
		t.Fatal("freeze not retried")
	}
	// Overtaken: a failure meanwhile; the late freeze result publishes nothing.
	h.step(ProcessExited{ID: 0, Inc: 1})
	h.step(Published{})
	if acts := h.step(FreezeResult{Shard: 1, Epoch: f.Epoch, OK: true}); count[Publish](acts) != 0 {
		t.Fatalf("hand-back published over a newer view: %+v", acts)
	}
}

// TestHandBackPassesOverAFailedDisk: shard 1 sits on member 2, whose log
// failed (a full disk) but who still holds the last copy of shard 2, with
// member 1 serving as its secondary. The hand-back gives shard 1 to
// member 1 without member 2 as its secondary: member 2 refuses every
// replication link, so member 1 could never apply a view that named it,
// and every later decision would wait on that view. (An attack on a full
// disk saw the cluster stuck so until member 2 was killed by hand.)
func TestHandBackPassesOverAFailedDisk(t *testing.T) {
	h := newHarness(t, 3)
	v := h.c.View()
	v.Epoch = 5
	v.Servers[0].State = wire.StateDead
	v.Shards = []wire.Placement{pl(1, -1), pl(2, 1), pl(2, -1)}
	c, _ := New(simConfig(), v, nil, nil, nil, h.now)
	h.c = c
	beat := func() []Action {
		out := h.beat(1)
		return append(out, h.step(Heartbeat{Now: h.now, HB: wire.Heartbeat{ID: 2, Incarnation: h.c.nodes[2].Inc,
			Epoch: h.c.view.Epoch, PID: 77, Storage: wire.StorageReport{Fsync: "always", Failed: true}}})...)
	}
	f, ok := find[Freeze](beat())
	if !ok || f.Shard != 1 || f.Primary != 2 {
		t.Fatalf("no freeze of shard 1 on member 2")
	}
	nv := mustPublish(t, h.step(FreezeResult{Shard: 1, Epoch: f.Epoch, OK: true}))
	if got := nv.Shards[1]; got != pl(1, -1) {
		t.Fatalf("hand-back placed shard 1 at %v, want %v (member 2's disk failed)", got, pl(1, -1))
	}
	// With a healthy disk the former primary stays on as the secondary.
	h = newHarness(t, 3)
	v.Servers[0].State = wire.StateServing
	v.Shards = []wire.Placement{pl(0, 1), pl(2, 1), pl(2, 0)}
	h.c, _ = New(simConfig(), v, nil, nil, nil, h.now)
	if f, ok = find[Freeze](h.beat()); !ok {
		t.Fatal("no freeze")
	}
	if got := mustPublish(t, h.step(FreezeResult{Shard: 1, Epoch: f.Epoch, OK: true})).Shards[1]; got != pl(1, 2) {
		t.Fatalf("hand-back placed shard 1 at %v, want %v", got, pl(1, 2))
	}
}

func TestNewRestores(t *testing.T) {
	v := wire.View{Epoch: 9, Servers: []wire.Member{
		{ID: 0, Incarnation: 3, State: wire.StateServing},
		{ID: 1, Incarnation: 2, State: wire.StateReseeding},
		{ID: 2, Incarnation: 1, State: wire.StateDown},
	}, Shards: []wire.Placement{pl(0, 1), pl(0, 1), pl(-1, -1)}}
	now := time.Unix(50, 0)
	for _, ok := range []bool{true, false} {
		c, err := New(simConfig(), v, []uint64{3, 2, 4}, nil, nil, now)
		if err != nil {
			t.Fatal(err)
		}
		// The re-seeding member goes on: its seeding primary is asked
		// for the outcome of each shard (it was failed and re-seeded
		// afresh at every takeover); the down one's respawn (incarnation
		// 4, the previous leader's) is awaited, not started again.
		first := c.Step(Tick{Now: now})
		var asked []int
		for _, a := range first {
			if as, is := a.(AskSeed); is && as.ID == 1 && as.Inc == 2 && as.Primary == 0 && as.PrimaryInc == 3 && as.Epoch == 9 {
				asked = append(asked, as.Shard)
			}
		}
		if !slices.Equal(asked, []int{0, 1}) {
			t.Fatalf("outcome asked for shards %v, want [0 1]: %+v", asked, first)
		}
		if _, published := find[Publish](first); published {
			t.Fatalf("a view published before the outcome is known: %+v", first)
		}
		if c.nodes[2].State != Respawning || c.nodes[2].Inc != 4 {
			t.Fatalf("member 2: %s/%d, want respawning/4", c.nodes[2].State, c.nodes[2].Inc)
		}
		if s, spawned := find[Spawn](first); spawned {
			t.Fatalf("a respawn under way spawned again: %+v", s)
		}
		for _, m := range v.Servers[:2] { // (the takeover's push answered)
			c.Step(PushResult{ID: int(m.ID), Inc: m.Incarnation, Epoch: 9, OK: true})
		}
		c.Step(SeedResult{ID: 1, Inc: 2, Shard: 0, Epoch: 9, OK: true})
		acts := c.Step(SeedResult{ID: 1, Inc: 2, Shard: 1, Epoch: 9, OK: ok})
		pv := mustPublish(t, acts)
		p, _ := find[Publish](acts)
		if ok {
			if pv.Servers[1].State != wire.StateServing || pv.Servers[1].Incarnation != 2 || pv.Shards[0] != pl(0, 1) {
				t.Fatalf("re-seeded: %v %v, want member 1 serving", states(pv), pv.Shards)
			}
			continue
		}
		// A failed re-seeding: failed over, and the log says why (an
		// attack read "exited" for a server whose re-seeding had
		// completed; here it did fail).
		if pv.Servers[1].State != wire.StateDead || pv.Shards[0] != pl(0, -1) {
			t.Fatalf("failed re-seeding: %v %v", states(pv), pv.Shards)
		}
		if !strings.Contains(p.Detail, "server 1: exited, replaced or its re-seeding failed") {
			t.Errorf("the failover's cause: %q", p.Detail)
		}
		if s, ok := find[Spawn](c.Step(Published{})); !ok || s.ID != 1 {
			t.Fatalf("no respawn of member 1")
		}
	}
	// The re-seeding member exits: the failover says so (it said the
	// outcome was not known here: a review).
	{
		c, err := New(simConfig(), v, []uint64{3, 2, 4}, nil, nil, now)
		if err != nil {
			t.Fatal(err)
		}
		c.Step(Tick{Now: now})
		acts := c.Step(ProcessExited{ID: 1, Inc: 2})
		if p, ok := find[Publish](acts); !ok || !strings.Contains(p.Detail, "server 1: exited, replaced or its re-seeding failed") {
			t.Errorf("the exit of a re-seeding member taken over: %+v", acts)
		}
	}
	// The previous leader's respawn of member 2 reports: it registers
	// (and is re-seeded); one that never does is respawned.
	for _, reports := range []bool{true, false} {
		c, err := New(simConfig(), v, []uint64{3, 2, 4}, nil, nil, now)
		if err != nil {
			t.Fatal(err)
		}
		c.Step(Tick{Now: now})
		if reports {
			c.Step(Heartbeat{Now: now, HB: wire.Heartbeat{ID: 2, Incarnation: 4}})
			if c.nodes[2].State != Registered {
				t.Errorf("member 2 after its first heartbeat: %s, want registered", c.nodes[2].State)
			}
			continue
		}
		acts := c.Step(SpawnFailed{ID: 2, Inc: 4})
		if k, ok := find[Kill](acts); !ok || k.ID != 2 || k.Inc != 4 {
			t.Errorf("a failed spawn not killed: %+v", acts)
		}
		acts = c.Step(Tick{Now: now.Add(simFT)})
		if s, ok := find[Spawn](acts); !ok || s.ID != 2 || s.Inc != 5 {
			t.Errorf("member 2 not respawned after the previous leader's spawn failed: %+v", acts)
		}
	}
	if _, err := New(Config{}, v, nil, nil, nil, now); err == nil {
		t.Fatal("a zero Config passed validation")
	}
}

// TestLinkDownRules: the conditions under which a primary's report that
// it cannot replicate to its secondary fails that secondary (hole 9).
func TestLinkDownRules(t *testing.T) {
	type report struct {
		from, shard, sec int
		inc              uint64
		d                time.Duration
	}
	reseed1 := func(h *harness) { // member 1 comes back as incarnation 2, re-seeding
		h.step(ProcessExited{ID: 1, Inc: 1})
		h.step(Published{})
		h.beat(0, 2)
		mustPublish(h.t, h.beat(1))
		h.step(Published{})
		h.beat()
	}
	cases := []struct {
		name    string
		n       int
		before  func(h *harness) // before the reports
		after   func(h *harness) // between the reports and the round
		reports []report
		down    []int // members not live in the published view (nil: nothing published)
	}{
		{name: "stalled past twice the timeout", reports: []report{{0, 0, 1, 1, 2*simFT + 1}}, down: []int{1}},
		{name: "not yet past twice the timeout", reports: []report{{0, 0, 1, 1, 2 * simFT}}},
		{name: "past the timeout only", reports: []report{{0, 0, 1, 1, simFT * 3 / 2}}},
		{name: "reporter does not lead the shard", reports: []report{{2, 0, 1, 1, 3 * simFT}}},
		{name: "report about a former incarnation", reports: []report{{0, 0, 1, 0, 3 * simFT}}},
		{name: "report about another member", reports: []report{{0, 0, 2, 1, 3 * simFT}}},
		{name: "re-seeding secondary", before: reseed1, reports: []report{{0, 0, 1, 2, 3 * simFT}}, down: []int{1}},
		{name: "re-seeding secondary, report about its former incarnation", before: reseed1, reports: []report{{0, 0, 1, 1, 3 * simFT}}},
		{
			// The exit of 3 is decided in the same round: one change at
			// a time, the link is judged against the next view.
			name: "other failures this round", n: 5,
			after: func(h *harness) {
				mustPublish(h.t, h.step(ProcessExited{ID: 3, Inc: 1}))
				h.step(PublishFailed{})
			},
			reports: []report{{0, 0, 1, 1, 3 * simFT}}, down: []int{3},
		},
		{name: "longest stall first", reports: []report{{0, 0, 1, 1, 3 * simFT}, {1, 1, 2, 1, 4 * simFT}}, down: []int{2}},
		{name: "longest stall first, whoever reports", reports: []report{{0, 0, 1, 1, 4 * simFT}, {1, 1, 2, 1, 3 * simFT}}, down: []int{1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.n == 0 {
				tc.n = 3
			}
			h := newHarness(t, tc.n)
			if tc.before != nil {
				tc.before(h)
			}
			// (Reports count from half a failure timeout after the
			// secondary was first heard: they may be of its silence.)
			h.advance(simFT * 6 / 10)
			links := map[int][]Link{}
			for _, r := range tc.reports {
				links[r.from] = append(links[r.from], Link{Shard: r.shard, Secondary: r.sec, Incarnation: r.inc, DownFor: r.d})
			}
			for from, ls := range links {
				h.step(Heartbeat{Now: h.now, HB: wire.Heartbeat{ID: uint32(from), Incarnation: h.c.nodes[from].Inc, Epoch: h.c.view.Epoch}, Links: ls})
			}
			if tc.after != nil {
				tc.after(h)
			}
			acts := h.tick(simFT / 10)
			if tc.down == nil {
				if p, ok := find[Publish](acts); ok {
					t.Fatalf("published %v %v", states(p.View), p.View.Shards)
				}
				return
			}
			v := mustPublish(t, acts)
			var down []int
			for i, m := range v.Servers {
				if !live(m) {
					down = append(down, i)
				}
			}
			if !reflect.DeepEqual(down, tc.down) {
				t.Fatalf("down %v, want %v (%v)", down, tc.down, states(v))
			}
		})
	}
}

// TestBackoffWhenNeverServing: a respawned member that registers but fails
// again before it serves (a full disk: its log fails during re-seeding)
// is respawned after a doubling back-off, not at once (a review counted
// 141 incarnations in a minute); once an incarnation serves, the next
// failure respawns at once again.
func TestBackoffWhenNeverServing(t *testing.T) {
	h := newHarness(t, 3)
	h.step(ProcessExited{ID: 1, Inc: 1})
	first := h.step(Published{})
	cfg := h.c.cfg
	// spawnAfter is how long after acts (the failover's publication) the
	// member is respawned.
	spawnAfter := func(round int, acts []Action) time.Duration {
		t.Helper()
		if count[Spawn](acts) == 1 {
			return 0
		}
		for waited := time.Duration(0); waited < 4*cfg.RespawnMax; waited += simFT / 10 {
			acts := h.advance(simFT/10, 0, 2)
			for _, a := range acts {
				if _, ok := a.(Publish); ok {
					h.step(Published{})
				}
			}
			if count[Spawn](acts) == 1 {
				return waited
			}
		}
		t.Fatalf("round %d: never respawned", round)
		return 0
	}
	if w := spawnAfter(0, first); w > simFT/5 {
		t.Fatalf("the first respawn after a serving member's exit waited %s", w)
	}
	var waits []time.Duration
	for round := 1; round <= cfg.SpareAfter; round++ {
		// Registers, is re-seeded, its log fails (disk full) and so its
		// re-seeding.
		h.beat(0, 2)
		mustPublish(t, h.beat(1))
		h.step(Published{})
		inc := h.c.nodes[1].Inc
		h.step(Heartbeat{Now: h.now, HB: wire.Heartbeat{ID: 1, Incarnation: inc, Epoch: h.c.view.Epoch, PID: 77,
			Storage: wire.StorageReport{Fsync: "always", Failed: true}}})
		acts := h.step(SeedResult{ID: 1, Inc: inc, Shard: 0, OK: false})
		mustPublish(t, acts)
		waits = append(waits, spawnAfter(round, h.step(Published{})))
	}
	if waits[0] < cfg.RespawnMin-simFT/5 || waits[1] < 2*cfg.RespawnMin-simFT/5 {
		t.Fatalf("respawns after failures before serving waited %v, want a doubling back-off from %s", waits, cfg.RespawnMin)
	}
	// The third failure in a row moved it to the spare host, at once.
	if nd := h.c.nodes[1]; nd.Host != "spare" || waits[2] > simFT/5 {
		t.Fatalf("after three failures before serving: host %q, respawned after %s", nd.Host, waits[2])
	}
	// This incarnation serves; its next failure respawns at once.
	h.beat(0, 2)
	mustPublish(t, h.beat(1))
	h.step(Published{})
	inc := h.c.nodes[1].Inc
	h.step(SeedResult{ID: 1, Inc: inc, Shard: 0, OK: true})
	h.step(SeedResult{ID: 1, Inc: inc, Shard: 1, OK: true})
	mustPublish(t, h.beat())
	h.step(Published{})
	if st := h.c.nodes[1].State; st != Serving {
		t.Fatalf("member 1 is %s", st)
	}
	h.step(ProcessExited{ID: 1, Inc: inc})
	if w := spawnAfter(4, h.step(Published{})); w > simFT/5 {
		t.Fatalf("a serving incarnation's failure respawned after %s", w)
	}
}

// TestTwoSilentAtOnce: members 0 and 1 stop at the same moment (SIGSTOP),
// so shard 0 has no copy left that answers, while shard 1's secondary (2)
// and shard 2's primary (2) are fine. Member 1 is failed, so shard 1 moves
// to member 2, never to a silent member; member 0 keeps shard 0 (its last
// copy) but no longer holds up shard 2's writes as its secondary. (The
// coordinator promoted the silent member 1 for shard 0, and shard 1 stayed
// down, its status "serving", until the members were continued.)
func TestTwoSilentAtOnce(t *testing.T) {
	// Their last heartbeats are up to a heartbeat period apart: member 1
	// may still look alive when member 0's silence is judged.
	for _, lag := range []time.Duration{0, simFT / 10, simFT / 5, simFT / 3} {
		t.Run(fmt.Sprint(lag), func(t *testing.T) { twoSilent(t, lag) })
	}
}

func twoSilent(t *testing.T, lag time.Duration) {
	h := newHarness(t, 3)
	h.advance(lag, 1, 2)
	var v wire.View
	for end := h.now.Add(4 * simFT); h.now.Before(end); {
		for _, a := range h.advance(simFT/10, 2) {
			if p, ok := a.(Publish); ok {
				if p.View.Shards[0].Primary == 1 {
					t.Fatalf("shard 0 promoted to the silent member 1: %v", p.View.Shards)
				}
				v = p.View
				h.step(Published{})
			}
		}
	}
	if want := []wire.Placement{pl(0, -1), pl(2, -1), pl(2, -1)}; !reflect.DeepEqual(v.Shards, want) {
		t.Fatalf("shards %v (states %v), want %v", v.Shards, states(v), want)
	}
	if v.Servers[1].State != wire.StateDown || v.Servers[0].State != wire.StateServing {
		t.Fatalf("states %v, want member 1 down and member 0 (the last copy of shard 0) in the view", states(v))
	}
}

// TestUnheardJudgedAtOnce: a member a takeover's order went unanswered
// to since long before the core's start is judged silent at the first
// tick (no grace from the start), the others keep theirs.
func TestUnheardJudgedAtOnce(t *testing.T) {
	v, now := threeServing(), time.Unix(80, 0)
	c, err := New(simConfig(), v, nil, nil, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	c.Unheard(1, now.Add(-3*simFT))
	acts := c.Step(Tick{Now: now.Add(simFT / 10)})
	pv := mustPublish(t, acts)
	if pv.Servers[1].State == wire.StateServing || pv.Shards[1] != pl(2, -1) {
		t.Fatalf("member 1 not failed over at once: %v %v", states(pv), pv.Shards)
	}
	if p, _ := find[Publish](acts); !strings.Contains(p.Detail, "server 1: no heartbeat for ") {
		t.Errorf("the failover's cause: %q", p.Detail)
	}
	if pv.Servers[0].State != wire.StateServing || pv.Servers[2].State != wire.StateServing {
		t.Errorf("members in their grace failed: %v", states(pv))
	}
}

// TestAnsweredDefersSilence: a member unheard since long before answers
// an order (Answered): it is not judged silent until a failure timeout
// after the answer; an answer of another incarnation changes nothing.
func TestAnsweredDefersSilence(t *testing.T) {
	v, now := threeServing(), time.Unix(80, 0)
	for _, tc := range []struct {
		inc    uint64
		failed bool
	}{{1, false}, {2, true}} {
		c, err := New(simConfig(), v, nil, nil, nil, now)
		if err != nil {
			t.Fatal(err)
		}
		c.Unheard(1, now.Add(-3*simFT))
		c.Answered(1, tc.inc, now)
		acts := c.Step(Tick{Now: now.Add(simFT / 10)})
		_, published := find[Publish](acts)
		if published != tc.failed {
			t.Errorf("an answer of incarnation %d: failed over %v, want %v (%v)", tc.inc, published, tc.failed, acts)
		}
	}
}

// threeServing is a view of epoch 4 in which three members serve their
// home shards and their predecessors'.
func threeServing() wire.View {
	return wire.View{Epoch: 4, Servers: []wire.Member{
		{ID: 0, Incarnation: 1, State: wire.StateServing},
		{ID: 1, Incarnation: 1, State: wire.StateServing},
		{ID: 2, Incarnation: 1, State: wire.StateServing},
	}, Shards: []wire.Placement{pl(0, 1), pl(1, 2), pl(2, 0)}}
}
