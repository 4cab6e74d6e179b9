package decide

import (
	"testing"
	"time"

	"ftkv/wire"
)

// untilPublish ticks (the listed members heartbeating) until the core
// publishes a view, for at most d; it returns that Publish and the other
// actions.
func (h *harness) untilPublish(d time.Duration, ids ...int) (Publish, []Action, bool) {
	h.t.Helper()
	var all []Action
	for end := h.now.Add(d); h.now.Before(end); {
		acts := h.tick(simFT / 10)
		acts = append(acts, h.beat(ids...)...)
		all = append(all, acts...)
		if p, ok := find[Publish](acts); ok {
			return p, all, true
		}
	}
	return Publish{}, all, false
}

// TestRejoinAfterDropSilentSeeds replays an e2e run (run 6): member 0, a
// serving member that leads shard 0 alone (its secondary, member 1, is
// re-seeding), joins shard 2 as its home secondary (rule 4b); it falls
// silent and is dropped as shard 2's secondary (kept: the last copy of
// shard 0), then joins again while it is still Reseeding, with the first
// join's outcome still awaited. Both tries fail ("re-seeding failed"
// twice), the failed join is dropped, and after the back-off it joins a
// third time and its re-seeding succeeds ("shard re-seeded"). It must
// then be published serving ("seeded"); the run saw it re-seeding in the
// committed view for good, its complete copy of shard 2 never counted.
func TestRejoinAfterDropSilentSeeds(t *testing.T) {
	v := wire.View{Epoch: 655}
	for i := 0; i < 3; i++ {
		v.Servers = append(v.Servers, wire.Member{ID: uint32(i), Incarnation: 1, State: wire.StateServing})
	}
	v.Servers[1].State = wire.StateReseeding
	// Shard 0 led by 0, its secondary 1 re-seeding; shard 1 led by 2,
	// secondary 1 re-seeding; shard 2 led by 2 alone: 0 joins it.
	v.Shards = []wire.Placement{pl(0, 1), pl(2, 1), pl(2, -1)}
	now := time.Unix(100, 0)
	c, err := New(simConfig(), v, nil, nil, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, c: c, now: now}

	join := func(what string) AskSeed {
		t.Helper()
		p, _, ok := h.untilPublish(4*h.c.cfg.RespawnMax, 0, 1, 2)
		if !ok || p.Why != "re-seed a shard's home secondary" || p.View.Shards[2] != pl(2, 0) {
			t.Fatalf("%s: want member 0 joining shard 2, got %v %q %v %v", what, ok, p.Why, p.View.Shards, states(p.View))
		}
		a, ok := find[AskSeed](h.step(Published{}))
		if !ok || a.ID != 0 || a.Shard != 2 {
			t.Fatalf("%s: no AskSeed of member 0 for shard 2: %+v", what, a)
		}
		return a
	}
	dropSilent := func(what string) {
		t.Helper()
		p, _, ok := h.untilPublish(3*simFT, 1, 2) // member 0 silent
		if !ok || p.Why != "drop a silent secondary" || p.View.Shards[2] != pl(2, -1) {
			t.Fatalf("%s: want member 0 dropped from shard 2, got %v %q %v %v", what, ok, p.Why, p.View.Shards, states(p.View))
		}
		h.step(Published{})
	}

	first := join("first join")   // …657
	dropSilent("first drop")      // …658
	second := join("second join") // …659
	dropSilent("second drop")     // …660
	// Both asks answered with failure, at the same time (at the drop,
	// member 0 still silent).
	h.step(SeedResult{ID: 0, Inc: 1, Shard: 2, Epoch: first.Epoch, OK: false})
	acts := h.step(SeedResult{ID: 0, Inc: 1, Shard: 2, Epoch: second.Epoch, OK: false})
	if k, ok := find[Kill](acts); ok {
		t.Fatalf("member 0 was killed: %+v", k)
	}
	p, ok := find[Publish](acts)
	if !ok {
		p, _, ok = h.untilPublish(simFT, 0, 1, 2)
	}
	if !ok || p.Why != "drop a failed join" {
		t.Fatalf("want the failed join dropped, got %v %q", ok, p.Why)
	}
	// (It re-seeds nothing else: it serves again.)
	if p.View.Servers[0].State != wire.StateServing {
		t.Errorf("drop a failed join: member 0 is %s in the view (node %s, awaiting %v), want serving",
			wire.StateName(p.View.Servers[0].State), h.c.nodes[0].State, h.c.nodes[0].seedWait)
	}
	h.step(Published{}) // …661

	third := join("third join") // …664, after the back-off
	h.beat()
	// "shard re-seeded": the third try succeeded.
	acts = h.step(SeedResult{ID: 0, Inc: 1, Shard: 2, Epoch: third.Epoch, OK: true})
	p, ok = find[Publish](acts)
	if !ok {
		p, _, ok = h.untilPublish(10*simFT, 0, 1, 2)
	}
	if !ok || p.Why != "seeded" || p.View.Servers[0].State != wire.StateServing || p.View.Shards[2] != pl(2, 0) {
		t.Fatalf("after member 0's re-seeding of shard 2 succeeded: want a \"seeded\" view with member 0 serving, got %v %q %v %v; node 0 is %s, still awaiting shards %v",
			ok, p.Why, p.View.Shards, states(p.View), h.c.nodes[0].State, h.c.nodes[0].seedWait)
	}
	h.step(Published{})
	if st := h.c.nodes[0].State; st != Serving {
		t.Fatalf("member 0 is %s after its seeded view", st)
	}
}
