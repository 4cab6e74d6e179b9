package server

import (
	"testing"

	"github.com/rs/zerolog"

	"ftkv/wire"
)

// TestSeedIgnoredByCompleteCopy: a secondary whose copy is complete (its
// link was set up while it served) keeps it when a re-seeding arrives
// anyway (the coordinator made it re-seed another shard, so the view shows
// it re-seeding): a key deleted after the primary's snapshot read it must
// not come back from that snapshot.
func TestSeedIgnoredByCompleteCopy(t *testing.T) {
	st := &secState{t: newTable(), dd: newDedup(), log: zerolog.Nop()}
	st.t.merge("kept", []byte("new"), 9, false, false)
	// The snapshot read "gone" (version 3) and an older "kept"; "gone" was
	// deleted since, and the copy applied that delete.
	batch := wire.AppendSeedEntryString(nil, "gone", []byte("old"), 3)
	batch = wire.AppendSeedEntryString(batch, "kept", []byte("old"), 2)
	if err := st.applySeed(&wire.Frame{Op: wire.OpSeed, ID: 1, Value: batch, Floor: 2, Flags: wire.FlagSeedDone}); err != nil {
		t.Fatal(err)
	}
	if v, ok := st.t.get([]byte("gone")); ok {
		t.Fatalf("a deleted key came back from a redundant re-seeding: %q", v)
	}
	if v, ok := st.t.get([]byte("kept")); !ok || string(v) != "new" {
		t.Fatalf("kept = %q %v, want new", v, ok)
	}
	// A copy being re-seeded takes the snapshot as before.
	st2 := &secState{t: newTable(), dd: newDedup(), log: zerolog.Nop(), seeding: true}
	if err := st2.applySeed(&wire.Frame{Op: wire.OpSeed, ID: 1, Value: batch, Floor: 2, Flags: wire.FlagSeedDone}); err != nil {
		t.Fatal(err)
	}
	if st2.t.len() != 2 || st2.seeding {
		t.Fatalf("a re-seeding copy holds %d keys (seeding %v), want 2 and done", st2.t.len(), st2.seeding)
	}
}
