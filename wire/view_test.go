package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleView() *View {
	return &View{
		Epoch: 12,
		Servers: []Member{
			{ID: 1, Incarnation: 3, State: StateServing, PID: 4242, Host: "localhost", Addr: "127.0.0.1:7001", PeerAddr: "127.0.0.1:7101", CtlAddr: "127.0.0.1:7201"},
			{ID: 2, Incarnation: 1, State: StateDown, PID: 4243, Host: "user@box", Addr: "10.0.0.2:7001"},
			{ID: 3, State: StateReseeding, Host: "h\x00st"},
		},
		Shards: []Placement{{0, 1}, {1, 2}, {2, -1}, {-1, 0}, {-1, -1}},
	}
}

func sampleHeartbeat() *Heartbeat {
	return &Heartbeat{
		ID: 3, Incarnation: 2, PID: 999, Epoch: 12, PrimaryKeys: 1 << 40, SecondaryKeys: 17,
		Addr: "127.0.0.1:7003", PeerAddr: "127.0.0.1:7103", CtlAddr: "127.0.0.1:7203",
		Sessions: 12, SessionRecords: 34, RSSBytes: 56 << 20,
	}
}

// normView maps empty slices to nil: the encoding cannot tell them apart.
func normView(v View) View {
	if len(v.Servers) == 0 {
		v.Servers = nil
	}
	if len(v.Shards) == 0 {
		v.Shards = nil
	}
	return v
}

func manyServersView(n, shards int) *View {
	v := &View{Epoch: ^uint64(0)}
	for i := 0; i < n; i++ {
		v.Servers = append(v.Servers, Member{
			ID: uint32(i), Incarnation: uint64(i) * 31, State: uint8(i % 5), PID: uint32(1000 + i),
			Host: fmt.Sprintf("host%d", i), Addr: fmt.Sprintf("10.0.%d.%d:7001", i/256, i%256),
			PeerAddr: strings.Repeat("p", i%40), CtlAddr: "",
		})
	}
	for s := 0; s < shards; s++ {
		p := Placement{Primary: int32(s % n), Secondary: int32((s + 1) % n)}
		if s%7 == 0 {
			p.Secondary = -1
		}
		v.Shards = append(v.Shards, p)
	}
	return v
}

func TestViewRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		v    *View
	}{
		{"empty", &View{}},
		{"epoch-only", &View{Epoch: 5}},
		{"servers-no-shards", &View{Epoch: 1, Servers: []Member{{ID: 9, Host: "x"}}}},
		{"all-unplaced", &View{Epoch: 2, Shards: []Placement{{-1, -1}, {-1, -1}}}},
		{"sample", sampleView()},
		{"many-servers", manyServersView(300, 1024)},
		{"max-members", manyServersView(maxMembers, maxMembers)},
		{"long-strings", &View{Servers: []Member{{Host: strings.Repeat("h", 65535), Addr: strings.Repeat("\x00", 1000)}}}},
		{"session-ttl", &View{Epoch: 3, Shards: []Placement{{0, -1}}, Servers: []Member{{ID: 1}}, SessionTTL: 10 * time.Minute}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			enc := AppendView([]byte("pre"), tc.v)
			if string(enc[:3]) != "pre" {
				t.Fatalf("AppendView clobbered dst")
			}
			enc = enc[3:]
			got, err := DecodeView(enc)
			if err != nil {
				t.Fatalf("DecodeView: %v", err)
			}
			if !reflect.DeepEqual(normView(got), normView(*tc.v)) {
				t.Fatalf("round trip mismatch:\n got %+v\nwant %+v", got, *tc.v)
			}
			if again := AppendView(nil, &got); !bytes.Equal(again, enc) {
				t.Fatalf("re-encoding differs")
			}
		})
	}
}

// DecodeView copies strings: the view must outlive the frame buffer.
func TestDecodeViewCopiesStrings(t *testing.T) {
	enc := AppendView(nil, sampleView())
	v, err := DecodeView(enc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range enc {
		enc[i] = 'Z'
	}
	if !reflect.DeepEqual(v, *sampleView()) {
		t.Fatalf("decoded view changed with its buffer: %+v", v)
	}
}

func TestViewTruncated(t *testing.T) {
	for _, v := range []*View{{}, sampleView(), manyServersView(3, 10)} {
		enc := AppendView(nil, v)
		for i := 0; i < len(enc); i++ {
			if _, err := DecodeView(enc[:i]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("view truncated to %d/%d bytes: err = %v, want ErrMalformed", i, len(enc), err)
			}
		}
	}
}

func TestViewTrailingBytes(t *testing.T) {
	for _, v := range []*View{{}, sampleView()} {
		enc := AppendView(nil, v)
		for _, extra := range [][]byte{{0}, {1, 2, 3}, AppendView(nil, v)} {
			if _, err := DecodeView(append(enc[:len(enc):len(enc)], extra...)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("%d trailing bytes: err = %v, want ErrMalformed", len(extra), err)
			}
		}
	}
}

func TestViewBadPlacement(t *testing.T) {
	two := []Member{{ID: 1}, {ID: 2}}
	cases := []struct {
		name string
		v    View
	}{
		{"primary-equals-len", View{Servers: two, Shards: []Placement{{2, 0}}}},
		{"secondary-equals-len", View{Servers: two, Shards: []Placement{{0, 2}}}},
		{"primary-far", View{Servers: two, Shards: []Placement{{0, 1}, {1 << 30, 0}}}},
		{"primary-minus-2", View{Servers: two, Shards: []Placement{{-2, 0}}}},
		{"secondary-min-int32", View{Servers: two, Shards: []Placement{{0, -1 << 31}}}},
		{"no-servers-placement-0", View{Shards: []Placement{{0, -1}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := DecodeView(AppendView(nil, &tc.v)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestViewCountsBounded(t *testing.T) {
	// A server count over the bound is refused from the count alone.
	b := binary.BigEndian.AppendUint64(nil, 1)
	b = binary.BigEndian.AppendUint32(b, maxMembers+1)
	if _, err := DecodeView(b); !errors.Is(err, ErrMalformed) {
		t.Fatalf("servers: err = %v, want ErrMalformed", err)
	}
	b = binary.BigEndian.AppendUint64(nil, 1)
	b = binary.BigEndian.AppendUint32(b, ^uint32(0))
	if _, err := DecodeView(b); !errors.Is(err, ErrMalformed) {
		t.Fatalf("servers 2^32-1: err = %v, want ErrMalformed", err)
	}
	b = binary.BigEndian.AppendUint64(nil, 1)
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint32(b, maxMembers+1)
	if _, err := DecodeView(b); !errors.Is(err, ErrMalformed) {
		t.Fatalf("shards: err = %v, want ErrMalformed", err)
	}
}

func TestOwner(t *testing.T) {
	v := sampleView()
	cases := []struct {
		shard int
		want  *Member
	}{
		{-1, nil},
		{0, &v.Servers[0]},
		{1, &v.Servers[1]},
		{2, &v.Servers[2]},
		{3, nil}, // primary -1
		{4, nil},
		{len(v.Shards), nil},
		{1 << 30, nil},
	}
	for _, tc := range cases {
		if got := v.Owner(tc.shard); got != tc.want {
			t.Errorf("Owner(%d) = %v, want %v", tc.shard, got, tc.want)
		}
	}
	// A hand-built view with a dangling index must not panic.
	bad := &View{Servers: v.Servers[:1], Shards: []Placement{{5, -1}}}
	if got := bad.Owner(0); got != nil {
		t.Errorf("Owner on dangling placement = %v, want nil", got)
	}
	if got := (&View{}).Owner(0); got != nil {
		t.Errorf("Owner on empty view = %v, want nil", got)
	}
}

func TestStateName(t *testing.T) {
	want := map[uint8]string{StateStarting: "starting", StateServing: "serving", StateDown: "down",
		StateReseeding: "re-seeding", StateUnavailable: "unavailable", 99: "state(99)"}
	for s, name := range want {
		if got := StateName(s); got != name {
			t.Errorf("StateName(%d) = %q, want %q", s, got, name)
		}
	}
}

func TestHeartbeatRoundTrip(t *testing.T) {
	for _, h := range []*Heartbeat{
		{},
		sampleHeartbeat(),
		{ID: ^uint32(0), Incarnation: ^uint64(0), PID: ^uint32(0), Epoch: ^uint64(0), PrimaryKeys: ^uint64(0), SecondaryKeys: ^uint64(0),
			Addr: strings.Repeat("a", 65535), PeerAddr: "\x00", CtlAddr: ""},
		{ID: 1, Durable: []ShardIndex{{Shard: 2, Index: 1 << 40}}},
		{ID: 1, Storage: StorageReport{Fsync: "always", LogBytes: 1 << 30, SnapshotBytes: 5, SnapshotUnixMs: 1_800_000_000_000}},
		{ID: 1, Links: []LinkHealth{{Shard: 1, Secondary: 2, Incarnation: 3, Stalled: 4}}, Durable: []ShardIndex{{Shard: 0, Index: 9}},
			Storage: StorageReport{Fsync: "no", Failed: true}},
	} {
		enc := AppendHeartbeat([]byte{0xEE}, h)[1:]
		got, err := DecodeHeartbeat(enc)
		if err != nil {
			t.Fatalf("DecodeHeartbeat: %v", err)
		}
		if !reflect.DeepEqual(got, *h) {
			t.Fatalf("round trip mismatch:\n got %+v\nwant %+v", got, *h)
		}
		if again := AppendHeartbeat(nil, &got); !bytes.Equal(again, enc) {
			t.Fatalf("re-encoding differs")
		}
	}
}

// A heartbeat of an older server ends at CtlAddr: it decodes, with no
// sessions and no RSS.
func TestHeartbeatWithoutSessions(t *testing.T) {
	h := sampleHeartbeat()
	enc := AppendHeartbeat(nil, h)
	got, err := DecodeHeartbeat(enc[:len(enc)-heartbeatTail])
	if err != nil {
		t.Fatal(err)
	}
	want := *h
	want.Sessions, want.SessionRecords, want.RSSBytes = 0, 0, 0
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("old heartbeat decoded as %+v, want %+v", got, want)
	}
}

func linkHeartbeat() *Heartbeat {
	h := sampleHeartbeat()
	h.Links = []LinkHealth{{Shard: 2, Secondary: 4, Incarnation: 7, Stalled: 1500 * time.Millisecond}, {Shard: 0, Secondary: 1, Incarnation: 1 << 40}}
	return h
}

// Link reports follow RSSBytes; a heartbeat without them (an older
// server's, or one with every link healthy) decodes with none.
func TestHeartbeatLinks(t *testing.T) {
	h := linkHeartbeat()
	enc := AppendHeartbeat(nil, h)
	got, err := DecodeHeartbeat(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, *h) {
		t.Fatalf("round trip mismatch:\n got %+v\nwant %+v", got, *h)
	}
	plain := AppendHeartbeat(nil, sampleHeartbeat())
	if !bytes.Equal(enc[:len(plain)], plain) {
		t.Fatal("link reports must be appended after the older fields")
	}
	got, err = DecodeHeartbeat(plain)
	if err != nil || got.Links != nil {
		t.Fatalf("heartbeat without link reports: %+v, %v", got.Links, err)
	}
	for i := len(plain) + 1; i < len(enc); i++ {
		if _, err := DecodeHeartbeat(enc[:i]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("link reports truncated to %d/%d bytes: err = %v, want ErrMalformed", i, len(enc), err)
		}
	}
	zero := binary.BigEndian.AppendUint16(append([]byte(nil), plain...), 0)
	if _, err := DecodeHeartbeat(zero); !errors.Is(err, ErrMalformed) {
		t.Fatalf("zero link reports encoded: err = %v, want ErrMalformed", err)
	}
	neg := AppendHeartbeat(nil, &Heartbeat{Links: []LinkHealth{{Stalled: -1}}})
	if _, err := DecodeHeartbeat(neg); !errors.Is(err, ErrMalformed) {
		t.Fatalf("negative stall: err = %v, want ErrMalformed", err)
	}
}

func TestHeartbeatTruncatedAndTrailing(t *testing.T) {
	enc := AppendHeartbeat(nil, sampleHeartbeat())
	for i := 0; i < len(enc); i++ {
		if i == len(enc)-heartbeatTail {
			continue // an older server's heartbeat (TestHeartbeatWithoutSessions)
		}
		if _, err := DecodeHeartbeat(enc[:i]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("heartbeat truncated to %d/%d bytes: err = %v, want ErrMalformed", i, len(enc), err)
		}
	}
	if _, err := DecodeHeartbeat(append(enc, 0)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("trailing byte: err = %v, want ErrMalformed", err)
	}
}

// A view and a heartbeat travel inside frames; check the nesting end to end.
func TestViewInsideFrame(t *testing.T) {
	v := sampleView()
	buf := Append(nil, &Frame{Op: OpSetView, Epoch: v.Epoch, Value: AppendView(nil, v)})
	f, _, err := Decode(buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeView(f.Value)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, *v) {
		t.Fatalf("view mismatch")
	}
}

func TestKeyCountsRoundTrip(t *testing.T) {
	b := AppendKeyCounts([]byte{}, 7, 1<<40)
	if pk, sk, ok := DecodeKeyCounts(b); !ok || pk != 7 || sk != 1<<40 {
		t.Fatalf("decoded %d %d %v", pk, sk, ok)
	}
	for _, bad := range [][]byte{nil, {}, b[:15], append(b, 0)} {
		if _, _, ok := DecodeKeyCounts(bad); ok {
			t.Errorf("%d bytes decoded as key counts", len(bad))
		}
	}
}
