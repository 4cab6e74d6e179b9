package bench

import (
	"strings"
	"testing"
)

func TestOverhead(t *testing.T) {
	// 1,000 entries of 12+100 bytes that grew RSS by 176,000 bytes: 64 B each beyond.
	if got := Overhead(176000, 1000, 12, 100); got != 64 {
		t.Errorf("Overhead = %g, want 64", got)
	}
	if got := Overhead(1000, 0, 12, 100); got != 0 {
		t.Errorf("Overhead of no entries = %g", got)
	}
	if got := Overhead(50000, 1000, 12, 100); got != -62 { // RSS grew less than the data: negative, reported as is
		t.Errorf("Overhead = %g, want -62", got)
	}
}

const seedLog = `{"level":"info","node":0,"message":"listening"}
{"level":"info","node":2,"inc":1,"shard":1,"entries":333000,"took":450.5,"waiting_for_acks":12.5,"batches":40,"entries_per_sec":739178.7,"time":"2026-11-23T17:03:48Z","message":"re-seeding sent"}
not json at all, "re-seeding sent"
{"level":"info","node":0,"inc":1,"shard":0,"entries":334000,"took_ms":500,"entries_per_sec":668000,"message":"re-seeding sent"}
{"level":"info","node":0,"message":"re-seeding sent almost","entries":5}
`

func TestParseSeedSent(t *testing.T) {
	got, err := ParseSeedSent(strings.NewReader(seedLog))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d lines: %+v", len(got), got)
	}
	if g := got[0]; g.Node != 2 || g.Entries != 333000 || g.TookMs != 450.5 || g.EntriesPerSec != 739178.7 {
		t.Errorf("line 0 = %+v", g)
	}
	// Both neighbours send in parallel: 667,000 entries in the longer 500ms.
	if r := SeedRate(got); r != 1334000 {
		t.Errorf("SeedRate = %g, want 1,334,000", r)
	}
	if SeedRate(nil) != 0 {
		t.Error("SeedRate of nothing")
	}
}

// The lines of a server that recovered its log and of a primary that
// caught it up by partial resync (server/durable.go, server/resync.go).
const recoveryLog = `{"level":"info","node":1,"entries":200000,"entries_per_sec":1000000,"took_ms":200,"message":"log recovered"}
{"level":"info","node":0,"shard":0,"entries":250,"took_ms":4,"message":"partial resync done"}
{"level":"info","node":2,"shard":1,"entries":260,"took_ms":5,"message":"partial resync done"}
`

func TestParseRecoveryAndResync(t *testing.T) {
	rec, err := parseLogRates(strings.NewReader(recoveryLog), msgRecovered)
	if err != nil || len(rec) != 1 || rec[0].Node != 1 || rec[0].Entries != 200000 || SeedRate(rec) != 1e6 {
		t.Fatalf("recovered: %+v, %v", rec, err)
	}
	rs, err := parseLogRates(strings.NewReader(recoveryLog), msgResynced)
	if err != nil || len(rs) != 2 || rs[1].Entries != 260 || rs[1].EntriesPerSec != 52000 {
		t.Fatalf("resynced: %+v, %v", rs, err)
	}
	var b strings.Builder
	r := &ReseedResult{Recovered: rec, Resynced: rs}
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"recovery    node 1 replayed 200000 entries", "resync      node 2 sent 260 entries"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
}

func TestModeTexts(t *testing.T) {
	var b strings.Builder
	f := &FailoverResult{Kills: make([]KillReport, 20), GapP50Ms: 30, GapP99Ms: 612, GapMaxMs: 612, RecoverP50S: 0.3, RecoverMaxS: 1.5}
	f.WriteText(&b)
	if s := b.String(); !strings.Contains(s, "20 kills: write gap p50 30.0ms  p99 612ms  max 612ms") || !strings.Contains(s, "max 1.50s") {
		t.Errorf("failover text %q", s)
	}
	b.Reset()
	r := &ReseedResult{Server: 1, PID: 5, NewPID: 6, Entries: 666000, RespawnS: 0.1, SeedingS: 1.2, ServingS: 1.3, CatchUpS: 0.25, StatusEPS: 555000,
		Sent: []SeedSent{{Node: 0, Entries: 333000, TookMs: 400, EntriesPerSec: 832500}}, LogEPS: 832500}
	r.WriteText(&b)
	for _, want := range []string{"held 666000 entries before the kill", "catch-up    250ms", "555,000 entries/s", "node 0 sent 333000 entries in 400ms", "log rate    832,500"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("reseed text lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	m := &MemoryResult{KeyBytes: 12, ValBytes: 100, Overhead: 48.25, Servers: []MemoryServer{{ID: 0, PID: 7, RSSBefore: 10 << 20, RSSAfter: 110 << 20, Entries: 666666, BytesPerEnt: 157.3, Overhead: 45.3}}}
	m.WriteText(&b)
	for _, want := range []string{"12 B key + 100 B value", "RSS 10.0 MiB -> 110.0 MiB for 666666 entries", "overhead    48.2 B per entry"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("memory text lacks %q:\n%s", want, b.String())
		}
	}
}
