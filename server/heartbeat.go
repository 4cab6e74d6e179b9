package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"ftkv/internal/netopt"
	"ftkv/wire"
)

// Stats are what heartbeats report.
func (s *Server) stats() (primaryKeys, secondaryKeys uint64, epoch uint64) {
	vs := s.view.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	for shard, t := range s.tables {
		if vs != nil && shard < len(vs.v.Shards) && int(vs.v.Shards[shard].Primary) == vs.me {
			primaryKeys += uint64(t.len())
		} else {
			secondaryKeys += uint64(t.len())
		}
	}
	if vs != nil {
		epoch = s.appliedEpoch.Load()
	}
	return
}

// heartbeatLoop keeps a connection to the coordinator and reports liveness,
// addresses and key counts every Timing.Heartbeat.
// It also starts the session sweeper: both run for the server's life
// and start before the coordinator can make it part of a view.
func (s *Server) heartbeatLoop(ctx context.Context) {
	go s.sweepSessions(ctx)
	s.probe()
	go s.probeLoop(ctx)
	tm := s.cfg.Timing
	backoff := tm.HeartbeatRetryMin
	for {
		start := time.Now()
		addr := *s.coordAddr.Load()
		err := s.heartbeatOnce(ctx, addr)
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			return
		default:
		}
		// A link that outlived the longest back-off was working: retry at
		// once. So does a server told of another coordinator meanwhile
		// (SETCOORD from a new leader, or a follower's hint), and without
		// turning to the one after it in the list: a new leader cut off
		// its servers' attempt to reach the old one, which the old one's
		// cut held for a dial timeout, and then failed them over as
		// silent (a review's partition of a leader from its servers).
		moved := errors.Is(err, errCoordMoved) || *s.coordAddr.Load() != addr
		if moved || time.Since(start) > tm.HeartbeatRetryMax {
			backoff = tm.HeartbeatRetryMin
			if moved {
				continue
			}
		}
		s.log.Warn().Err(err).Str("coord", *s.coordAddr.Load()).Msg("heartbeat link lost; reconnecting")
		if len(s.coords) > 1 {
			// One of a group: the next coordinator may lead now. The
			// back-off still grows: with every coordinator down, a
			// server must not spin through them (its log filled a disk).
			s.rotateCoord(addr)
		}
		select {
		case <-time.After(backoff):
		case <-s.coordChanged:
			backoff = tm.HeartbeatRetryMin
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, tm.HeartbeatRetryMax)
	}
}

// rotateCoord points the heartbeats at the coordinator after from in the
// -coord list, unless they were pointed elsewhere since from was tried (a
// SETCOORD or a hint is not overwritten).
func (s *Server) rotateCoord(from string) {
	cur := s.coordAddr.Load()
	if *cur != from {
		return
	}
	i := 0
	for k, a := range s.coords {
		if a == from {
			i = k + 1
		}
	}
	next := s.coords[i%len(s.coords)]
	s.coordAddr.CompareAndSwap(cur, &next)
}

// moveCoord points the heartbeats at addr (a SETCOORD's, or the leader a
// follower named) at once, not after the heartbeat loop's back-off.
func (s *Server) moveCoord(addr string) {
	s.coordAddr.Store(&addr)
	select {
	case s.coordChanged <- struct{}{}:
	default:
	}
}

var (
	errCoordMoved  = errors.New("coordinator moved")
	errCoordSilent = errors.New("coordinator silent")
	errReplaced    = errors.New("replaced by a newer incarnation")
)

// readHeartbeatAnswers renews the coordinator's lease from the answers
// on nc until it fails, and ends this server if the coordinator says it
// has been replaced.
func (s *Server) readHeartbeatAnswers(nc net.Conn, heard *atomic.Int64) {
	br := bufio.NewReaderSize(nc, 4096)
	var behind uint64 // the newer epoch heartbeat answers carry
	var behindSince time.Time
	for {
		f, err := readFrame(br)
		if err != nil {
			nc.Close()
			return
		}
		heard.Store(mono(time.Now()))
		s.coordLease.answered(f.ID, f.Op == wire.OpHeartbeat && f.Status == wire.StatusOK)
		if f.Op == wire.OpHeartbeat && f.Status == wire.StatusOK && len(f.Value) > 0 && f.Epoch > s.viewSeen.Load() {
			// The coordinator's current view, which this server has not
			// received: its SETVIEW may be on its way (a moment), or lost
			// (the control port unreachable while heartbeats flow, which
			// kept shards down for as long as that lasted: a review).
			if f.Epoch != behind {
				behind, behindSince = f.Epoch, time.Now()
			} else if time.Since(behindSince) >= viewPullAfter*s.cfg.Timing.Heartbeat {
				s.viewFromHeartbeat(f.Epoch, f.Value)
			}
		}
		if f.Op == wire.OpHeartbeat && f.Status == wire.StatusNotLeader {
			// A follower of the coordinators' group: go to the leader it
			// names at once, or try the next coordinator after the
			// back-off (during an election nobody is named).
			// (Without a hint the heartbeat loop turns to the next one.)
			if hint := string(f.Value); hint != "" {
				s.moveCoord(hint)
			}
			nc.Close()
			return
		}
		if f.Op == wire.OpHeartbeat && f.Status == wire.StatusStaleEpoch {
			// The coordinator has replaced this incarnation (after a
			// partition, say, it could not kill it): it has been fenced
			// since, and now it goes.
			s.log.Error().Str("reason", string(f.Value)).Msg("the coordinator no longer counts this incarnation; exiting")
			s.finish(errReplaced)
			nc.Close()
			return
		}
	}
}

// viewPullAfter is how many heartbeat periods a server waits for a
// view's SETVIEW once heartbeat answers carry it, before it applies it
// from them.
const viewPullAfter = 2

// raiseViewSeen records that a view with epoch arrived, and reports
// whether it is the newest seen so far.
func (s *Server) raiseViewSeen(epoch uint64) bool {
	for {
		seen := s.viewSeen.Load()
		if epoch <= seen {
			return false
		}
		if s.viewSeen.CompareAndSwap(seen, epoch) {
			return true
		}
	}
}

// viewFromHeartbeat applies the view with epoch (encoded in enc) that a
// heartbeat answer carried, in the background, unless a SETVIEW of it (or
// a newer one) arrived meanwhile. The answer comes on this server's own
// link to the coordinator (the one its lease rests on), and the view is
// checked as a SETVIEW's is (applyView).
func (s *Server) viewFromHeartbeat(epoch uint64, enc []byte) {
	v, err := wire.DecodeView(enc)
	if err != nil || v.Epoch != epoch {
		s.log.Warn().Err(err).Uint64("epoch", epoch).Msg("heartbeat answer carried an unreadable view")
		return
	}
	if !s.raiseViewSeen(epoch) {
		return // (a SETVIEW of it, or of a newer one, came)
	}
	s.log.Warn().Uint64("epoch", epoch).Msg("view not received on the control port; applying it from the coordinator's heartbeat answer")
	go func() {
		if err := s.applyView(v); err != nil {
			s.log.Error().Err(err).Uint64("epoch", epoch).Msg("view refused")
		}
	}()
}

// heartbeatOnce connects to the coordinator at addr and sends heartbeats
// until the link fails, the coordinator moves or the server stops. A
// move ends it at once, also while it dials or writes to a coordinator
// that does not answer.
func (s *Server) heartbeatOnce(ctx context.Context, addr string) error {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	quit := make(chan struct{})
	moved := make(chan bool, 1)
	go func() {
		select {
		case <-s.coordChanged:
			cancel()
			moved <- true
		case <-quit:
			moved <- false
		}
	}()
	err := s.heartbeatLink(lctx, addr)
	close(quit)
	// (The watcher has ended: a signal it took is reported, never lost.)
	if <-moved {
		return errCoordMoved
	}
	return err
}

// heartbeatLink is heartbeatOnce's link, until it fails or ctx ends.
func (s *Server) heartbeatLink(ctx context.Context, addr string) error {
	nc, err := netopt.Dialer(s.cfg.Timing.Dial).DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	if s.tls != nil {
		if nc, err = handshake(ctx, nc, s.tls.toCoord, s.cfg.Timing.Handshake); err != nil {
			return err
		}
	}
	defer nc.Close()
	defer context.AfterFunc(ctx, func() { _ = nc.Close() })()
	var heard atomic.Int64 // when the last answer came (mono)
	heard.Store(mono(time.Now()))
	go s.readHeartbeatAnswers(nc, &heard)
	hello := wire.Append(nil, &wire.Frame{Op: wire.OpHello, Client: uint64(s.cfg.ID), Value: []byte(s.cfg.Secret)})
	if _, err := nc.Write(hello); err != nil {
		return err
	}
	t := time.NewTicker(s.cfg.Timing.Heartbeat)
	defer t.Stop()
	var buf []byte
	for {
		if silent := time.Duration(mono(time.Now()) - heard.Load()); len(s.coords) > 1 && silent > s.cfg.Timing.Handshake {
			// One of a group that answers nothing (frozen: the kernel
			// still takes the heartbeats) while another leads: the next
			// one is tried (a follower names the leader). A respawned
			// server no new leader knows the address of (not in a view
			// yet) heartbeated to a frozen leader until it resumed.
			return fmt.Errorf("%w: no answer for %s", errCoordSilent, silent.Round(time.Millisecond))
		}
		if hb, ok := s.latestReport(); ok {
			seq := s.coordLease.sending(time.Now())
			buf = wire.Append(buf[:0], &wire.Frame{Op: wire.OpHeartbeat, ID: seq, Client: uint64(s.cfg.ID), Seq: s.cfg.Incarnation,
				Epoch: hb.Epoch, Value: wire.AppendHeartbeat(nil, &hb)})
			_ = nc.SetWriteDeadline(time.Now().Add(s.cfg.Timing.Dial))
			if _, err := nc.Write(buf); err != nil {
				return err
			}
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return nil
		}
	}
}

// latestReport returns what the next heartbeat reports besides liveness,
// and false when no heartbeat may be sent now. Gathering a report once
// took locks that writes hold (each primary's), read /proc and statted
// the data directory (now probeLoop's): under a load of
// 1 MiB writes that took up to 360 ms, the heartbeat waited for it, and
// the coordinator failed live servers ("no heartbeat for 525ms"). So a
// heartbeat carries the latest report and starts gathering the next one
// beside it. While a gathering has run for over half the failure timeout
// (the server's or the log's lock held for good) no heartbeat is sent, so a
// wedged server falls silent and is failed as before (a review: it
// heartbeated on with its last report); a report older than that (the
// coordinator was unreachable meanwhile) is gathered again at once.
func (s *Server) latestReport() (wire.Heartbeat, bool) {
	r := &s.report
	limit := int64(s.cfg.Timing.FailureTimeout / 2)
	now := mono(time.Now())
	r.mu.Lock()
	last := r.last
	switch {
	case r.running && now-r.started > limit:
		r.mu.Unlock()
		return wire.Heartbeat{}, false // hung: fall silent
	case r.running:
	case last == nil || now-last.at > limit:
		// The first, or one older than the limit (the link to the
		// coordinator was down meanwhile): gathered here and now.
		r.running, r.started = true, now
		r.mu.Unlock()
		g := s.gatherReport()
		r.mu.Lock()
		r.running, r.last = false, g
		r.mu.Unlock()
		return g.hb, true
	default:
		r.running, r.started = true, now
		go func() {
			g := s.gatherReport()
			r.mu.Lock()
			r.running, r.last = false, g
			r.mu.Unlock()
		}()
	}
	r.mu.Unlock()
	return last.hb, true
}

// heartbeatReport is the latest report gathered (latestReport).
type heartbeatReport struct {
	mu      sync.Mutex
	running bool  // a gathering runs
	started int64 // mono: since
	last    *gathered
}

// gathered is a report and when it was gathered (mono).
type gathered struct {
	hb wire.Heartbeat
	at int64
}

// reportGathering, when a test sets it, runs as each report starts being gathered.
var reportGathering atomic.Pointer[func()]

// gatherReport gathers a heartbeat's report. Its epoch is the one it was
// gathered under (the coordinator reads the links' reports as of it).
func (s *Server) gatherReport() *gathered {
	if hook := reportGathering.Load(); hook != nil {
		(*hook)()
	}
	pk, sk, ep := s.stats()
	sessions, records := s.dd.stats()
	g := &gathered{hb: wire.Heartbeat{
		ID: s.cfg.ID, Incarnation: s.cfg.Incarnation, PID: uint32(os.Getpid()), Epoch: ep,
		PrimaryKeys: pk, SecondaryKeys: sk,
		Addr: s.addrs.client, PeerAddr: s.addrs.peer, CtlAddr: s.addrs.ctl, MetricsAddr: s.addrs.metrics,
		Sessions: sessions, SessionRecords: records, RSSBytes: s.rss.Load(),
		Links: s.linkReports(time.Now()),
	}}
	if s.dur != nil {
		g.hb.Durable = s.dur.indexes()
		g.hb.Storage = s.dur.report()
	}
	g.at = mono(time.Now())
	return g
}

// sweepSessions expires silent client sessions until the server stops
// (writes expire a few on their way too; this catches idle stripes).
func (s *Server) sweepSessions(ctx context.Context) {
	t := time.NewTicker(s.dd.sweepPeriod())
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.dd.sweep()
		case <-ctx.Done():
			return
		case <-s.done:
			return
		}
	}
}

// probeLoop probes, every heartbeat period, what the kernel may take long
// to tell: the resident memory (/proc/self/statm waits for the process's
// memory map, which the runtime's allocations hold) and whether the data
// directory is still this server's (a stat, behind the disk's
// writeback). Under writes of 1 MiB values each took up to 250 ms inside
// the heartbeat's report, whose gathering then ran past half the failure
// timeout: the server fell silent as if wedged. Reports take the latest
// probe, and a data directory found gone fails the log, which they carry.
func (s *Server) probeLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.Timing.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.probe()
		case <-ctx.Done():
			return
		case <-s.done:
			return
		}
	}
}

// probe is one round of probeLoop.
func (s *Server) probe() {
	s.rss.Store(rssBytes())
	if s.dur != nil {
		s.checkDataDir()
	}
}

// rssBytes is the process's resident memory from /proc/self/statm (0 where
// there is none).
func rssBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}
