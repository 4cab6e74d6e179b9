package wire

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Server states as published in a view.
const (
	StateStarting    uint8 = iota // spawned, not yet part of the view
	StateServing                  // serving its roles
	StateDown                     // missed heartbeats / dead
	StateReseeding                // respawned, being re-seeded
	StateUnavailable              // a shard it owns has no live copy
	StateDead                     // its process is known to have exited (no lease to wait out)
)

var stateNames = [...]string{"starting", "serving", "down", "re-seeding", "unavailable", "down"}

// StateName is the lower-case name of a server state used by status output.
func StateName(s uint8) string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", s)
}

// Member is one server in a view.
type Member struct {
	ID          uint32
	Incarnation uint64
	State       uint8
	PID         uint32
	Host        string // config host ("localhost" or an ssh destination)
	Addr        string // client address host:port
	PeerAddr    string // replication address host:port
	CtlAddr     string // coordinator control address host:port
}

// Placement names the servers (indexes into View.Servers) that hold a shard;
// -1 means none.
type Placement struct {
	Primary   int32
	Secondary int32
}

// View is the cluster map at one epoch.
type View struct {
	Epoch   uint64
	Servers []Member
	Shards  []Placement
	// SessionTTL is how long the servers remember a silent client's
	// writes (0: not said; clients assume the servers' default). A client
	// never retries a write longer than that after first sending it.
	// Encoded (in milliseconds, after the shards) only when not zero.
	SessionTTL time.Duration
}

// Owner returns the member serving shard s as primary, or nil.
func (v *View) Owner(s int) *Member {
	if s < 0 || s >= len(v.Shards) {
		return nil
	}
	p := v.Shards[s].Primary
	if p < 0 || int(p) >= len(v.Servers) {
		return nil
	}
	return &v.Servers[p]
}

// AppendView appends the binary encoding of v to dst.
func AppendView(dst []byte, v *View) []byte {
	dst = binary.BigEndian.AppendUint64(dst, v.Epoch)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(v.Servers)))
	for i := range v.Servers {
		m := &v.Servers[i]
		dst = binary.BigEndian.AppendUint32(dst, m.ID)
		dst = binary.BigEndian.AppendUint64(dst, m.Incarnation)
		dst = append(dst, m.State)
		dst = binary.BigEndian.AppendUint32(dst, m.PID)
		dst = appendStr(dst, m.Host)
		dst = appendStr(dst, m.Addr)
		dst = appendStr(dst, m.PeerAddr)
		dst = appendStr(dst, m.CtlAddr)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(v.Shards)))
	for _, p := range v.Shards {
		dst = binary.BigEndian.AppendUint32(dst, uint32(p.Primary))
		dst = binary.BigEndian.AppendUint32(dst, uint32(p.Secondary))
	}
	if ms := uint64(v.SessionTTL.Milliseconds()); ms > 0 {
		dst = binary.BigEndian.AppendUint64(dst, ms)
	}
	return dst
}

// maxMembers bounds decoded view sizes so garbage cannot allocate much.
const maxMembers = 4096

// DecodeView parses a view produced by AppendView. Strings are copied.
func DecodeView(b []byte) (View, error) {
	var v View
	r := reader{b: b}
	v.Epoch = r.u64()
	n := r.u32()
	if n > maxMembers {
		return v, fmt.Errorf("%w: view with %d servers", ErrMalformed, n)
	}
	v.Servers = make([]Member, 0, n)
	for i := uint32(0); i < n && r.err == nil; i++ {
		var m Member
		m.ID = r.u32()
		m.Incarnation = r.u64()
		m.State = r.u8()
		m.PID = r.u32()
		m.Host = r.str()
		m.Addr = r.str()
		m.PeerAddr = r.str()
		m.CtlAddr = r.str()
		v.Servers = append(v.Servers, m)
	}
	ns := r.u32()
	if ns > maxMembers {
		return v, fmt.Errorf("%w: view with %d shards", ErrMalformed, ns)
	}
	v.Shards = make([]Placement, 0, ns)
	for i := uint32(0); i < ns && r.err == nil; i++ {
		p := Placement{Primary: int32(r.u32()), Secondary: int32(r.u32())}
		if p.Primary >= int32(n) || p.Secondary >= int32(n) || p.Primary < -1 || p.Secondary < -1 {
			return v, fmt.Errorf("%w: shard %d placed on unknown server", ErrMalformed, i)
		}
		v.Shards = append(v.Shards, p)
	}
	if r.err == nil && len(r.b) == 8 {
		ms := r.u64()
		if ms == 0 || ms > uint64(1<<62/time.Millisecond) {
			return v, fmt.Errorf("%w: session TTL of %d ms", ErrMalformed, ms)
		}
		v.SessionTTL = time.Duration(ms) * time.Millisecond
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: %d trailing bytes in view", ErrMalformed, len(r.b))
	}
	return v, r.err
}

// AppendKeyCounts appends a server's key counts by role (its primary
// and secondary tables under the view it applied): its answer to a view's
// push carries them, so the coordinator shows the counts of the roles it
// shows from the moment the server applied them.
func AppendKeyCounts(dst []byte, primary, secondary uint64) []byte {
	dst = binary.BigEndian.AppendUint64(dst, primary)
	return binary.BigEndian.AppendUint64(dst, secondary)
}

// DecodeKeyCounts decodes what AppendKeyCounts wrote; ok is false for any
// other answer (an older server's is empty).
func DecodeKeyCounts(b []byte) (primary, secondary uint64, ok bool) {
	if len(b) != 16 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:]), true
}

// Heartbeat is what a server reports to the coordinator.
type Heartbeat struct {
	ID            uint32
	Incarnation   uint64
	PID           uint32
	Epoch         uint64 // the view epoch the server has applied
	PrimaryKeys   uint64
	SecondaryKeys uint64
	Addr          string
	PeerAddr      string
	CtlAddr       string
	// Client sessions (dedup) and memory; a heartbeat without them (from
	// an older server) decodes with zeros.
	Sessions       uint64 // clients whose writes the server remembers
	SessionRecords uint64 // remembered write outcomes
	RSSBytes       uint64 // resident memory of the process (0: unknown)
	// Links lists the shards this server leads whose secondary has not
	// answered on the replication link for a while (none: every link is
	// healthy). Encoded after RSSBytes only when not empty; a heartbeat
	// without it (from an older server) decodes with none.
	Links []LinkHealth
	// Durable lists, per shard this server holds in its write-ahead log,
	// the highest log index the log holds (written per the fsync policy),
	// so that a coordinator restarting the cluster can pick the most
	// complete copy of each shard. Empty without a data directory. Encoded
	// after Links (whose count is then written even when 0); a heartbeat
	// without it decodes with none.
	Durable []ShardIndex
	// Storage describes the write-ahead log (Fsync "" without one).
	// Encoded after Durable (whose count is then written even when 0); a
	// heartbeat without it decodes with the zero value.
	Storage StorageReport
	// MetricsAddr is where the server serves Prometheus metrics (""
	// when it does not). Encoded after Storage (a server without a log
	// then writes a storage report flagged absent); a heartbeat without
	// it decodes with "".
	MetricsAddr string
}

// StorageReport is a server's account of its write-ahead log.
type StorageReport struct {
	Fsync          string // the policy: always, everysec or no ("": no log)
	Failed         bool   // the log failed (a full disk, an I/O error): writes are refused
	LogBytes       uint64 // bytes in the log's segments
	SnapshotBytes  uint64 // size of the last snapshot (0: none)
	SnapshotUnixMs int64  // when the last snapshot was written (0: none since start)
}

// ShardIndex is a log index of one shard.
type ShardIndex struct {
	Shard uint32
	Index uint64
}

// shardIndexSize is the encoded size of one ShardIndex.
const shardIndexSize = 12

// LinkHealth is a primary's report on the replication link of one shard
// it leads: a primary that cannot replicate acknowledges no write, so the
// coordinator fails a secondary that stays unreachable (while both still
// reach the coordinator, heartbeats alone would never tell).
type LinkHealth struct {
	Shard       uint32
	Secondary   uint32        // the secondary's server id
	Incarnation uint64        // and incarnation
	Stalled     time.Duration // how long the secondary has not answered (ns on the wire)
}

// heartbeatTail is the size of the fields after CtlAddr, up to RSSBytes.
const heartbeatTail = 24

// linkHealthSize is the encoded size of one LinkHealth.
const linkHealthSize = 24

// AppendHeartbeat appends the encoding of h to dst.
func AppendHeartbeat(dst []byte, h *Heartbeat) []byte {
	dst = binary.BigEndian.AppendUint32(dst, h.ID)
	dst = binary.BigEndian.AppendUint64(dst, h.Incarnation)
	dst = binary.BigEndian.AppendUint32(dst, h.PID)
	dst = binary.BigEndian.AppendUint64(dst, h.Epoch)
	dst = binary.BigEndian.AppendUint64(dst, h.PrimaryKeys)
	dst = binary.BigEndian.AppendUint64(dst, h.SecondaryKeys)
	dst = appendStr(dst, h.Addr)
	dst = appendStr(dst, h.PeerAddr)
	dst = appendStr(dst, h.CtlAddr)
	dst = binary.BigEndian.AppendUint64(dst, h.Sessions)
	dst = binary.BigEndian.AppendUint64(dst, h.SessionRecords)
	dst = binary.BigEndian.AppendUint64(dst, h.RSSBytes)
	more := h.Storage.Fsync != "" || h.MetricsAddr != "" // a storage report follows
	if len(h.Links) > 0 || len(h.Durable) > 0 || more {
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(h.Links)))
		for _, l := range h.Links {
			dst = binary.BigEndian.AppendUint32(dst, l.Shard)
			dst = binary.BigEndian.AppendUint32(dst, l.Secondary)
			dst = binary.BigEndian.AppendUint64(dst, l.Incarnation)
			dst = binary.BigEndian.AppendUint64(dst, uint64(l.Stalled))
		}
	}
	if len(h.Durable) > 0 || more {
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(h.Durable)))
		for _, d := range h.Durable {
			dst = binary.BigEndian.AppendUint32(dst, d.Shard)
			dst = binary.BigEndian.AppendUint64(dst, d.Index)
		}
	}
	if st := &h.Storage; st.Fsync != "" {
		var flags uint8
		if st.Failed {
			flags |= 1
		}
		dst = append(dst, flags)
		dst = appendStr(dst, st.Fsync)
		dst = binary.BigEndian.AppendUint64(dst, st.LogBytes)
		dst = binary.BigEndian.AppendUint64(dst, st.SnapshotBytes)
		dst = binary.BigEndian.AppendUint64(dst, uint64(st.SnapshotUnixMs))
	} else if h.MetricsAddr != "" {
		dst = append(dst, storageAbsent)
	}
	if h.MetricsAddr != "" {
		dst = appendStr(dst, h.MetricsAddr)
	}
	return dst
}

// Storage report flags: bit 0 the log failed; storageAbsent alone: no
// log (written only when a metrics address follows).
const storageAbsent = 1 << 1

// DecodeHeartbeat parses a heartbeat produced by AppendHeartbeat, or by
// an older one that ended at CtlAddr or at RSSBytes.
func DecodeHeartbeat(b []byte) (Heartbeat, error) {
	var h Heartbeat
	r := reader{b: b}
	h.ID = r.u32()
	h.Incarnation = r.u64()
	h.PID = r.u32()
	h.Epoch = r.u64()
	h.PrimaryKeys = r.u64()
	h.SecondaryKeys = r.u64()
	h.Addr = r.str()
	h.PeerAddr = r.str()
	h.CtlAddr = r.str()
	if r.err == nil && len(r.b) >= heartbeatTail {
		h.Sessions = r.u64()
		h.SessionRecords = r.u64()
		h.RSSBytes = r.u64()
		if len(r.b) > 0 {
			h.Links, r.err = decodeLinks(&r)
		}
		if r.err == nil && len(r.b) > 0 {
			h.Durable, r.err = decodeDurable(&r)
		}
		if r.err == nil && len(r.b) > 0 {
			flags := r.u8()
			switch {
			case flags == storageAbsent:
				if r.err == nil && len(r.b) == 0 {
					r.err = fmt.Errorf("%w: heartbeat without a log nor a metrics address", ErrMalformed)
				}
			case flags&^1 != 0:
				r.err = fmt.Errorf("%w: heartbeat storage flags %#x", ErrMalformed, flags)
			default:
				h.Storage.Failed = flags&1 != 0
				h.Storage.Fsync = r.str()
				h.Storage.LogBytes = r.u64()
				h.Storage.SnapshotBytes = r.u64()
				h.Storage.SnapshotUnixMs = int64(r.u64())
				if r.err == nil && h.Storage.Fsync == "" {
					r.err = fmt.Errorf("%w: heartbeat storage report without a policy", ErrMalformed)
				}
			}
		}
		if r.err == nil && len(r.b) > 0 {
			h.MetricsAddr = r.str()
			if r.err == nil && h.MetricsAddr == "" {
				r.err = fmt.Errorf("%w: heartbeat with an empty metrics address", ErrMalformed)
			}
		}
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: %d trailing bytes in heartbeat", ErrMalformed, len(r.b))
	}
	return h, r.err
}

// decodeDurable reads a heartbeat's per-shard log indexes: a count (0
// only when a storage report follows), then the indexes.
func decodeDurable(r *reader) ([]ShardIndex, error) {
	if !r.need(2) {
		return nil, r.err
	}
	n := int(binary.BigEndian.Uint16(r.b))
	r.b = r.b[2:]
	if n > maxMembers || (n == 0 && len(r.b) == 0) {
		return nil, fmt.Errorf("%w: heartbeat with %d shard indexes", ErrMalformed, n)
	}
	if n == 0 {
		return nil, nil
	}
	if !r.need(n * shardIndexSize) {
		return nil, r.err
	}
	out := make([]ShardIndex, n)
	for i := range out {
		out[i] = ShardIndex{Shard: r.u32(), Index: r.u64()}
	}
	return out, nil
}

// decodeLinks reads a heartbeat's link reports: a count (0 only when
// per-shard log indexes follow), then the reports.
func decodeLinks(r *reader) ([]LinkHealth, error) {
	if !r.need(2) {
		return nil, r.err
	}
	n := int(binary.BigEndian.Uint16(r.b))
	r.b = r.b[2:]
	if n > maxMembers || (n == 0 && len(r.b) == 0) {
		return nil, fmt.Errorf("%w: heartbeat with %d link reports", ErrMalformed, n)
	}
	if n == 0 {
		return nil, nil
	}
	if !r.need(n * linkHealthSize) {
		return nil, r.err
	}
	links := make([]LinkHealth, n)
	for i := range links {
		links[i] = LinkHealth{Shard: r.u32(), Secondary: r.u32(), Incarnation: r.u64()}
		ns := r.u64()
		if ns > 1<<62 {
			return nil, fmt.Errorf("%w: link stalled for %d ns", ErrMalformed, ns)
		}
		links[i].Stalled = time.Duration(ns)
	}
	return links, nil
}

func appendStr(dst []byte, s string) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) need(n int) bool {
	if r.err != nil {
		return false
	}
	if len(r.b) < n {
		r.err = fmt.Errorf("%w: truncated", ErrMalformed)
		return false
	}
	return true
}

func (r *reader) u8() uint8 {
	if !r.need(1) {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) u32() uint32 {
	if !r.need(4) {
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) u64() uint64 {
	if !r.need(8) {
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *reader) str() string {
	if !r.need(2) {
		return ""
	}
	n := int(binary.BigEndian.Uint16(r.b))
	r.b = r.b[2:]
	if !r.need(n) {
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}
