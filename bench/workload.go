package bench

import (
	"math/rand/v2"
	"strconv"
	"time"
)

// Kind is the type of an operation.
type Kind uint8

// The operation kinds of the workload.
const (
	Get Kind = iota
	Put
)

func (k Kind) String() string {
	if k == Get {
		return "get"
	}
	return "put"
}

// Op is one operation of a batch. The loop fills Kind, Key and Value; the
// Requester fills the outcome.
type Op struct {
	Kind  Kind
	Key   []byte // reused by the next batch: copy it if it must outlive Do
	Value []byte // puts only; shared by every op of the requester: never modify

	// Outcome, set by Requester.Do.
	Done    bool          // the target answered (Err says how)
	Latency time.Duration // from sending the op to its answer
	Miss    bool          // a get found no value
	Err     error
}

// KeyPrefix starts every generated key.
const KeyPrefix = "key:"

// AppendKey appends the name of key number n, "key:%08d", to dst.
func AppendKey(dst []byte, n int) []byte {
	dst = append(dst, KeyPrefix...)
	var digits [20]byte
	d := strconv.AppendInt(digits[:0], int64(n), 10)
	for i := len(d); i < 8; i++ {
		dst = append(dst, '0')
	}
	return append(dst, d...)
}

// generator draws the operations of one requester. It is not safe for
// concurrent use; each requester owns one.
type generator struct {
	rng   *rand.Rand
	keys  int
	ratio float64
	value []byte
}

// newGenerator returns the generator of requester id; the same seed and id
// give the same sequence.
func newGenerator(cfg Config, seed uint64, id int) *generator {
	rng := rand.New(rand.NewPCG(seed, uint64(id)))
	value := make([]byte, cfg.ValueSize)
	for i := 0; i < len(value); i += 8 {
		v := rng.Uint64()
		for j := i; j < i+8 && j < len(value); j++ {
			value[j] = byte(v)
			v >>= 8
		}
	}
	return &generator{rng: rng, keys: cfg.Keys, ratio: cfg.Ratio, value: value}
}

// fill prepares batch for the next round, reusing each op's key buffer.
func (g *generator) fill(batch []Op) {
	for i := range batch {
		op := &batch[i]
		op.Kind = Put
		if g.ratio > 0 && g.rng.Float64() < g.ratio {
			op.Kind = Get
		}
		op.Key = AppendKey(op.Key[:0], g.rng.IntN(g.keys))
		op.Value = nil
		if op.Kind == Put {
			op.Value = g.value
		}
		op.reset()
	}
}

// fillPuts prepares batch as puts of keys first, first+1, ….
func (g *generator) fillPuts(batch []Op, first int) {
	for i := range batch {
		op := &batch[i]
		op.Kind = Put
		op.Key = AppendKey(op.Key[:0], first+i)
		op.Value = g.value
		op.reset()
	}
}

func (op *Op) reset() {
	op.Done, op.Latency, op.Miss, op.Err = false, 0, false, nil
}
