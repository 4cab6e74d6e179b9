package hashring

import (
	"testing"

	"github.com/zeebo/xxh3"
)

// Golden placements: changing the hash or the modulo would silently move
// every key to another server, so these must never change.
func TestGoldenShards(t *testing.T) {
	golden := []struct {
		key              string
		hash             uint64
		mod3, mod5, mod7 int
	}{
		{"", 0x2d06800538d394c2, 1, 3, 4},
		{"a", 0xe6c632b61e964e1f, 1, 4, 1},
		{"k", 0xa921e3704fda881d, 1, 3, 4},
		{"hello", 0x9555e8555c62dcfd, 2, 4, 1},
		{"key-1", 0x2d29f1336b0229f9, 0, 2, 3},
		{"key-2", 0x59d506bf6d9c9524, 1, 4, 4},
		{"\x00bin\x00", 0x3a5fdc33186df585, 2, 0, 2},
		{"user:1000", 0xfb6841b2068c0c9f, 0, 0, 0},
	}
	for _, g := range golden {
		if h := xxh3.HashString(g.key); h != g.hash {
			t.Errorf("xxh3(%q) = %#x, want %#x", g.key, h, g.hash)
		}
		for _, c := range []struct{ n, want int }{{3, g.mod3}, {5, g.mod5}, {7, g.mod7}} {
			if got := New(c.n).Shard(g.key); got != c.want {
				t.Errorf("Shard(%q) with N=%d = %d, want %d", g.key, c.n, got, c.want)
			}
		}
	}
}

func TestShardBytesMatchesShard(t *testing.T) {
	r := New(5)
	for _, k := range []string{"", "x", "longer key with spaces", "\x00\xff"} {
		if r.Shard(k) != r.ShardBytes([]byte(k)) {
			t.Fatalf("Shard and ShardBytes differ for %q", k)
		}
	}
}

func TestNeighbours(t *testing.T) {
	r := New(3)
	cases := []struct{ s, primary, secondary, pred int }{
		{0, 0, 1, 2}, {1, 1, 2, 0}, {2, 2, 0, 1},
	}
	for _, c := range cases {
		if got := r.Primary(c.s); got != c.primary {
			t.Errorf("Primary(%d)=%d want %d", c.s, got, c.primary)
		}
		if got := r.Secondary(c.s); got != c.secondary {
			t.Errorf("Secondary(%d)=%d want %d", c.s, got, c.secondary)
		}
		if got := r.Predecessor(c.s); got != c.pred {
			t.Errorf("Predecessor(%d)=%d want %d", c.s, got, c.pred)
		}
	}
	if New(1).Secondary(0) != 0 {
		t.Fatal("a ring of one is its own successor")
	}
}
