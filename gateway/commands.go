package gateway

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/redcon"

	"ftkv/client"
	"ftkv/internal/auth"
	"ftkv/wire"
)

const (
	maxKey   = wire.MaxKey
	maxValue = wire.MaxValue
)

// spec describes one command: its dispatch entry and what COMMAND says.
type spec struct {
	name    string
	arity   int // Redis's convention: n exactly, -n at least n
	flags   []string
	first   int // first key argument (0: none)
	last    int // last key argument (-1: the last)
	step    int
	group   string
	summary string
	run     func(ctx context.Context, s *session, args [][]byte, out []byte) ([]byte, error)
}

func (sp *spec) arityOK(n int) bool {
	if sp.arity >= 0 {
		return n == sp.arity
	}
	return n >= -sp.arity
}

// writes reports whether the command may write (Redis's "write" flag).
func (sp *spec) writes() bool { return slices.Contains(sp.flags, "write") }

// readOnly reports whether the command only reads keys (Redis's
// "readonly" flag).
func (sp *spec) readOnly() bool { return slices.Contains(sp.flags, "readonly") }

var (
	specs    []*spec          // in COMMAND's order
	specByLC map[string]*spec // by lowercase name
)

func init() {
	specs = []*spec{
		{"get", 2, []string{"readonly", "fast"}, 1, 1, 1, "string", "Returns the string value of a key.", cmdGet},
		{"set", -3, []string{"write", "denyoom"}, 1, 1, 1, "string", "Sets the string value of a key (NX, XX, GET; no expiry).", cmdSet},
		{"setnx", 3, []string{"write", "denyoom", "fast"}, 1, 1, 1, "string", "Set the string value of a key only when the key doesn't exist.", cmdSetNX},
		{"getset", 3, []string{"write", "denyoom", "fast"}, 1, 1, 1, "string", "Returns the previous string value of a key after setting it to a new value.", cmdGetSet},
		{"getdel", 2, []string{"write", "fast"}, 1, 1, 1, "string", "Returns the string value of a key after deleting the key.", cmdGetDel},
		{"del", -2, []string{"write"}, 1, -1, 1, "generic", "Deletes one or more keys.", cmdDel},
		{"unlink", -2, []string{"write", "fast"}, 1, -1, 1, "generic", "Deletes one or more keys (as DEL).", cmdDel},
		{"exists", -2, []string{"readonly", "fast"}, 1, -1, 1, "generic", "Determines whether one or more keys exist.", cmdExists},
		{"type", 2, []string{"readonly", "fast"}, 1, 1, 1, "generic", "Determines the type of value stored at a key (string, or none).", cmdType},
		{"ttl", 2, []string{"readonly", "fast"}, 1, 1, 1, "generic", "Returns the expiration time in seconds of a key (-1: none, ftkv has no expiry; -2: absent).", cmdTTL},
		{"pttl", 2, []string{"readonly", "fast"}, 1, 1, 1, "generic", "Returns the expiration time in milliseconds of a key (-1: none; -2: absent).", cmdTTL},
		{"mget", -2, []string{"readonly", "fast"}, 1, -1, 1, "string", "Atomically returns the string values of one or more keys.", cmdMGet},
		{"mset", -3, []string{"write", "denyoom"}, 1, -1, 2, "string", "Sets the string values of one or more keys (not atomic across shards).", cmdMSet},
		{"append", 3, []string{"write", "denyoom", "fast"}, 1, 1, 1, "string", "Appends a string to the value of a key. Creates the key if it doesn't exist.", cmdAppend},
		{"strlen", 2, []string{"readonly", "fast"}, 1, 1, 1, "string", "Returns the length of a string value.", cmdStrlen},
		{"incr", 2, []string{"write", "denyoom", "fast"}, 1, 1, 1, "string", "Increments the integer value of a key by one.", cmdIncr},
		{"decr", 2, []string{"write", "denyoom", "fast"}, 1, 1, 1, "string", "Decrements the integer value of a key by one.", cmdDecr},
		{"incrby", 3, []string{"write", "denyoom", "fast"}, 1, 1, 1, "string", "Increments the integer value of a key by a number.", cmdIncrBy},
		{"decrby", 3, []string{"write", "denyoom", "fast"}, 1, 1, 1, "string", "Decrements a number from the integer value of a key.", cmdDecrBy},
		{"dbsize", 1, []string{"readonly", "fast"}, 0, 0, 0, "server", "Returns the number of keys in the database.", cmdDBSize},
		{"info", -1, []string{"loading", "stale"}, 0, 0, 0, "server", "Returns information and statistics about the server.", cmdInfo},
		{"select", 2, []string{"loading", "stale", "fast"}, 0, 0, 0, "connection", "Changes the selected database (only 0 exists).", cmdSelect},
		{"quit", -1, []string{"allow_busy", "fast"}, 0, 0, 0, "connection", "Closes the connection.", cmdQuit},
		{"auth", -2, []string{"noscript", "loading", "stale", "fast", "no-auth", "allow_busy"}, 0, 0, 0, "connection", "Authenticates the connection (AUTH [user] password: a user of the cluster).", cmdAuth},
		{"hello", -1, []string{"noscript", "loading", "stale", "fast"}, 0, 0, 0, "connection", "Handshakes with the server (RESP2 or RESP3).", cmdHello},
		{"client", -2, []string{"noscript", "loading", "stale"}, 0, 0, 0, "connection", "SETNAME, GETNAME, SETINFO, ID, INFO, LIST, KILL.", cmdClient},
		{"reset", 1, []string{"noscript", "loading", "stale", "fast", "no-auth", "allow_busy"}, 0, 0, 0, "connection", "Resets the connection: leaves MULTI, RESP2, no name, logged out (with users).", cmdReset},
		{"config", -2, []string{"admin", "noscript", "loading", "stale"}, 0, 0, 0, "server", "CONFIG GET: the gateway's settings as Redis names them.", cmdConfig},
		{"command", -1, []string{"loading", "stale"}, 0, 0, 0, "server", "Returns detailed information about all commands.", cmdCommand},
		{"ping", -1, []string{"fast"}, 0, 0, 0, "connection", "Returns the server's liveliness response.", cmdPing},
		{"echo", 2, []string{"fast"}, 0, 0, 0, "connection", "Returns the given string.", cmdEcho},
	}
	specByLC = make(map[string]*spec, len(specs))
	for _, sp := range specs {
		specByLC[sp.name] = sp
	}
}

// lookup finds a command by its name in any case; the name for metrics
// is "unknown" for a command not served (never the client's bytes).
func lookup(name []byte) (*spec, string) {
	var lc [16]byte
	if len(name) > len(lc) {
		return nil, "unknown"
	}
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lc[i] = c
	}
	if sp := specByLC[string(lc[:len(name)])]; sp != nil {
		return sp, sp.name
	}
	return nil, "unknown"
}

// isCmd reports whether arg is name (lowercase) in any case.
func isCmd(arg []byte, name string) bool {
	if len(arg) != len(name) {
		return false
	}
	for i, c := range arg {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	return true
}

// read returns key's value (found: present; an empty value is non-nil),
// within the fetch budget (session.fetch).
func read(ctx context.Context, s *session, key []byte) (v []byte, found bool, err error) {
	return s.fetch(ctx, key)
}

// swapLoop sets key to next(current) by compare-and-swap until a swap
// succeeds (the swap is the command's linearization point) or next
// declines (ok false: nothing written). It returns the value replaced
// (found false: the key was absent) and the value written.
func swapLoop(ctx context.Context, s *session, key []byte, next func(cur []byte, found bool) (v []byte, ok bool, err error)) (old []byte, found, swapped bool, err error) {
	cur, found, err := read(ctx, s, key)
	if err != nil {
		return nil, false, false, err
	}
	for {
		v, ok, err := next(cur, found)
		if err != nil || !ok {
			return cur, found, false, err
		}
		var expect []byte
		if found {
			expect = cur
		}
		done, now, nowFound, err := s.cas(ctx, key, expect, v)
		if err != nil {
			return nil, false, false, err
		}
		if done {
			return cur, found, true, nil
		}
		cur, found = now, nowFound
		if err := ctx.Err(); err != nil {
			return nil, false, false, err
		}
	}
}

func cmdGet(ctx context.Context, s *session, args [][]byte, out []byte) ([]byte, error) {
	if err := checkKey(args[1]); err != nil {
		return out, err
	}
	v, found, err := read(ctx, s, args[1])
	if err != nil {
		return out, err
	}
	return appendValue(out, v, found, s.proto), nil
}

func cmdSet(ctx context.Context, s *session, args [][]byte, out []byte) ([]byte, error) {
	var nx, xx, get bool
	for _, o := range args[3:] {
		switch {
		case isCmd(o, "nx") && !xx:
			nx = true
		case isCmd(o, "xx") && !nx:
			xx = true
		case isCmd(o, "get"):
			get = true
		case isCmd(o, "ex"), isCmd(o, "px"), isCmd(o, "exat"), isCmd(o, "pxat"), isCmd(o, "keepttl"):
			return out, errNoExpiry
		default:
			return out, errSyntax
		}
	}
	key, val := args[1], args[2]
	if err := checkKey(key); err != nil {
		return out, err
	}
	if err := checkValue(val); err != nil {
		return out, err
	}
	st := s.g.cfg.Store
	switch {
	case nx && !get:
		// Only the outcome is needed: no current value is fetched.
		swapped, err := st.CompareAndSwap(ctx, string(key), nil, val)
		switch {
		case err != nil:
			return out, err
		case swapped:
			return redcon.AppendOK(out), nil
		}
		return appendNull(out, s.proto), nil
	case nx:
		for {
			swapped, cur, found, err := s.cas(ctx, key, nil, val)
			switch {
			case err != nil:
				return out, err
			case swapped:
				return appendNull(out, s.proto), nil
			case found:
				// The command did not set it: the value at a read where
				// the key existed (where the command could not have).
				return appendValue(out, cur, true, s.proto), nil
			}
			// Deleted between the swap and the read: again.
			if err := ctx.Err(); err != nil {
				return out, err
			}
		}
	case !xx && !get:
		if err := st.Put(ctx, string(key), val); err != nil {
			return out, err
		}
		return redcon.AppendOK(out), nil
	}
	old, found, swapped, err := swapLoop(ctx, s, key, func(_ []byte, found bool) ([]byte, bool, error) {
		return val, found || !xx, nil
	})
	switch {
	case err != nil:
		return out, err
	case get:
		return appendValue(out, old, found, s.proto), nil
	case swapped:
		return redcon.AppendOK(out), nil
	}
	return appendNull(out, s.proto), nil
}

func cmdGetSet(ctx context.Context, s *session, args [][]byte, out []byte) ([]byte, error) {
	return cmdSet(ctx, s, [][]byte{args[0], args[1], args[2], []byte("get")}, out)
}

// cmdGetDel deletes the key only if its value is still the one read
// (compare-and-delete, the command's linearization point), and answers
// that value; it reads again when another write came between.
func cmdGetDel(ctx context.Context, s *session, args [][]byte, out []byte) ([]byte, error) {
	key := args[1]
	if err := checkKey(key); err != nil {
		return out, err
	}
	for {
		cur, found, err := read(ctx, s, key)
		switch {
		case err != nil:
			return out, err
		case !found:
			return appendNull(out, s.proto), nil
		}
		deleted, err := s.g.cfg.Store.CompareAndDelete(ctx, string(key), cur)
		switch {
		case err != nil:
			return out, err
		case deleted:
			return appendValue(out, cur, true, s.proto), nil
		}
		if err := ctx.Err(); err != nil {
			return out, err
		}
	}
}

func cmdSetNX(ctx context.Context, s *session, args [][]byte, out []byte) ([]byte, error) {
	if err := checkKey(args[1]); err != nil {
		return out, err
	}
	if err := checkValue(args[2]); err != nil {
		return out, err
	}
	swapped, err := s.g.cfg.Store.CompareAndSwap(ctx, string(args[1]), nil, args[2])
	if err != nil {
		return out, err
	}
	if swapped {
		return redcon.AppendInt(out, 1), nil
	}
	return redcon.AppendInt(out, 0), nil
}

// chunkKeys: DEL, EXISTS and MSET send their keys to the cluster this
// many at a time (MGET at most maxRun, its values held until answered):
// a command of a million keys made one batch of a million operations, and
// the gateway held 838 MB for its 16 MiB.
const chunkKeys = 1024

// checkKeys checks every key before a command touches the cluster: a
// bad key in a later part must not leave the earlier parts applied (a
// review: a DEL of 1,500 keys and one of 70 KiB deleted 1,024 of them,
// then answered the error).
func checkKeys(keys [][]byte) error {
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return err
		}
	}
	return nil
}

// present tells each of keys (checked by the caller) found or not, in
// order, chunkKeys at a time, each part with a timeout of its own. Values
// are not taken: a Get capped at one byte answers ErrTooLarge for a
// longer one, which only a present key has (EXISTS of a 1 MiB value named
// 300 times took 300 MiB).
func present(s *session, keys [][]byte, each func(key string, found bool)) error {
	ops := make([]client.BatchOp, 0, min(len(keys), chunkKeys))
	for len(keys) > 0 {
		n := min(len(keys), chunkKeys)
		ops = ops[:0]
		for _, k := range keys[:n] {
			ops = append(ops, client.BatchOp{Kind: client.BatchGet, Key: string(k), MaxValue: 1})
		}
		if err := s.g.batch(ops); err != nil {
			return err
		}
		for i := range ops {
			found := ops[i].Found
			if err := ops[i].Err; err != nil {
				if !errors.Is(err, client.ErrTooLarge) {
					return err
				}
				found = true
			}
			each(ops[i].Key, found)
		}
		keys = keys[n:]
	}
	return nil
}

// cmdDel deletes the keys present, chunkKeys at a time (each chunk read,
// then its present keys deleted), and counts them: a key named twice is
// counted once (in a later chunk it is absent by then), a key deleted by
// someone else between the two steps still counts.
func cmdDel(_ context.Context, s *session, args [][]byte, out []byte) ([]byte, error) {
	if err := checkKeys(args[1:]); err != nil {
		return out, err
	}
	var dels []client.BatchOp
	seen := map[string]bool{}
	total := 0
	flush := func() error {
		clear(seen)
		if len(dels) == 0 {
			return nil
		}
		if err := s.g.batch(dels); err != nil {
			return err
		}
		for _, op := range dels {
			if op.Err != nil {
				return op.Err
			}
		}
		total += len(dels)
		dels = dels[:0]
		return nil
	}
	keys := args[1:]
	for len(keys) > 0 {
		n := min(len(keys), chunkKeys)
		err := present(s, keys[:n], func(key string, found bool) {
			if found && !seen[key] {
				seen[key] = true
				dels = append(dels, client.BatchOp{Kind: client.BatchDelete, Key: key})
			}
		})
		if err == nil {
			err = flush()
		}
		if err != nil {
			return out, err
		}
		keys = keys[n:]
	}
	return redcon.AppendInt(out, int64(total)), nil
}

// cmdType answers "string" for a key present (every value is one) and
// "none" for one absent.
func cmdType(_ context.Context, s *session, args [][]byte, out []byte) ([]byte, error) {
	found, err := presentOne(s, args[1])
	switch {
	case err != nil:
		return out, err
	case found:
		return redcon.AppendString(out, "string"), nil
	}
	return redcon.AppendString(out, "none"), nil
}

// cmdTTL (TTL and PTTL) answers -1 for a key present (ftkv has no
// expiry) and -2 for one absent, as Redis does.
func cmdTTL(_ context.Context, s *session, args [][]byte, out []byte) ([]byte, error) {
	found, err := presentOne(s, args[1])
	switch {
	case err != nil:
		return out, err
	case found:
		return redcon.AppendInt(out, -1), nil
	}
	return redcon.AppendInt(out, -2), nil
}

// presentOne reports whether key is present.
func presentOne(s *session, key []byte) (found bool, err error) {
	if err := checkKeys([][]byte{key}); err != nil {
		return false, err
	}
	err = present(s, [][]byte{key}, func(_ string, f bool) { found = f })
	return found, err
}

// cmdExists counts the keys present, a key each time it is named.
func cmdExists(_ context.Context, s *session, args [][]byte, out []byte) ([]byte, error) {
	if err := checkKeys(args[1:]); err != nil {
		return out, err
	}
	n := 0
	err := present(s, args[1:], func(_ string, found bool) {
		if found {
			n++
		}
	})
	if err != nil {
		return out, err
	}
	return redcon.AppendInt(out, int64(n)), nil
}

// cmdMGet answers the keys' values in order, reading them maxRun at a
// time, each capped at capFloor (a longer value is read again alone: the
// capped read answers only that it is longer), and writes its answer as
// it grows, waiting while the client's unread answers are at their
// limits, as a pipeline's GETs do. Once part of its answer is written, a
// failure can no longer be answered: the connection is closed
// (answerCut). Each read has the command timeout of its own. (Its whole
// answer was built first: a 9 KB command naming a 1 MiB value 300 times
// made the gateway hold 600 MiB, and an MGET of 100 such values was cut
// by output_hard_limit, however fast its client read. Batches sized by
// the largest value seen went one key at a time after one large value: a
// review's MGET of 20,000 small keys took 1.16 s after a 1 MiB one, 49 ms
// before.)
func cmdMGet(_ context.Context, s *session, args [][]byte, out []byte) ([]byte, error) {
	keys := args[1:]
	if err := checkKeys(keys); err != nil {
		return out, err
	}
	out = redcon.AppendArray(out, len(keys))
	sent := false
	ops := make([]client.BatchOp, 0, min(len(keys), maxRun))
	for len(keys) > 0 {
		n := min(len(keys), maxRun)
		ops = ops[:0]
		for _, k := range keys[:n] {
			ops = append(ops, client.BatchOp{Kind: client.BatchGet, Key: string(k), MaxValue: capFloor})
		}
		err := s.g.batch(ops)
		for i := 0; err == nil && i < len(ops); i++ {
			op := &ops[i]
			if errors.Is(op.Err, client.ErrTooLarge) {
				alone := []client.BatchOp{{Kind: client.BatchGet, Key: op.Key}}
				if !s.hold(maxValue + 16) {
					return nil, answerCut{errGone}
				}
				err = s.g.batch(alone)
				s.unhold(maxValue + 16)
				*op = alone[0]
			}
			if err == nil {
				err = op.Err
			}
			if err == nil {
				out = appendValue(out, op.Value, op.Found, s.proto)
				op.Value = nil
				if len(out) >= flushAt && (i+1 < len(ops) || n < len(keys)) {
					s.flush(out, false)
					out, sent = nil, true
					if !s.waitRoom() {
						return nil, answerCut{errors.New("connection closed")}
					}
				}
			}
		}
		if err != nil {
			if sent {
				return out, answerCut{err}
			}
			return out, err
		}
		keys = keys[n:]
	}
	return out, nil
}

// answerCut is a command's failure after part of its answer was written:
// the connection is closed (one).
type answerCut struct{ err error }

func (e answerCut) Error() string { return e.err.Error() }
func (e answerCut) Unwrap() error { return e.err }

// cmdMSet writes the pairs, chunkKeys at a time, once every key and value
// is checked: each write is exactly-once and linearizable on its own, the
// whole is not atomic (a failure leaves the pairs written before it). A
// key given twice takes its last value.
func cmdMSet(_ context.Context, s *session, args [][]byte, out []byte) ([]byte, error) {
	if len(args)%2 != 1 {
		return out, wrongArity("mset")
	}
	for i := 1; i < len(args); i += 2 {
		if err := checkKey(args[i]); err != nil {
			return out, err
		}
		if err := checkValue(args[i+1]); err != nil {
			return out, err
		}
	}
	// chunkKeys pairs at a time, one after the other: a key named again
	// in a later chunk is written after the earlier value.
	last := map[string]int{}
	var ops []client.BatchOp
	for pairs := args[1:]; len(pairs) > 0; {
		n := min(len(pairs), 2*chunkKeys)
		clear(last)
		ops = ops[:0]
		for i := 0; i < n; i += 2 {
			op := client.BatchOp{Kind: client.BatchPut, Key: string(pairs[i]), Value: pairs[i+1]}
			if j, ok := last[op.Key]; ok {
				ops[j] = op
				continue
			}
			last[op.Key] = len(ops)
			ops = append(ops, op)
		}
		if err := s.g.batch(ops); err != nil {
			return out, err
		}
		for _, op := range ops {
			if op.Err != nil {
				return out, op.Err
			}
		}
		pairs = pairs[n:]
	}
	return redcon.AppendOK(out), nil
}

// cmdAppend is a compare-and-swap loop (read, swap in the concatenation),
// not the cluster's APPEND: the length it answers is then exactly the
// length its own write produced, and the command is linearizable.
func cmdAppend(ctx context.Context, s *session, args [][]byte, out []byte) ([]byte, error) {
	if err := checkKey(args[1]); err != nil {
		return out, err
	}
	var n int
	_, _, _, err := swapLoop(ctx, s, args[1], func(cur []byte, _ bool) ([]byte, bool, error) {
		if len(cur)+len(args[2]) > maxValue {
			return nil, false, errMaxSize
		}
		v := make([]byte, 0, len(cur)+len(args[2]))
		v = append(append(v, cur...), args[2]...)
		n = len(v)
		return v, true, nil
	})
	if err != nil {
		return out, err
	}
	return redcon.AppendInt(out, int64(n)), nil
}

func cmdStrlen(ctx context.Context, s *session, args [][]byte, out []byte) ([]byte, error) {
	if err := checkKey(args[1]); err != nil {
		return out, err
	}
	v, _, err := read(ctx, s, args[1])
	if err != nil {
		return out, err
	}
	return redcon.AppendInt(out, int64(len(v))), nil
}

// parseInt reads an integer as Redis's string2ll does: canonical decimal
// only (no sign but '-', no leading zeros, no spaces).
func parseInt(b []byte) (int64, bool) {
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || strconv.FormatInt(n, 10) != string(b) {
		return 0, false
	}
	return n, true
}

// incrBy adds delta to key's integer value by compare-and-swap (the swap
// is its linearization point); an absent key counts as 0.
func incrBy(ctx context.Context, s *session, key []byte, delta int64, out []byte) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return out, err
	}
	var n int64
	_, _, _, err := swapLoop(ctx, s, key, func(cur []byte, found bool) ([]byte, bool, error) {
		var v int64
		if found {
			var ok bool
			if v, ok = parseInt(cur); !ok {
				return nil, false, errNotInteger
			}
		}
		if delta > 0 && v > math.MaxInt64-delta || delta < 0 && v < math.MinInt64-delta {
			return nil, false, errOverflow
		}
		n = v + delta
		return strconv.AppendInt(nil, n, 10), true, nil
	})
	if err != nil {
		return out, err
	}
	return redcon.AppendInt(out, n), nil
}

func cmdIncr(ctx context.Context, s *session, args [][]byte, out []byte) ([]byte, error) {
	return incrBy(ctx, s, args[1], 1, out)
}

func cmdDecr(ctx context.Context, s *session, args [][]byte, out []byte) ([]byte, error) {
	return incrBy(ctx, s, args[1], -1, out)
}

func cmdIncrBy(ctx context.Context, s *session, args [][]byte, out []byte) ([]byte, error) {
	d, ok := parseInt(args[2])
	if !ok {
		return out, errNotInteger
	}
	return incrBy(ctx, s, args[1], d, out)
}

func cmdDecrBy(ctx context.Context, s *session, args [][]byte, out []byte) ([]byte, error) {
	d, ok := parseInt(args[2])
	if !ok {
		return out, errNotInteger
	}
	if d == math.MinInt64 {
		return out, Error("ERR decrement would overflow")
	}
	return incrBy(ctx, s, args[1], -d, out)
}

func cmdSelect(_ context.Context, _ *session, args [][]byte, out []byte) ([]byte, error) {
	n, ok := parseInt(args[1])
	switch {
	case !ok:
		return out, errNotInteger
	case n != 0:
		return out, errDBIndex
	}
	return redcon.AppendOK(out), nil
}

func cmdQuit(_ context.Context, s *session, _ [][]byte, out []byte) ([]byte, error) {
	s.quit.Store(true)
	return redcon.AppendOK(out), nil
}

func cmdPing(_ context.Context, s *session, args [][]byte, out []byte) ([]byte, error) {
	switch len(args) {
	case 1:
		return redcon.AppendString(out, "PONG"), nil
	case 2:
		return redcon.AppendBulk(out, args[1]), nil
	}
	return out, wrongArity("ping")
}

func cmdEcho(_ context.Context, _ *session, args [][]byte, out []byte) ([]byte, error) {
	return redcon.AppendBulk(out, args[1]), nil
}

func cmdClient(_ context.Context, s *session, args [][]byte, out []byte) ([]byte, error) {
	sub := args[1]
	switch {
	case isCmd(sub, "setname") && len(args) == 3:
		if bytes.ContainsFunc(args[2], func(r rune) bool { return r <= ' ' || r > '~' }) {
			return out, errClientName
		}
		s.name = string(args[2])
		return redcon.AppendOK(out), nil
	case isCmd(sub, "getname") && len(args) == 2:
		if s.name == "" {
			return appendNull(out, s.proto), nil
		}
		return redcon.AppendBulkString(out, s.name), nil
	case isCmd(sub, "id") && len(args) == 2:
		return redcon.AppendInt(out, s.id), nil
	case isCmd(sub, "info") && len(args) == 2:
		var b strings.Builder
		s.clientLine(&b, s, "client|info", time.Now())
		return appendVerbatim(out, b.String(), s.proto), nil
	case isCmd(sub, "list"):
		if s.g.logins != nil && !s.role().IsAdmin() {
			// Other clients' addresses and names: an admin's (Redis's
			// CLIENT LIST is @admin).
			return out, Error("NOPERM User " + s.user + " has no permissions to run the 'client|list' command")
		}
		return s.clientList(args[2:], out)
	case isCmd(sub, "kill") && len(args) >= 3:
		if s.g.logins != nil && !s.role().IsAdmin() {
			return out, Error("NOPERM User " + s.user + " has no permissions to run the 'client|kill' command")
		}
		return s.clientKill(args[2:], out)
	case isCmd(sub, "setinfo") && len(args) == 4:
		i := slices.IndexFunc(libAttrs[:], func(a string) bool { return isCmd(args[2], a) })
		switch {
		case i < 0:
			return out, Error("ERR Unrecognized option '" + cut(args[2], 128) + "'")
		case bytes.ContainsFunc(args[3], func(r rune) bool { return r < '!' || r > '~' }):
			// (CLIENT LIST prints it: no line or field of its own may
			// be forged. Redis 7.2's check and words.)
			return out, Error("ERR " + libAttrs[i] + " cannot contain spaces, newlines or special characters.")
		}
		s.lib[i] = string(args[3])
		return redcon.AppendOK(out), nil
	case isCmd(sub, "help") && len(args) == 2:
		return appendHelp(out, "CLIENT", []string{
			"GETNAME", "    Return the name of the current connection.",
			"ID", "    Return the ID of the current connection.",
			"INFO", "    Return information about the current client connection.",
			"KILL <ip:port>", "    Kill connection made from <ip:port>.",
			"KILL <option> <value> [<option> <value> [...]]", "    Kill connections. Options are:",
			"    * ADDR (<ip:port>|<unixsocket>:0)", "      Kill connections made from the specified address",
			"    * LADDR (<ip:port>|<unixsocket>:0)", "      Kill connections made to specified local address",
			"    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)", "      Kill connections by type.",
			"    * USER <username>", "      Kill connections authenticated by <username>.",
			"    * SKIPME (YES|NO)", "      Skip killing current connection (default: yes).",
			"    * ID <client-id>", "      Kill connections by client id.",
			"LIST [options ...]", "    Return information about client connections. Options:",
			"    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)", "      Return clients of specified type.",
			"    * ID id [id ...]", "      Return clients of specified IDs only.",
			"SETINFO <option> <value>", "    Set client meta attr. Options are: LIB-NAME, LIB-VER.",
			"SETNAME <connection-name>", "    Assign the name <connection-name> to the current connection.",
		}), nil
	case slices.ContainsFunc([]string{"setname", "getname", "id", "info", "setinfo", "help", "kill"}, func(n string) bool { return isCmd(sub, n) }):
		return out, Error("ERR wrong number of arguments for 'client|" + string(bytes.ToLower(sub)) + "' command")
	}
	return out, unknownSubcommand("client", sub)
}

// cmdNull is CLIENT LIST's last command of a session that ran none, or
// whose last was unknown (Redis's words).
var cmdNull = "NULL"

// libAttrs are CLIENT SETINFO's options, in session.lib's order.
var libAttrs = [2]string{"lib-name", "lib-ver"}

// clientMeta is the part of a session's state CLIENT LIST shows that its
// worker changes, as of the session's last connection command.
type clientMeta struct {
	name, user string
	lib        [2]string
	proto      int
	multi      bool
}

// publish makes the worker's state visible to CLIENT LIST (on the
// session's worker).
func (s *session) publish() { s.meta.Store(s.metaNow()) }

// metaNow is the worker's state as CLIENT LIST shows it (on the
// session's worker).
func (s *session) metaNow() *clientMeta {
	return &clientMeta{name: s.name, user: s.user, lib: s.lib, proto: s.proto, multi: s.multi}
}

// clientLine is s's line of CLIENT INFO and CLIENT LIST, in Redis's
// format, with the fields the gateway knows: the buffer and memory fields
// Redis adds (qbuf, omem, tot-mem, …) are left out rather than made up.
// cmd is the command that runs now on the session asking, which is idle
// 0 as in Redis; any other session shows its last command and idle time.
func (s *session) clientLine(b *strings.Builder, asker *session, cmd string, now time.Time) {
	m := s.meta.Load()
	if s == asker {
		m = s.metaNow()
	}
	flags, user := "N", shownUser(m.user)
	if m.multi {
		flags = "x" // (a refused MULTI is open: its commands are refused)
	}
	idle, multi := time.Duration(0), -1
	if m.multi {
		multi = 0 // (commands are refused, never queued)
	}
	if s != asker {
		cmd = cmdNull
		if last := s.lastCmd.Load(); last != nil {
			cmd = *last
		}
		if at := s.lastAt.Load(); at != 0 {
			idle = now.Sub(time.Unix(0, at))
		} else {
			idle = now.Sub(s.opened)
		}
	}
	fmt.Fprintf(b, "id=%d addr=%s laddr=%s fd=%d name=%s age=%d idle=%d flags=%s db=0 sub=0 psub=0 ssub=0 multi=%d watch=0 events=r cmd=%s user=%s redir=-1 resp=%d lib-name=%s lib-ver=%s\n",
		s.id, addrString(s.remote), addrString(s.local), s.fd, m.name, int(now.Sub(s.opened).Seconds()), int(max(idle, 0).Seconds()), flags, multi, cmd, user, m.proto, m.lib[0], m.lib[1])
}

// shownUser is the user CLIENT LIST shows and CLIENT KILL USER matches:
// the one logged in as, or default (no users, or not logged in yet).
func shownUser(u string) string {
	if u == "" {
		return "default"
	}
	return u
}

// clientList answers CLIENT LIST [TYPE type] [ID id …]: every open
// session (ftkv's are all of type normal), by id.
func (s *session) clientList(args [][]byte, out []byte) ([]byte, error) {
	var ids map[int64]bool
	normal := true
	switch {
	case len(args) == 0:
	case len(args) == 2 && isCmd(args[0], "type"):
		switch t := strings.ToLower(string(args[1])); t {
		case "normal":
		case "master", "replica", "slave", "pubsub":
			normal = false
		default:
			return out, Error("ERR Unknown client type '" + cut(args[1], 128) + "'")
		}
	case len(args) >= 2 && isCmd(args[0], "id"):
		ids = map[int64]bool{}
		for _, a := range args[1:] {
			id, ok := parseInt(a)
			if !ok || id <= 0 {
				return out, Error("ERR Invalid client ID")
			}
			ids[id] = true
		}
	default:
		return out, errSyntax // (one of TYPE and ID, as in Redis 7.0)
	}
	var all []*session
	s.g.sessions.Range(func(_, v any) bool {
		o := v.(*session)
		if normal && (ids == nil || ids[o.id]) {
			all = append(all, o)
		}
		return true
	})
	slices.SortFunc(all, func(a, b *session) int { return cmp.Compare(a.id, b.id) })
	var b strings.Builder
	now := time.Now()
	for _, o := range all {
		o.clientLine(&b, s, "client|list", now)
	}
	return appendVerbatim(out, b.String(), s.proto), nil
}

// clientKill answers CLIENT KILL ip:port (+OK, or an error when no
// connection comes from there) and CLIENT KILL <filter> <value> … (how
// many connections it closed), with Redis 7.0's filters and words. The
// connections are closed at once; the commands they sent and that did
// not run yet never run (as a connection the gateway closes for any
// other reason). The asking connection is closed after its answer, by
// the old form or with SKIPME no.
func (s *session) clientKill(args [][]byte, out []byte) ([]byte, error) {
	if s.closed.Load() {
		// Its client is gone (its writes still run): an address it
		// names may be another connection's by now (a review: the
		// port's next user was closed).
		return out, Error("ERR connection closed")
	}
	if len(args) == 1 {
		addr := string(args[0])
		o := s.findSession(func(o *session) bool { return addrString(o.remote) == addr })
		if o == nil {
			return out, Error("ERR No such client")
		}
		s.kill(o)
		return redcon.AppendOK(out), nil
	}
	var (
		id, addr, laddr, user *string
		normal, skipme        = true, true
	)
	for i := 0; i < len(args); i += 2 {
		if i+1 == len(args) {
			return out, errSyntax // (a filter without its value: Redis's words, in its order)
		}
		v := string(args[i+1])
		switch f := args[i]; {
		case isCmd(f, "id"):
			if n, ok := parseInt(args[i+1]); !ok || n <= 0 {
				return out, Error("ERR client-id should be greater than 0")
			}
			id = &v
		case isCmd(f, "type"):
			switch strings.ToLower(v) {
			case "normal":
				normal = true
			case "master", "replica", "slave", "pubsub":
				normal = false
			default:
				return out, Error("ERR Unknown client type '" + cut(args[i+1], 128) + "'")
			}
		case isCmd(f, "addr"):
			addr = &v
		case isCmd(f, "laddr"):
			laddr = &v
		case isCmd(f, "user"):
			if v == "" || s.g.logins == nil && v != "default" {
				// Without users, every connection is default's. With
				// them, the names are the authenticator's: a name
				// nobody logged in with matches nobody, and default
				// the connections not logged in (as CLIENT LIST shows).
				return out, Error("ERR No such user '" + cut(args[i+1], 128) + "'")
			}
			user = &v
		case isCmd(f, "skipme"):
			switch strings.ToLower(v) {
			case "yes":
				skipme = true
			case "no":
				skipme = false
			default:
				return out, errSyntax
			}
		default:
			return out, errSyntax
		}
	}
	var ids []*session
	if normal {
		s.g.sessions.Range(func(_, v any) bool {
			o := v.(*session)
			switch {
			case o == s && skipme, o.closed.Load(),
				id != nil && strconv.FormatInt(o.id, 10) != *id,
				addr != nil && addrString(o.remote) != *addr,
				laddr != nil && addrString(o.local) != *laddr,
				user != nil && shownUser(o.meta.Load().user) != *user:
				return true
			}
			ids = append(ids, o)
			return true
		})
	}
	for _, o := range ids {
		s.kill(o)
	}
	return redcon.AppendInt(out, int64(len(ids))), nil
}

// findSession returns an open session match accepts, or nil.
func (s *session) findSession(match func(*session) bool) (found *session) {
	s.g.sessions.Range(func(_, v any) bool {
		if o := v.(*session); !o.closed.Load() && match(o) {
			found = o
		}
		return found == nil
	})
	return found
}

// kill closes o (CLIENT KILL), or, when o is the asking session, has it
// closed once its answer is written.
func (s *session) kill(o *session) {
	if o == s {
		s.closeAfter = true
		s.quit.Store(true) // (nothing read after it runs, as after QUIT)
		return
	}
	s.g.log.Info().Int64("id", o.id).Str("remote", addrString(o.remote)).Int64("by", s.id).Msg("connection closed by CLIENT KILL")
	_ = o.c.Close()
}

// addrString is a's host:port, or "" without one.
func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// cmdReset resets the connection as Redis's RESET does, as far as the
// gateway has the state: an open (refused) MULTI is left, the protocol
// is RESP2 again, the name is cleared (the library's name and version
// stay, as in Redis) and, with users, the connection is logged out.
func cmdReset(_ context.Context, s *session, _ [][]byte, out []byte) ([]byte, error) {
	s.multi, s.proto, s.name = false, 2, ""
	if s.g.logins != nil {
		s.user = ""
		s.authRole.Store(int32(auth.RoleNone))
		s.lim.UnauthedAsync() // (the login timeout and eviction apply again)
	}
	return redcon.AppendString(out, "RESET"), nil
}

// appendHelp answers a HELP subcommand as Redis does: its lines as simple
// strings, after a first line naming the command and last HELP's own.
func appendHelp(out []byte, cmd string, lines []string) []byte {
	out = redcon.AppendArray(out, len(lines)+3)
	out = redcon.AppendString(out, cmd+" <subcommand> [<arg> [value] [opt] ...]. Subcommands are:")
	for _, l := range lines {
		out = redcon.AppendString(out, l)
	}
	out = redcon.AppendString(out, "HELP")
	return redcon.AppendString(out, "    Print this help.")
}
