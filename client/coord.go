package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"ftkv/status"
	"ftkv/wire"
)

// This file holds the client's side of the control plane: the list of
// coordinators (one, or a Raft group of three or five), which one to ask,
// and moving on to the next when one is dead, stalled, lagging or not the
// leader.

// ErrNoCoordinator: the coordinator list given to Dial is empty.
var ErrNoCoordinator = errors.New("ftkv: no coordinator address")

// ErrNotCoordinator: an address answered in ftkv's protocol that it
// takes no request for the cluster's view (the coordinator's servers
// port, a server's client port): waiting changes nothing there. The
// error of such an answer wraps it.
var ErrNotCoordinator = errors.New("ftkv: not a coordinator's client port")

// answerError is a coordinator's answer other than a view or a leader
// hint; a BAD_REQUEST one is ErrNotCoordinator.
type answerError struct {
	msg string
	bad bool
}

func (e answerError) Error() string        { return e.msg }
func (e answerError) Is(target error) bool { return e.bad && target == ErrNotCoordinator }

// parseCoordAddrs splits a comma-separated list of coordinator addresses,
// dropping blanks and repeats.
func parseCoordAddrs(s string) ([]string, error) {
	var out []string
	for _, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		if a != "" && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w in %q", ErrNoCoordinator, s)
	}
	return out, nil
}

// Coordinators returns the coordinator addresses the client was dialled with.
func (c *Client) Coordinators() []string { return slices.Clone(c.coordAddrs) }

// coordOrder is the order in which to ask the coordinators: the one that
// answered last first, then the list from the one after it, wrapping.
func (c *Client) coordOrder() []string {
	c.mu.Lock()
	pref := c.coordPref
	c.mu.Unlock()
	out := make([]string, 0, len(c.coordAddrs)+1)
	start := 0
	if pref != "" {
		out = append(out, pref)
		if i := slices.Index(c.coordAddrs, pref); i >= 0 {
			start = i + 1
		}
	}
	for i := range c.coordAddrs {
		if a := c.coordAddrs[(start+i)%len(c.coordAddrs)]; a != pref {
			out = append(out, a)
		}
	}
	return out
}

func (c *Client) setCoordPref(addr string) {
	c.mu.Lock()
	c.coordPref = addr
	c.mu.Unlock()
}

// coordConn returns the connection to the coordinator at addr, dialling it
// (within the handshake timeout) if there is none or it has failed.
func (c *Client) coordConn(ctx context.Context, addr string) (*conn, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if cn := c.coordConns[addr]; cn != nil && !cn.broken() {
		c.mu.Unlock()
		return cn, nil
	}
	c.mu.Unlock()
	cn, err := c.dialConn(ctx, addr)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		cn.fail(ErrClosed)
		return nil, ErrClosed
	}
	if old := c.coordConns[addr]; old != nil && !old.broken() {
		cn.fail(ErrClosed)
		return old, nil
	}
	c.coordConns[addr] = cn
	return cn, nil
}

// askOne sends one request of kind op to the coordinator at addr and
// returns its answer, whatever its status. Connecting and the answer are
// each bounded by the handshake timeout, so a dead or stopped coordinator
// costs at most that; a connection that timed out is dropped (the next
// request dials afresh).
func (c *Client) askOne(ctx context.Context, addr string, op wire.Op, value []byte) (wire.Frame, error) {
	cn, err := c.coordConn(ctx, addr)
	if err != nil {
		return wire.Frame{}, err
	}
	rctx, cancel := context.WithTimeout(ctx, c.opts.timing.Handshake)
	defer cancel()
	reply, err := cn.roundTrip(rctx, &wire.Frame{Op: op, Value: value})
	if err != nil && rctx.Err() != nil && ctx.Err() == nil {
		err = fmt.Errorf("no answer within %s", c.opts.timing.Handshake)
		cn.fail(fmt.Errorf("%w: %s: %v", errConnBroken, addr, err))
	}
	return reply, err
}

// coordAnswer is an answer from one coordinator; check, if set, may still
// refuse it (a view older than one a server already holds).
type coordAnswer struct {
	addr  string
	reply wire.Frame
}

// askCoord sends a request of kind op to the coordinators until one gives
// an answer that check accepts (check may be nil). It starts with the one
// that answered last and moves on after a connection error, a timeout,
// NOT_LEADER (to the leader it names first, if any) or any other refusal.
// A request that changes nothing (all but SHUTDOWN) also goes to the next
// coordinator once the one asked is late (coordHedge): a stalled one
// (frozen, or cut off) is accepted by the kernel and never answers, and
// cost each one-shot command the whole answer timeout.
// It returns the accepted answer and who gave it; after one round without
// one, or when ctx ends, an error naming what each coordinator did.
func (c *Client) askCoord(ctx context.Context, op wire.Op, check func(coordAnswer) error) (coordAnswer, error) {
	return c.askCoordValue(ctx, op, nil, check)
}

// coordHedge is how late a coordinator's answer may be before the next
// coordinator is asked too: a tenth of the answer timeout.
func (c *Client) coordHedge() time.Duration { return c.opts.timing.Handshake / 10 }

// askCoordValue is askCoord with a request value.
func (c *Client) askCoordValue(ctx context.Context, op wire.Op, value []byte, check func(coordAnswer) error) (coordAnswer, error) {
	ctx, cancel := context.WithCancel(ctx) // (ends the attempts still out)
	defer cancel()
	hedge := op != wire.OpShutdown
	queue := c.coordOrder()
	tried := map[string]bool{}
	var errs []error
	type result struct {
		addr  string
		reply wire.Frame
		err   error
	}
	// A redirect may name an address not in the list; bound the detours
	// so that coordinators naming each other cannot keep the client busy.
	budget := 2*len(c.coordAddrs) + 2
	results := make(chan result, budget)
	out := 0
	waiting := map[string]bool{} // asked, no answer yet
	var lastAsked time.Time
	next := func() {
		for len(queue) > 0 && budget > 0 {
			addr := queue[0]
			queue = queue[1:]
			if tried[addr] {
				continue
			}
			tried[addr] = true
			budget--
			out++
			waiting[addr] = true
			lastAsked = time.Now()
			go func() {
				reply, err := c.askOne(ctx, addr, op, value)
				results <- result{addr, reply, err}
			}()
			return
		}
	}
	next()
	var late, giveUp *time.Timer
	defer func() {
		for _, t := range []*time.Timer{late, giveUp} {
			if t != nil {
				t.Stop()
			}
		}
	}()
	// held: check refused an answer the caller can still use (softRefusal).
	held := false
	for out > 0 {
		var lateC, giveUpC <-chan time.Time
		if hedge && len(queue) > 0 && budget > 0 {
			if late == nil {
				late = time.NewTimer(c.coordHedge())
			}
			lateC = late.C
		} else if held && hedge {
			// Nobody left to ask, and an answer that will do in hand:
			// those still silent are waited for only until late (a frozen
			// coordinator held every refresh that found no newer view
			// for the whole answer timeout: a chaos review saw writes to
			// a shard just handed back stall 2 s).
			if giveUp != nil {
				giveUp.Stop()
			}
			giveUp = time.NewTimer(time.Until(lastAsked.Add(c.coordHedge())))
			giveUpC = giveUp.C
		}
		var r result
		select {
		case r = <-results:
		case <-lateC:
			late = nil
			next()
			continue
		case <-giveUpC:
			for addr := range waiting {
				errs = append(errs, coordErr(addr, fmt.Errorf("no answer within %s, and another's will do", c.coordHedge())))
			}
			return coordAnswer{}, c.coordFail(nil, errs)
		}
		out--
		delete(waiting, r.addr)
		if late != nil {
			late.Stop()
			late = nil
		}
		addr, reply, err := r.addr, r.reply, r.err
		if errors.Is(err, ErrClosed) {
			return coordAnswer{}, ErrClosed
		}
		if errors.Is(err, ErrAuth) {
			return coordAnswer{}, err // every coordinator has the same users
		}
		if err != nil {
			if ctx.Err() != nil {
				return coordAnswer{}, c.coordFail(ctx.Err(), append(errs, coordErr(addr, err)))
			}
			errs = append(errs, coordErr(addr, err))
			next()
			continue
		}
		switch reply.Status {
		case wire.StatusOK:
			a := coordAnswer{addr: addr, reply: reply}
			if check != nil {
				if err := check(a); err != nil {
					var soft softRefusal
					held = held || errors.As(err, &soft)
					errs = append(errs, coordErr(addr, err))
					next()
					continue
				}
			}
			c.setCoordPref(addr)
			return a, nil
		case wire.StatusNotLeader:
			hint := strings.TrimSpace(string(reply.Value))
			if hint != "" && !tried[hint] {
				queue = append([]string{hint}, queue...)
				errs = append(errs, fmt.Errorf("ftkv: coordinator %s answered %w (leader: %s)", addr, errNotLeader, hint))
			} else if hint == "" {
				errs = append(errs, fmt.Errorf("ftkv: coordinator %s answered %w", addr, errElecting))
			} else {
				errs = append(errs, fmt.Errorf("ftkv: coordinator %s answered %w", addr, errNotLeader))
			}
		case wire.StatusForbidden, wire.StatusUnauthenticated:
			return coordAnswer{}, refusal(reply, "coordinator "+addr)
		default:
			msg := fmt.Sprintf("ftkv: coordinator %s answered %s", addr, reply.Status)
			if len(reply.Value) > 0 {
				msg += ": " + string(reply.Value)
			}
			errs = append(errs, answerError{msg: msg, bad: reply.Status == wire.StatusBadRequest})
		}
		next()
	}
	return coordAnswer{}, c.coordFail(nil, errs)
}

// softRefusal is a check's refusal of an answer the caller keeps and
// may still use: askCoord then waits for late coordinators only briefly.
type softRefusal struct{ error }

func (s softRefusal) Unwrap() error { return s.error }

func coordErr(addr string, err error) error {
	return fmt.Errorf("ftkv: coordinator %s: %w", addr, err)
}

// coordFail is the error of a round in which no coordinator gave an
// answer: with one coordinator its error as is, with several one line
// naming each; it wraps every cause (and ctxErr, when ctx ended), so that
// errors.Is sees them.
func (c *Client) coordFail(ctxErr error, errs []error) error {
	if ctxErr != nil {
		if len(errs) == 0 {
			return ctxErr
		}
		return fmt.Errorf("%w (last error: %w)", ctxErr, errs[len(errs)-1])
	}
	switch len(errs) {
	case 0:
		return ErrNoCoordinator
	case 1:
		if len(c.coordAddrs) == 1 {
			return errs[0]
		}
	}
	parts := make([]string, len(errs))
	args := make([]any, len(errs))
	for i, e := range errs {
		parts[i] = "%w"
		args[i] = e
	}
	return fmt.Errorf("ftkv: no coordinator of %s answered: "+strings.Join(parts, "; "), append([]any{strings.Join(c.coordAddrs, ",")}, args...)...)
}

// refreshLater refreshes the view in the background (one refresh at a
// time, within twice the handshake timeout) after a request sent on the
// view of epoch seen got no answer before its context ended. Its server
// may be gone and its address held by a program that never answers (or
// by a frozen process): on the same view every later request to that
// shard would go there and wait out its context too. Requests wait for
// the refresh (awaitRefresh).
func (c *Client) refreshLater(seen uint64) {
	done := make(chan struct{})
	if !c.refreshing.CompareAndSwap(nil, &done) {
		return
	}
	go func() {
		defer close(done)
		defer c.refreshing.Store(nil)
		ctx, cancel := context.WithTimeout(context.Background(), 2*c.opts.timing.Handshake)
		defer cancel()
		_ = c.refreshView(ctx, seen)
	}()
}

// watchOverdue runs for the client's life: every quarter AnswerOverdue it
// looks for server connections on which a request has waited that long
// with no byte arriving (conn.overdue), fetches the view if it finds any,
// and drops those whose server the view no longer makes a primary: their
// requests are retried on their shards' new primaries (exactly once: a
// write keeps its sequence number). A program on a reused port, a server
// the coordinator cannot kill, or (through a dialer without the default
// TCP_USER_TIMEOUT) a host that dropped off the network answers nothing
// and closes nothing: a request's own refresh comes only after an error
// or its context's end. A connection whose server the view still names
// is left alone: a busy server is not a lost one.
func (c *Client) watchOverdue() {
	d := c.opts.timing.AnswerOverdue
	t := time.NewTicker(d / 4)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			c.dropOverdue(now, d)
		}
	}
}

// dropOverdue is one look of watchOverdue.
func (c *Client) dropOverdue(now time.Time, d time.Duration) {
	m := c.live.Load()
	if m == nil {
		return
	}
	var late []*conn
	for _, cs := range *m {
		for _, cn := range cs {
			if !cn.broken() && cn.overdue(now, d) {
				late = append(late, cn)
			}
		}
	}
	v := c.view.Load()
	if len(late) == 0 || v == nil {
		return
	}
	// A view that already names other primaries needs no request.
	fetched := false
	for _, cn := range late {
		if !fetched && leads(v, cn.addr) {
			fetched = true
			ctx, cancel := context.WithTimeout(context.Background(), c.opts.timing.Handshake)
			err := c.checkView(ctx)
			cancel()
			if err != nil {
				return // no coordinator answered: look again a window later
			}
			v = c.view.Load()
		}
		if !leads(v, cn.addr) {
			c.opts.log.Warn().Str("server", cn.addr).Uint64("epoch", v.Epoch).Dur("silent_for", d).
				Msg("no answer from a server the view no longer makes a primary: its requests go to the new one")
			cn.fail(fmt.Errorf("%w: no answer from %s for %v, and view %d has another primary for its shards", errConnBroken, cn.addr, d, v.Epoch))
		}
	}
}

// checkView asks the coordinators for the view and installs it if it is
// newer. Unlike refreshView it takes the first coordinator's answer
// even when it is no newer (a check, not a refresh after a failure), and
// does not hold viewMu: a coordinator that does not answer delays only
// this check (askCoord asks the next one after coordHedge), never a
// request that waits for a refresh.
func (c *Client) checkView(ctx context.Context) error {
	want := c.serverEpoch.Load()
	a, err := c.askCoord(ctx, wire.OpView, func(a coordAnswer) error {
		v, err := answerView(a)
		if err == nil && v.Epoch < want {
			err = fmt.Errorf("has the view of epoch %d, a server is at epoch %d", v.Epoch, want)
		}
		return err
	})
	if err != nil {
		return err
	}
	v, _ := wire.DecodeView(a.reply.Value) // checked above
	c.storeView(&v)
	return nil
}

// answerView decodes a coordinator's answer to a view request: an error
// for a bad view, or none yet.
func answerView(a coordAnswer) (wire.View, error) {
	v, err := wire.DecodeView(a.reply.Value)
	if err != nil {
		return v, fmt.Errorf("sent a bad view: %w", err)
	}
	if len(v.Shards) == 0 {
		return v, errors.New("has no cluster view yet")
	}
	return v, nil
}

// leads reports whether the server at addr is the primary of a shard in v.
func leads(v *wire.View, addr string) bool {
	for s := range v.Shards {
		if m := v.Owner(s); m != nil && m.Addr == addr {
			return true
		}
	}
	return false
}

// awaitRefresh waits for a refreshLater in progress, or until ctx ends.
func (c *Client) awaitRefresh(ctx context.Context) error {
	p := c.refreshing.Load()
	if p == nil {
		return nil
	}
	select {
	case <-*p:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// refreshView fetches the view from a coordinator unless a view newer
// than seen has arrived meanwhile. A coordinator whose view is older than
// the epoch a server has reported (a follower cut off from its group) is
// passed over for the next one.
func (c *Client) refreshView(ctx context.Context, seen uint64) error {
	c.viewMu.Lock()
	defer c.viewMu.Unlock()
	if v := c.view.Load(); v != nil && v.Epoch > seen {
		return nil
	}
	want := c.serverEpoch.Load()
	var stale, same *wire.View
	// While the group elects a leader (its leader just died: the others
	// have no view to give, and know no leader or still name the dead
	// one), ask again for a while: the answer is seconds away, not an
	// error.
	electing := time.Now().Add(10 * c.opts.timing.RaftElection)
	delay := c.opts.timing.ClientRetryMin
again:
	a, err := c.askCoord(ctx, wire.OpView, func(a coordAnswer) error {
		v, err := answerView(a)
		if err != nil {
			return err
		}
		if v.Epoch < want {
			if stale == nil || v.Epoch > stale.Epoch {
				stale = &v
			}
			return fmt.Errorf("has the view of epoch %d, a server is at epoch %d", v.Epoch, want)
		}
		if v.Epoch <= seen && len(c.coordAddrs) > 1 {
			// No newer than the view that just failed: a coordinator cut
			// off from its group hands out the view it last knew (a
			// respawned server's dead address, say). Another may know
			// better; if none does, this one will do.
			if same == nil || v.Epoch > same.Epoch {
				same = &v
			}
			return softRefusal{fmt.Errorf("has no view newer than epoch %d", seen)}
		}
		return nil
	})
	if err != nil && same != nil && ctx.Err() == nil {
		c.storeView(same)
		return nil
	}
	if err != nil && leaderless(err) && ctx.Err() == nil && time.Now().Before(electing) {
		select {
		case <-ctx.Done():
		case <-time.After(delay):
			delay = min(2*delay, c.opts.timing.RetryMax)
			goto again
		}
	}
	if err != nil {
		if stale != nil {
			c.storeView(stale)
		}
		return err
	}
	v, _ := wire.DecodeView(a.reply.Value) // checked above
	c.storeView(&v)
	return nil
}

// storeView installs v unless the client already has a newer view.
func (c *Client) storeView(v *wire.View) {
	if old := c.view.Load(); old == nil || v.Epoch >= old.Epoch {
		c.view.Store(v)
		c.opts.log.Debug().Uint64("epoch", v.Epoch).Msg("view refreshed")
	}
}

// noteServerEpoch remembers the highest epoch a server has reported: a
// coordinator offering an older view is lagging.
func (c *Client) noteServerEpoch(e uint64) {
	for {
		cur := c.serverEpoch.Load()
		if e <= cur || c.serverEpoch.CompareAndSwap(cur, e) {
			return
		}
	}
}

// Status asks a coordinator for the cluster status. In a group it prefers
// the leader's report (only the leader hears the servers' heartbeats, so
// only its report has their key counts and heartbeat ages): when a
// follower answers and names a leader, the client asks the leader and
// falls back on the follower's report if the leader does not answer.
func (c *Client) Status(ctx context.Context) (*status.Cluster, error) {
	a, err := c.askCoord(ctx, wire.OpStatus, func(a coordAnswer) error {
		var st status.Cluster
		if err := json.Unmarshal(a.reply.Value, &st); err != nil {
			return fmt.Errorf("sent a bad status: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var st status.Cluster
	_ = json.Unmarshal(a.reply.Value, &st) // checked above
	la := leaderClientAddr(&st)
	if la == "" || la == a.addr {
		return &st, nil
	}
	reply, err := c.askOne(ctx, la, wire.OpStatus, nil)
	if err != nil || reply.Status != wire.StatusOK {
		return &st, nil
	}
	var lst status.Cluster
	if json.Unmarshal(reply.Value, &lst) != nil || lst.Answered != lst.Leader {
		return &st, nil
	}
	return &lst, nil
}

// leaderClientAddr is the leader's client address according to st, when
// st was answered by another coordinator (empty otherwise).
func leaderClientAddr(st *status.Cluster) string {
	if st.Leader < 0 || st.Answered == st.Leader {
		return ""
	}
	for _, co := range st.Coordinators {
		if co.ID == st.Leader {
			return co.ClientAddr
		}
	}
	return ""
}

// ShutdownCluster stops the whole cluster in order: every server dumps its
// tables and exits, then every coordinator exits. The leader accepts it
// from an admin user (WithAuth), or in a cluster without users only from a
// client on its own host. It
// returns once the leader has begun; the dumps take well under a second
// per server.
// While the coordinators elect a leader (every one answers NOT_LEADER, or
// the leader just died) it asks again until ctx ends.
func (c *Client) ShutdownCluster(ctx context.Context) error {
	delay := c.opts.timing.ClientRetryMin
	for {
		_, err := c.askCoordValue(ctx, wire.OpShutdown, []byte(wire.ShutdownConfirm), nil)
		if err == nil || ctx.Err() != nil || errors.Is(err, ErrClosed) || !leaderless(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(2*delay, c.opts.timing.RetryMax)
	}
}

// errNotLeader is a coordinator's NOT_LEADER answer.
var errNotLeader = errors.New(wire.StatusNotLeader.String())

// errElecting is NOT_LEADER from a follower that knows no leader: the
// group is electing one.
var errElecting = fmt.Errorf("%w", errNotLeader)

// leaderless reports whether a round failed because a follower answered
// without a leader to name, which an election ends.
func leaderless(err error) bool { return errors.Is(err, errNotLeader) }
