package wire

import (
	"encoding/binary"
	"fmt"
)

// Version is the protocol version carried in every frame. A peer that sees
// another version refuses the frame with StatusBadRequest.
const Version = 1

// HeaderSize is the fixed size of every frame's header, length prefix included.
const HeaderSize = 60

// Default limits. They are enforced by servers on requests and by
// the client before sending; MaxFrame bounds what a decoder will ever buffer.
const (
	MaxKey   = 64 << 10 // 64 KiB
	MaxValue = 1 << 20  // 1 MiB
	// MaxFrame is the largest frame body (everything after the length prefix)
	// a decoder accepts: one maximal key plus two maximal values plus the
	// header, rounded up. Anything larger is refused before allocating.
	MaxFrame = 4 << 20
)

// Op says what a frame asks for or answers.
type Op uint8

// Operations. Client operations answer with the same Op and a Status.
const (
	OpInvalid   Op = iota
	OpGet          // Key -> Value
	OpPut          // Key, Value
	OpDelete       // Key
	OpCAS          // Key, Aux = old (FlagOldPresent), Value = new
	OpAppend       // Key, Value
	OpView         // client/server -> coordinator: ask for the view; answer Value = EncodeView
	OpStatus       // client -> coordinator: answer Value = JSON status document
	OpHeartbeat    // server -> coordinator: Client = server id, Value = EncodeHeartbeat
	OpSetView      // coordinator -> server: Value = EncodeView; answer once applied
	OpReplHello    // primary -> secondary: opens a replication link at Epoch
	OpRepl         // primary -> secondary: one replicated write (ID = log index = version)
	OpReplAck      // secondary -> primary: ID = highest applied log index
	OpShutdown     // coordinator -> server: dump tables and exit; answer after the dump
	OpHello        // authentication: Value = cluster secret (control links) or password (client ports, Key = user)
	OpSeed         // primary -> re-seeding secondary: Value = packed entries (AppendSeedEntry)
	OpFreeze       // coordinator -> primary: Seq = shard; stop writes, drain, answer Seq = last index
	OpSetCoord     // coordinator -> server: Value = the coordinator's servers address
	OpPing         // primary -> secondary on the replication link: lease renewal
	// OpCAD: compare-and-delete: Key, Aux = old (FlagOldPresent; absent:
	// only if the key is absent, which deletes nothing). A match deletes
	// the key; answered as OpCAS is (FlagNoCurrent too). An op of its own,
	// not a flag on OpCAS: a server that predates it refuses the frame
	// rather than taking it for a swap to the empty value.
	OpCAD
	opMax
)

var opNames = [...]string{"INVALID", "GET", "PUT", "DELETE", "CAS", "APPEND", "VIEW", "STATUS",
	"HEARTBEAT", "SETVIEW", "REPLHELLO", "REPL", "REPLACK", "SHUTDOWN", "HELLO", "SEED", "FREEZE",
	"SETCOORD", "PING", "CAD"}

func (o Op) String() string {
	if int(o) < len(opNames) {
		return opNames[o]
	}
	return fmt.Sprintf("OP(%d)", uint8(o))
}

// IsWrite reports whether o changes a key.
func (o Op) IsWrite() bool {
	return o == OpPut || o == OpDelete || o == OpCAS || o == OpAppend || o == OpCAD
}

// Status is the outcome carried by an answer frame.
type Status uint8

// Statuses. Requests carry StatusOK (0).
const (
	StatusOK          Status = iota
	StatusNotFound           // key absent
	StatusMismatch           // CAS: current value differs; Value = current (FlagOldPresent if present)
	StatusWrongServer        // this server does not own the key at Epoch; Epoch = server's current epoch
	StatusStaleEpoch         // request's epoch is older/newer than the server's; Epoch = current
	StatusUnavailable        // the shard has no live copy or is frozen; retry later
	StatusTooLarge           // key or value over the limit
	StatusBadRequest         // malformed or unauthenticated frame
	StatusError              // internal error; Value = message
	// StatusSessionExpired: the write may be a retry of one whose
	// outcome the server no longer remembers (its client's session
	// expired): it was not applied now, and whether the first attempt
	// was is unknown. Value = message.
	StatusSessionExpired
	// StatusNotLeader: the coordinator that answered is a follower of
	// its group; Value = the leader's address on the same port kind
	// (empty when no leader is known): ask it, or the next coordinator.
	StatusNotLeader
	// StatusUnauthenticated: on a client port of a cluster with users,
	// the connection has not authenticated (no HELLO, an unknown user, a
	// wrong password, too many failed attempts): Value says which; the
	// connection is closed after it.
	StatusUnauthenticated
	// StatusForbidden: the authenticated user's role does not allow the
	// request (a read user writing, a non-admin stopping the cluster);
	// Value = message. The connection stays open.
	StatusForbidden
	statusMax
)

var statusNames = [...]string{"OK", "NOT_FOUND", "MISMATCH", "WRONG_SERVER", "STALE_EPOCH",
	"UNAVAILABLE", "TOO_LARGE", "BAD_REQUEST", "ERROR", "SESSION_EXPIRED", "NOT_LEADER", "UNAUTHENTICATED",
	"FORBIDDEN"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("STATUS(%d)", uint8(s))
}

// ShutdownConfirm is the value of a client's SHUTDOWN order on the
// coordinator's client port (bin/client shutdown): an order without it is
// refused, so that no stray or garbage frame stops the cluster.
const ShutdownConfirm = "stop the whole cluster"

// HelloProbe, as a client's HELLO's Seq (no user, no password), asks a
// client port whether it takes HELLO in this connection's clear text,
// before a password is sent there: a port with TLS answers a plaintext
// connection with its refusal (tlsconf.WirePlaintext), any other with an
// OK that authenticates nothing.
const HelloProbe = 1

// Flags.
const (
	// FlagOldPresent: for OpCAS requests, Aux holds the expected old value
	// (absent means "only if the key is absent"); for MISMATCH answers, Value
	// holds the current value (absent means the key is absent).
	FlagOldPresent uint8 = 1 << 0
	// FlagDelete: for OpRepl, the write deletes the key.
	FlagDelete uint8 = 1 << 1
	// FlagNoop: for OpRepl, the entry changes no key (it only carries a
	// deduplication record, e.g. a CAS that did not match).
	FlagNoop uint8 = 1 << 2
	// FlagSecondary: reserved (for a write aimed at the receiver's
	// secondary table). No sender sets it and receivers ignore it; the bit
	// keeps its value so it is never reused for something else.
	FlagSecondary uint8 = 1 << 3
	// FlagSeedDone: the last OpSeed frame of a snapshot.
	FlagSeedDone uint8 = 1 << 4
	// FlagSeed: an OpReplAck that acknowledges OpSeed frame Seq.
	FlagSeed uint8 = 1 << 5
	// FlagPing: an OpReplAck that answers OpPing Seq.
	FlagPing uint8 = 1 << 6
	// FlagRetry: on a client write, this is not the write's first
	// attempt (the same bit as FlagPing, which only OpReplAck carries).
	FlagRetry uint8 = 1 << 6
	// FlagDedup: an OpSeed frame whose Value holds deduplication records
	// (AppendDedupRecord) instead of table entries.
	FlagDedup uint8 = 1 << 7

	// Op-specific meanings of the same bits:

	// FlagFullSeed (= FlagSeed): on a secondary's answer to OpReplHello,
	// its copy is not the primary's (a restart): it dropped it and waits
	// for a full re-seeding before the link counts.
	FlagFullSeed = FlagSeed
	// FlagResync (= FlagNoop): on a re-seeding secondary's answer to
	// OpReplHello, Seq is the log index of the complete copy it recovered
	// from its log: the primary sends the writes after it from its own
	// log (partial resync), or FlagSeedReset and a full re-seeding.
	FlagResync = FlagNoop
	// FlagSeedReset (= FlagDelete): an OpSeed frame whose Value is the
	// 8-byte base of the full re-seeding that follows: the secondary drops
	// its copy (the partial resync it offered was refused).
	FlagSeedReset = FlagDelete
	// FlagValueCap (= FlagDelete): on an OpGet request, Seq is the largest
	// value the client takes: a longer one is answered TOO_LARGE, without
	// the value (a front door that must bound what a batch of GETs brings
	// back before it knows their sizes).
	FlagValueCap = FlagDelete
	// FlagNoCurrent (= FlagDelete): on an OpCAS request, a MISMATCH answer
	// carries no current value; FlagOldPresent still says whether the key
	// exists (a caller that only needs the outcome, e.g. SETNX, need not
	// bring back 1 MiB).
	FlagNoCurrent = FlagDelete
)

// AppendDedupRecord appends one remembered write outcome: 8 client, 8 seq,
// 1 status, 1 flags, 4 value length, value. A record with status
// StatusSessionExpired says instead that the client's writes up to seq
// were forgotten (its session expired).
func AppendDedupRecord(dst []byte, client, seq uint64, st Status, flags uint8, value []byte) []byte {
	dst = binary.BigEndian.AppendUint64(dst, client)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	dst = append(dst, byte(st), flags)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(value)))
	return append(dst, value...)
}

// NextDedupRecord decodes the first record of b and returns the rest.
func NextDedupRecord(b []byte) (client, seq uint64, st Status, flags uint8, value, rest []byte, err error) {
	if len(b) < 22 {
		return 0, 0, 0, 0, nil, nil, fmt.Errorf("%w: truncated dedup record", ErrMalformed)
	}
	client = binary.BigEndian.Uint64(b)
	seq = binary.BigEndian.Uint64(b[8:])
	st, flags = Status(b[16]), b[17]
	vl := uint64(binary.BigEndian.Uint32(b[18:]))
	b = b[22:]
	if uint64(len(b)) < vl {
		return 0, 0, 0, 0, nil, nil, fmt.Errorf("%w: truncated dedup record", ErrMalformed)
	}
	return client, seq, st, flags, b[:vl:vl], b[vl:], nil
}

// AppendSeedEntry appends one snapshot entry (key, value, version) to dst:
// 4 key length, key, 4 value length, value, 8 version.
func AppendSeedEntry(dst, key, value []byte, ver uint64) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(key)))
	dst = append(dst, key...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(value)))
	dst = append(dst, value...)
	return binary.BigEndian.AppendUint64(dst, ver)
}

// AppendSeedEntryString is AppendSeedEntry for a string key (no copy of
// the key into a temporary slice).
func AppendSeedEntryString(dst []byte, key string, value []byte, ver uint64) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(key)))
	dst = append(dst, key...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(value)))
	dst = append(dst, value...)
	return binary.BigEndian.AppendUint64(dst, ver)
}

// NextSeedEntry decodes the first snapshot entry of b and returns the rest.
// Slices alias b.
func NextSeedEntry(b []byte) (key, value []byte, ver uint64, rest []byte, err error) {
	if len(b) < 4 {
		return nil, nil, 0, nil, fmt.Errorf("%w: truncated seed entry", ErrMalformed)
	}
	kl := uint64(binary.BigEndian.Uint32(b))
	b = b[4:]
	if uint64(len(b)) < kl+4 {
		return nil, nil, 0, nil, fmt.Errorf("%w: truncated seed entry", ErrMalformed)
	}
	key, b = b[:kl:kl], b[kl:]
	vl := uint64(binary.BigEndian.Uint32(b))
	b = b[4:]
	if uint64(len(b)) < vl+8 {
		return nil, nil, 0, nil, fmt.Errorf("%w: truncated seed entry", ErrMalformed)
	}
	value, b = b[:vl:vl], b[vl:]
	ver = binary.BigEndian.Uint64(b)
	return key, value, ver, b[8:], nil
}

// Frame is one decoded message. Byte slices alias the decoded buffer: copy
// what must outlive it.
//
// Layout (all integers big-endian):
//
//	off size field
//	0   4    Length: bytes after this field (HeaderSize-4+len(Key)+len(Value)+len(Aux))
//	4   1    Version
//	5   1    Op
//	6   1    Status
//	7   1    Flags
//	8   8    ID      request id, echoed by the answer
//	16  8    Epoch   view epoch the sender believes in
//	24  8    Client  see the table below
//	32  8    Seq     see the table below
//	40  8    Floor   see the table below
//	48  4    len(Key)
//	52  4    len(Value)
//	56  4    len(Aux)
//	60  ...  Key, Value, Aux
//
// What each op puts in each field ("-": unused, zero or empty; "answer":
// the answer to the row above):
//
//	op          from -> to      ID            Epoch          Client        Seq            Floor             Key Value               Aux
//	GET         client -> srv   request id    client's view  -             -              -                 key -                   -
//	  answer                    request id    server's view  -             -              -                 -   value               -
//	PUT DELETE  client -> srv   request id    client's view  client id     client's seq   client's floor    key PUT APPEND CAS: new CAS: old
//	CAS APPEND                                               (0: no dedup)
//	  answer                    request id    refusals: view -             -              -                 -   MISMATCH: current   -
//	VIEW STATUS client -> coord request id    -              -             -              -                 -   -                   -
//	  answer                    request id    coord's view   -             -              -                 -   view / JSON         -
//	HELLO       srv/coord ->    request id    -              hb: server id -              -                 -   cluster secret      -
//	HELLO       client -> port  request id    -              -             -              -                 user password         -
//	  answer                    request id    -              -             -              -                 -   OK: role name       -
//	HEARTBEAT   srv -> coord    heartbeat no. view applied   server id     incarnation    -                 -   EncodeHeartbeat     -
//	  answer                    heartbeat no. coord's view   -             -              -                 -   -                   -
//	SETVIEW     coord -> srv    request id    view's epoch   -             -              -                 -   EncodeView          -
//	  answer                    request id    view's epoch   -             -              -                 -   -                   -
//	SETCOORD    coord -> srv    request id    term << 32*    -             -              -                 -   coord address       -
//	SHUTDOWN    coord -> srv    request id    -              -             -              -                 -   -                   -
//	FREEZE      coord -> srv    request id    -              -             shard          -                 -   -                   -
//	  answer                    request id    -              -             last index     -                 -   -                   -
//	SEED order  coord -> srv    request id    -              -             shard          sec's incarnation -   -                   -
//	REPLHELLO   pri -> sec      0             primary's view primary's id  shard          pri's incarnation -   cluster secret      base index
//	  answer                    0             sec's view     -             last applied   -                 -   -                   -
//	REPL        pri -> sec      log index     primary's view client id     client's seq   client's floor    key value               -
//	PING        pri -> sec      ping no.      -              -             -              -                 -   -                   -
//	SEED data   pri -> sec      frame no.     -              -             covered index* total keys        -   entries             -
//	REPLACK     sec -> pri      last applied  -              -             ping/frame no. -                 -   -                   -
//
// Notes on the table:
//   - * only on the last SEED frame (FlagSeedDone): every write up to that
//     log index is in the snapshot, and the stream goes on after it.
//   - term << 32*: the sending leader's Raft term in the high 32 bits, as
//     in a view's epoch; a server refuses (STALE_EPOCH) an order of a term
//     older than one it obeyed or a view it received.
//   - Client, Seq and Floor carry their names' meaning only in client
//     writes: Client identifies the client (0: the write is not
//     deduplicated), Seq numbers its writes, and every seq below Floor has
//     been answered, so the server may forget its outcome. The other ops
//     overload these integers as shown.
//   - Every answer echoes the request's ID and carries a Status; any
//     answer but OK, NOT_FOUND and MISMATCH carries a message in Value
//     (for HEARTBEAT, STALE_EPOCH's reason). A write's answer may say
//     PUT whatever the request's op (clients match answers by ID).
//   - CAS: FlagOldPresent on the request says Aux holds the expected old
//     value; on a MISMATCH answer, that Value holds the current one.
//   - A client write's FlagRetry says it was sent before: a server that
//     has lately forgotten sessions early answers SESSION_EXPIRED to such
//     a write of a client it does not know, instead of applying it.
//   - HELLO on a client port (servers' and coordinators') of a cluster
//     with users: the first frame of every connection, answered before
//     anything else may be sent. OK carries the user's role (read,
//     readwrite or admin); UNAUTHENTICATED closes the connection.
//     Without users the port answers requests without it (and answers a
//     HELLO OK with an empty role). The password is in clear in the
//     frame: only over TLS, or loopback with -insecure-auth.
//   - REPL: Status and Flags (FlagDelete, FlagNoop, FlagOldPresent) are the
//     write's outcome, which the secondary records for deduplication; the
//     log index is the key's version. A FlagNoop entry's Value is the
//     current value of a MISMATCH.
//   - REPLHELLO: Aux is the 8-byte index of the last write the primary's
//     table holds; the answer's Seq is the last index the secondary
//     applied from this primary incarnation.
//   - SEED data: frames are numbered from 1; Floor (on frame 1) lets the
//     receiver size its table; Value is packed entries (AppendSeedEntry), or
//     dedup records (AppendDedupRecord) with FlagDedup; FlagSeedDone marks
//     the last frame. The SEED order (control port) and SEED data
//     (replication link) share OpSeed; the order's answer carries only a
//     Status.
//   - REPLACK: with FlagPing, Seq is the ping answered; with FlagSeed, the
//     SEED frame acknowledged.
type Frame struct {
	Op     Op
	Status Status
	Flags  uint8
	ID     uint64
	Epoch  uint64
	Client uint64
	Seq    uint64
	Floor  uint64
	Key    []byte
	Value  []byte
	Aux    []byte
}

// Size is the encoded size of f.
func (f *Frame) Size() int { return HeaderSize + len(f.Key) + len(f.Value) + len(f.Aux) }

// Append appends the encoding of f to dst and returns the extended slice.
func Append(dst []byte, f *Frame) []byte {
	dst = AppendHead(dst, f)
	dst = append(dst, f.Value...)
	return append(dst, f.Aux...)
}

// AppendHead appends the encoding of f up to its value (its header and
// key): what follows it on the wire is f.Value, then f.Aux.
func AppendHead(dst []byte, f *Frame) []byte {
	n := f.Size()
	var h [HeaderSize]byte
	binary.BigEndian.PutUint32(h[0:], uint32(n-4))
	h[4] = Version
	h[5] = byte(f.Op)
	h[6] = byte(f.Status)
	h[7] = f.Flags
	binary.BigEndian.PutUint64(h[8:], f.ID)
	binary.BigEndian.PutUint64(h[16:], f.Epoch)
	binary.BigEndian.PutUint64(h[24:], f.Client)
	binary.BigEndian.PutUint64(h[32:], f.Seq)
	binary.BigEndian.PutUint64(h[40:], f.Floor)
	binary.BigEndian.PutUint32(h[48:], uint32(len(f.Key)))
	binary.BigEndian.PutUint32(h[52:], uint32(len(f.Value)))
	binary.BigEndian.PutUint32(h[56:], uint32(len(f.Aux)))
	dst = append(dst, h[:]...)
	return append(dst, f.Key...)
}

// Decode parses one frame from the start of buf. It returns the number of
// bytes consumed; n == 0 with a nil error means buf holds an incomplete frame
// and more bytes are needed. A frame whose length exceeds max (MaxFrame when
// max <= 0) is refused with ErrTooLarge as soon as its length prefix is read,
// before anything is allocated. Decoded slices alias buf.
func Decode(buf []byte, max int) (f Frame, n int, err error) {
	if max <= 0 {
		max = MaxFrame
	}
	if len(buf) < 4 {
		return f, 0, nil
	}
	length := binary.BigEndian.Uint32(buf)
	if uint64(length) > uint64(max) {
		return f, 0, fmt.Errorf("%w: frame of %d bytes, limit %d", ErrTooLarge, length, max)
	}
	if length < HeaderSize-4 {
		return f, 0, fmt.Errorf("%w: frame length %d shorter than header", ErrMalformed, length)
	}
	if len(buf) < HeaderSize {
		// Validate what we can early so garbage is refused without waiting.
		if len(buf) > 4 && buf[4] != Version {
			return f, 0, fmt.Errorf("%w: version %d", ErrVersion, buf[4])
		}
		return f, 0, nil
	}
	if buf[4] != Version {
		return f, 0, fmt.Errorf("%w: version %d", ErrVersion, buf[4])
	}
	kl := uint64(binary.BigEndian.Uint32(buf[48:]))
	vl := uint64(binary.BigEndian.Uint32(buf[52:]))
	al := uint64(binary.BigEndian.Uint32(buf[56:]))
	if HeaderSize-4+kl+vl+al != uint64(length) {
		return f, 0, fmt.Errorf("%w: field lengths %d+%d+%d do not add up to frame length %d", ErrMalformed, kl, vl, al, length)
	}
	total := int(length) + 4
	if len(buf) < total {
		return f, 0, nil
	}
	f.Op = Op(buf[5])
	f.Status = Status(buf[6])
	f.Flags = buf[7]
	f.ID = binary.BigEndian.Uint64(buf[8:])
	f.Epoch = binary.BigEndian.Uint64(buf[16:])
	f.Client = binary.BigEndian.Uint64(buf[24:])
	f.Seq = binary.BigEndian.Uint64(buf[32:])
	f.Floor = binary.BigEndian.Uint64(buf[40:])
	off := uint64(HeaderSize)
	f.Key = buf[off : off+kl : off+kl]
	off += kl
	f.Value = buf[off : off+vl : off+vl]
	off += vl
	f.Aux = buf[off : off+al : off+al]
	if f.Op == OpInvalid || f.Op >= opMax {
		return f, total, fmt.Errorf("%w: unknown op %d", ErrMalformed, uint8(f.Op))
	}
	if f.Status >= statusMax {
		return f, total, fmt.Errorf("%w: unknown status %d", ErrMalformed, uint8(f.Status))
	}
	return f, total, nil
}

// FrameLen reports the total length (prefix included) of the frame starting
// at buf, or 0 when fewer than 4 bytes are available.
func FrameLen(buf []byte) int {
	if len(buf) < 4 {
		return 0
	}
	return int(binary.BigEndian.Uint32(buf)) + 4
}

// CountFrames counts the frames that begin in buf (the last one may be
// incomplete), counting no further than max.
func CountFrames(buf []byte, max int) int {
	n := 0
	for off := 0; off < len(buf) && n < max; n++ {
		l := FrameLen(buf[off:])
		if l == 0 {
			return n + 1 // (a partial length prefix begins a frame too)
		}
		off += l
	}
	return n
}

// CheckLimits reports ErrTooLarge when a request's key or values exceed the
// default limits.
func CheckLimits(key, value, aux []byte) error {
	if len(key) > MaxKey {
		return fmt.Errorf("%w: key of %d bytes, limit %d", ErrTooLarge, len(key), MaxKey)
	}
	if len(value) > MaxValue {
		return fmt.Errorf("%w: value of %d bytes, limit %d", ErrTooLarge, len(value), MaxValue)
	}
	if len(aux) > MaxValue {
		return fmt.Errorf("%w: value of %d bytes, limit %d", ErrTooLarge, len(aux), MaxValue)
	}
	return nil
}
