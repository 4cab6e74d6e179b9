package connlimit

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"ftkv/wire"
)

// seedServer checks every SEED frame it decodes: each entry must parse,
// and the entries must be exactly the ones the test sent.
type seedServer struct {
	gnet.BuiltinEventEngine
	mu      sync.Mutex
	frames  int
	entries int
	bad     []string
}

func (h *seedServer) OnTraffic(c gnet.Conn) gnet.Action {
	return Decode(c, func(f *wire.Frame, out []byte) ([]byte, gnet.Action) {
		b := f.Value
		n := 0
		for len(b) > 0 {
			k, v, ver, rest, err := wire.NextSeedEntry(b)
			if err != nil {
				h.fail(fmt.Sprintf("frame %d: entry %d: %v", f.ID, n, err))
				return out, gnet.Close
			}
			if want := seedValue(f.ID, n, len(v)); string(k) != fmt.Sprintf("k%d-%d", f.ID, n) || string(v) != want || ver != f.ID<<20|uint64(n) {
				h.fail(fmt.Sprintf("frame %d: entry %d: got key %q version %d", f.ID, n, k, ver))
				return out, gnet.Close
			}
			b, n = rest, n+1
		}
		h.mu.Lock()
		h.frames++
		h.entries += n
		h.mu.Unlock()
		return wire.Append(out, &wire.Frame{Op: wire.OpReplAck, Flags: wire.FlagSeed, Seq: f.ID}), gnet.None
	})
}

func (h *seedServer) fail(s string) {
	h.mu.Lock()
	h.bad = append(h.bad, s)
	h.mu.Unlock()
}

func seedValue(frame uint64, i, n int) string {
	b := make([]byte, n)
	for j := range b {
		b[j] = byte('a' + (int(frame)+i+j)%26)
	}
	return string(b)
}

// TestSeedFramesSplitAnywhere sends re-seeding frames (up to ~320 KiB,
// several times the decoder's 64 KiB window) in writes cut at random
// points, with pauses so that they arrive in separate reads: a frame split
// at any offset, its header split, several frames in one read. Every entry
// must decode as sent (a re-seeding once failed with "truncated seed
// entry"; the decoder reads gnet's buffers in windows).
func TestSeedFramesSplitAnywhere(t *testing.T) {
	seed := rand.Uint64()
	if s, err := strconv.ParseUint(os.Getenv("FTKV_SEED"), 10, 64); err == nil {
		seed = s // replay a run: FTKV_SEED=<seed>
	}
	t.Logf("seed %d (FTKV_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	h := &seedServer{}
	p := listen(t, h, Config{Name: "peer", MaxFrame: wire.MaxFrame})
	nc := dial(t, p)
	var stream []byte
	frames, entries := 60, 0
	for id := uint64(1); id <= uint64(frames); id++ {
		var batch []byte
		size := rng.IntN(320 << 10)
		for n := 0; len(batch) < size; n++ {
			vlen := rng.IntN(2048)
			if rng.IntN(50) == 0 {
				vlen = rng.IntN(100 << 10)
			}
			batch = wire.AppendSeedEntryString(batch, fmt.Sprintf("k%d-%d", id, n), []byte(seedValue(id, n, vlen)), id<<20|uint64(n))
			entries++
		}
		stream = wire.Append(stream, &wire.Frame{Op: wire.OpSeed, ID: id, Value: batch})
	}
	go func() {
		for off := 0; off < len(stream); {
			n := 1 + rng.IntN(min(len(stream)-off, []int{3, 100, 5000, 70000, 300000}[rng.IntN(5)]))
			if _, err := nc.Write(stream[off : off+n]); err != nil {
				return
			}
			off += n
			if rng.IntN(4) == 0 {
				time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
			}
		}
	}()
	go func() { // read the acknowledgements, so the server's output never piles up
		buf := make([]byte, 64<<10)
		for {
			if _, err := nc.Read(buf); err != nil {
				return
			}
		}
	}()
	eventually(t, 30*time.Second, "every frame decoded", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.bad) > 0 {
			t.Fatalf("seed %d: %v", seed, h.bad)
		}
		return h.frames == frames
	})
	if h.entries != entries {
		t.Fatalf("%d entries decoded, %d sent", h.entries, entries)
	}
	t.Logf("%d frames, %d entries, %d bytes in random pieces", frames, entries, len(stream))
}
