package gateway

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/zeebo/xxh3"

	"ftkv/client"
	"ftkv/internal/metrics"
	"ftkv/status"
	"ftkv/wire"
)

// The HTTP API:
//
//	GET    /v1/kv/{key}          200 and the value's bytes, with its ETag; 404 when absent;
//	                             304 with If-None-Match naming its ETag (or *), 412 with If-Match naming another
//	                             (or with If-Match when absent)
//	PUT    /v1/kv/{key}          the body becomes the value; 204
//	DELETE /v1/kv/{key}          204 (also when absent); with If-Match (ETags, or *) only if the
//	                             current value has one of them (a compare-and-delete), else 412
//	POST   /v1/kv/{key}?append   the body is appended (the key is created); 204 (?append=true too;
//	                             no If-Match / If-None-Match: 400)
//	GET    /v1/status            the cluster status, as `client status --json` prints it
//
// The key is the rest of the path, URL-unescaped: any bytes (%2F for a
// slash within a segment, or a plain slash; "//", "." and ".." segments
// are part of the key, never cleaned or redirected). A value's ETag is the
// quoted hex xxh3-128 hash of its bytes; PUT with If-Match (one or more
// ETags, or *) writes only if the current value has one of them (*: if
// the key exists), with If-None-Match: * only if the key is absent; both
// are compare-and-swaps in the cluster, 412 when they fail (always when
// both headers are given). Errors are
// one line of text: 400 bad request, 404, 405, 412, 413 (over the 1 MiB
// value or 64 KiB key limit), 503 with Retry-After when the cluster did not
// answer in time or a shard is unavailable.

const (
	kvPrefix = "/v1/kv/"
)

// httpMaxConns bounds the open HTTP connections: at the bound a new one
// closes the one idle longest (or whose request body has sent nothing
// for a second: metrics.SlowBody), or waits in the listen backlog while
// every one is serving a request (metrics.LimitListener). (A variable
// for tests.)
var httpMaxConns = 1024

func (g *Gateway) startHTTP() error {
	ln, err := net.Listen("tcp", g.cfg.HTTP)
	if err != nil {
		return fmt.Errorf("gateway: listen %s: %w", g.cfg.HTTP, err)
	}
	g.httpLn = ln
	// No ServeMux: keys are bytes, and it answers a path holding "//",
	// "/./" or "/../" with a redirect to its cleaned form (another key,
	// or an endpoint the client did not name), with an HTML body.
	limited := metrics.LimitListener(ln, httpMaxConns)
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.EscapedPath(); {
		case strings.HasPrefix(p, kvPrefix):
			g.serveKV(w, r)
		case p == "/v1/status":
			g.serveStatus(w, r)
		default:
			httpError(w, http.StatusNotFound, "no such endpoint: the API is /v1/kv/{key} and /v1/status")
		}
	})
	if g.logins != nil {
		h = g.httpAuth(h)
	}
	inner := h // (a body refused unread by the login check is watched too)
	h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body := r.Body
		r.Body = limited.WatchBody(r)
		inner.ServeHTTP(w, r)
		// net/http reads what a handler left of a body before it
		// answers, but a rest of 256 KiB or more of its own body type
		// closes the connection instead. A body of another type (the
		// watcher's) it read on: a 413 to a PUT announcing 99999999999
		// bytes came only at the read timeout (12 s; a review).
		r.Body = body
	})
	g.httpSrv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: g.lim.FrameTimeout,
		ReadTimeout:       g.lim.FrameTimeout + g.cfg.Timeout,
		WriteTimeout:      2*g.cfg.Timeout + g.lim.FrameTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    4*maxKey + 64<<10, // an escaped key of 64 KiB fits
		// One line per failed TLS handshake (any stranger's connect)
		// is noise; anything else net/http says goes to the log.
		ErrorLog: log.New(httpErrors{g.log}, "", 0),
	}
	g.httpSrv.ConnState, g.httpSrv.ConnContext = limited.ConnState, limited.ConnContext
	var serve net.Listener = limited
	if g.cfg.TLS != nil {
		// The same certificate as the RESP port: the API's values and
		// passwords never cross in clear. A client in clear gets net/http's
		// "400 Client sent an HTTP request to an HTTPS server".
		serve = tls.NewListener(serve, g.cfg.TLS)
	}
	go func() {
		if err := g.httpSrv.Serve(serve); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.errc <- fmt.Errorf("http: %w", err)
		}
	}()
	return nil
}

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(code)
	fmt.Fprintln(w, oneLine(msg))
}

// etag is the ETag of a value: its xxh3-128 hash, quoted.
func etag(v []byte) string {
	h := xxh3.Hash128(v).Bytes()
	return `"` + hex.EncodeToString(h[:]) + `"`
}

// storeError answers an error of the cluster.
func storeError(w http.ResponseWriter, err error) {
	switch e := respError(err); {
	case errors.Is(err, client.ErrTooLarge):
		httpError(w, http.StatusRequestEntityTooLarge, err.Error())
	case strings.HasPrefix(string(e), "CLUSTERDOWN"), strings.HasPrefix(string(e), "TRYAGAIN"), e == errShutdown:
		httpError(w, http.StatusServiceUnavailable, err.Error())
	default:
		httpError(w, http.StatusBadGateway, err.Error())
	}
}

// statusWriter remembers the status code of the answer.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// errBadRequest is how a request refused as malformed (400, 405, 413)
// counts in the metrics.
var errBadRequest = Error("ERR bad request")

func (g *Gateway) serveKV(rw http.ResponseWriter, r *http.Request) {
	start := time.Now()
	op := "other" // (metrics names never carry a client's bytes)
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete:
		op = strings.ToLower(r.Method)
	}
	w := &statusWriter{ResponseWriter: rw}
	var opErr error
	defer func() {
		if opErr == nil {
			switch w.code {
			case http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusRequestEntityTooLarge:
				opErr = errBadRequest
			}
		}
		g.observe("http_"+op, time.Since(start), opErr)
	}()
	raw := strings.TrimPrefix(r.URL.EscapedPath(), kvPrefix)
	key, err := url.PathUnescape(raw)
	switch {
	case err != nil:
		httpError(w, http.StatusBadRequest, "bad key: "+err.Error())
		return
	case key == "":
		httpError(w, http.StatusBadRequest, "empty key: use /v1/kv/{key}")
		return
	case len(key) > maxKey:
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("key of %d bytes is over the limit of %d", len(key), maxKey))
		return
	}
	if q := r.URL.Query(); len(q) > 0 && r.Method != http.MethodGet && r.Method != http.MethodHead {
		// A write's query is its meaning (POST ?append): one it does not
		// take is refused, never ignored (PUT ?append overwrote).
		if _, ok := q["append"]; r.Method != http.MethodPost || !ok || len(q) > 1 {
			httpError(w, http.StatusBadRequest, r.Method+" /v1/kv/{key} takes no query but POST's ?append, got ?"+r.URL.RawQuery)
			return
		}
	}
	// The cluster call runs to its end even if the client's input ends
	// first: net/http cancels r.Context() then, also for a client that
	// only shut down its sending side and waits for the answer, and a
	// write cut off mid-way may still be applied (it was answered 503).
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), g.cfg.Timeout)
	defer cancel()
	st := g.cfg.Store
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		v, err := st.Get(ctx, key)
		if errors.Is(err, client.ErrNotFound) {
			if r.Header.Get("If-Match") != "" {
				// No current value: If-Match is false (RFC 9110 13.1.1).
				httpError(w, http.StatusPreconditionFailed, "precondition failed: the key is absent (If-Match)")
				return
			}
			httpError(w, http.StatusNotFound, "not found")
			return
		}
		if opErr = err; err != nil {
			storeError(w, err)
			return
		}
		tag := etag(v)
		if im := r.Header.Get("If-Match"); im != "" && !tagsMatch(im, tag) {
			httpError(w, http.StatusPreconditionFailed, "precondition failed: the value did not match If-Match")
			return
		}
		w.Header().Set("ETag", tag)
		if inm := r.Header.Get("If-None-Match"); inm != "" && noneMatch(inm, tag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		if r.Method == http.MethodGet {
			// The value is held until a client that may not read has
			// it: counted as bodies are (hold), apart from them (a
			// semaphore's TryAcquire fails while anyone waits: a body
			// waiting for room made every GET 503), without a wait,
			// which would hold the value too.
			n := int64(len(v))
			if g.httpValues.Add(n) > g.lim.InputBudget {
				g.httpValues.Add(-n)
				g.busy(w)
				return
			}
			defer g.httpValues.Add(-n)
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(v)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(v)
		}
	case http.MethodPut, http.MethodPost:
		body, release, ok := g.readBody(w, r)
		if !ok {
			return
		}
		defer release()
		if r.Method == http.MethodPost {
			if a, ok := r.URL.Query()["append"]; !ok || len(a) != 1 || (a[0] != "" && a[0] != "true" && a[0] != "1") {
				httpError(w, http.StatusBadRequest, "POST /v1/kv/{key} takes ?append (or ?append=true)")
				return
			}
			if r.Header.Get("If-Match") != "" || r.Header.Get("If-None-Match") != "" {
				httpError(w, http.StatusBadRequest, "POST ?append takes no If-Match or If-None-Match")
				return
			}
			if opErr = st.Append(ctx, key, body); opErr != nil {
				storeError(w, opErr)
				return
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if inm := r.Header.Get("If-None-Match"); inm != "" && inm != "*" {
			httpError(w, http.StatusBadRequest, "If-None-Match takes only * on PUT (write only if the key is absent)")
			return
		}
		code, err := g.put(ctx, r, key, body)
		if opErr = err; err != nil {
			storeError(w, err)
			return
		}
		if code != http.StatusNoContent {
			httpError(w, code, "precondition failed: the value did not match If-Match / If-None-Match")
			return
		}
		w.Header().Set("ETag", etag(body))
		w.WriteHeader(code)
	case http.MethodDelete:
		if r.Header.Get("If-None-Match") != "" {
			httpError(w, http.StatusBadRequest, "DELETE takes no If-None-Match (If-Match: delete only that value)")
			return
		}
		code := http.StatusNoContent
		if im := r.Header.Get("If-Match"); im != "" {
			code, opErr = g.deleteIfMatch(ctx, key, im)
		} else {
			opErr = st.Delete(ctx, key)
		}
		if opErr != nil {
			storeError(w, opErr)
			return
		}
		if code != http.StatusNoContent {
			httpError(w, code, "precondition failed: the value did not match If-Match")
			return
		}
		w.WriteHeader(code)
	default:
		w.Header().Set("Allow", "GET, HEAD, PUT, POST, DELETE")
		httpError(w, http.StatusMethodNotAllowed, r.Method+" is not allowed on /v1/kv/{key}")
	}
}

// hold counts n bytes of a body about to be read against the input
// budget, waiting up to the command timeout for room: 1,000 clients
// sending a body of 1 MiB slowly made the gateway hold a gigabyte. (The
// values being written are counted apart, in httpValues.) It answers 503
// when there is no room, and returns the release otherwise.
func (g *Gateway) hold(ctx context.Context, w http.ResponseWriter, n int64) (func(), bool) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	if err := g.httpBytes.Acquire(ctx, n); err != nil {
		g.busy(w)
		return nil, false
	}
	return func() { g.httpBytes.Release(n) }, true
}

// busy answers 503: the input budget is held (hold).
func (g *Gateway) busy(w http.ResponseWriter) {
	httpError(w, http.StatusServiceUnavailable, fmt.Sprintf(
		"gateway busy: the HTTP requests in progress hold its input_budget (%d bytes) of bodies and values", g.lim.InputBudget))
}

// readBody reads a value of at most 1 MiB (413 beyond), held against the
// input budget until release (hold).
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request) (body []byte, release func(), ok bool) {
	if r.ContentLength > wire.MaxValue {
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("value of %d bytes is over the limit of %d", r.ContentLength, wire.MaxValue))
		return nil, nil, false
	}
	var err error
	body, release, err = g.readGrowing(w, r, r.ContentLength)
	if release == nil {
		return nil, nil, false // (busy: answered)
	}
	if err != nil {
		release()
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("value over the limit of %d bytes", wire.MaxValue))
		} else {
			httpError(w, http.StatusBadRequest, "reading the body: "+err.Error())
		}
		return nil, nil, false
	}
	if body == nil {
		body = []byte{}
	}
	return body, release, true
}

// chunkHold is the step by which a body is held against the input
// budget as it grows.
const chunkHold = 64 << 10

// readGrowing reads a body of at most 1 MiB, of length bytes (-1: not
// announced, chunked), holding what it has read against the input budget
// in steps of chunkHold, doubling, not the 1 MiB it may grow to nor the
// length it announces: 64 clients sending a byte each and stalling held
// a default budget whole, and every other writer waited (an attack, with
// chunked bodies; then with bodies announcing 1 MiB, 70 of them). With no
// room for its next step it answers 503 and returns a nil release;
// otherwise the release of what it holds, and the body or the error that
// ended it.
func (g *Gateway) readGrowing(w http.ResponseWriter, r *http.Request, length int64) ([]byte, func(), error) {
	limit := int64(wire.MaxValue + 1) // unknown: up to one byte past the limit
	if length >= 0 {
		limit = length // (length <= wire.MaxValue: checked by readBody)
	}
	held := min(int64(chunkHold), limit)
	release, ok := g.hold(r.Context(), w, held)
	if !ok {
		return nil, nil, nil
	}
	buf := make([]byte, 0, held)
	body := http.MaxBytesReader(w, r.Body, wire.MaxValue)
	for {
		if length >= 0 && int64(len(buf)) == length {
			// Nothing past the announced length (net/http ends the body there).
			return buf, release, nil
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			if length >= 0 && int64(len(buf)) < length {
				return nil, release, io.ErrUnexpectedEOF
			}
			return buf, release, nil
		}
		if err != nil {
			return nil, release, err
		}
		if len(buf) < cap(buf) || length >= 0 && int64(len(buf)) == length {
			continue
		}
		more := min(held, limit-held) // doubles, up to the limit
		// (more <= 0 is not reached: the reader stops at the limit.)
		if more <= 0 {
			return nil, release, &http.MaxBytesError{Limit: wire.MaxValue}
		}
		if g.httpBytes.TryAcquire(more) {
			prev, n := release, more
			release = func() { prev(); g.httpBytes.Release(n) }
		} else {
			// No room now: wait holding nothing, for all of it at once.
			// Waiting with what it holds, bodies held one another's
			// room, and those behind the first in line timed out (a
			// review: 3 of 8 chunked PUTs of 1 MiB, 503).
			release()
			if release, ok = g.hold(r.Context(), w, held+more); !ok {
				return nil, nil, nil
			}
		}
		held += more
		buf = append(make([]byte, 0, held), buf...)
	}
}

// deleteIfMatch deletes key only if its value has one of the ETags in
// ifMatch (*: if it exists), by compare-and-delete: 204 when deleted, 412
// when the precondition failed (also when the key is absent).
func (g *Gateway) deleteIfMatch(ctx context.Context, key, ifMatch string) (int, error) {
	return g.ifMatchLoop(ctx, key, ifMatch, func(cur []byte) (bool, error) {
		return g.cfg.Store.CompareAndDelete(ctx, key, cur)
	})
}

// ifMatchLoop reads key's value and, while it has one of the ETags in
// ifMatch, tries swap(value) until a swap succeeds (204) or the value
// read no longer matches or is gone (412). A swap that lost to another
// write reads the value again: one that brought the value back in its
// answer would leave a record of that size on the server, where every
// gateway connection shares one client's bound.
func (g *Gateway) ifMatchLoop(ctx context.Context, key, ifMatch string, swap func(cur []byte) (bool, error)) (int, error) {
	for {
		cur, err := g.cfg.Store.Get(ctx, key)
		if errors.Is(err, client.ErrNotFound) || err == nil && !tagsMatch(ifMatch, etag(cur)) {
			return http.StatusPreconditionFailed, nil
		}
		if err != nil {
			return 0, err
		}
		if cur == nil {
			cur = []byte{} // (present and empty: nil would mean absent)
		}
		ok, err := swap(cur)
		if err != nil {
			return 0, err
		}
		if ok {
			return http.StatusNoContent, nil
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
}

// put writes body under key's preconditions: 204 when written, 412 when a
// precondition failed.
func (g *Gateway) put(ctx context.Context, r *http.Request, key string, body []byte) (int, error) {
	st := g.cfg.Store
	ifMatch, ifNone := r.Header.Get("If-Match"), r.Header.Get("If-None-Match")
	switch {
	case ifMatch != "" && ifNone == "*":
		// If-Match holds only for a key that exists, If-None-Match: *
		// only for one that does not: never both (RFC 9110 13.2.2
		// evaluates If-Match first; a review saw an absent key written).
		return http.StatusPreconditionFailed, nil
	case ifNone == "*":
		ok, err := st.CompareAndSwap(ctx, key, nil, body)
		if err != nil || !ok {
			return http.StatusPreconditionFailed, err
		}
		return http.StatusNoContent, nil
	case ifMatch == "":
		return http.StatusNoContent, st.Put(ctx, key, body)
	}
	return g.ifMatchLoop(ctx, key, ifMatch, func(cur []byte) (bool, error) {
		return st.CompareAndSwap(ctx, key, cur, body)
	})
}

// tagsMatch reports whether an If-Match list (ETags separated by commas,
// or *) names tag: the strong comparison of RFC 9110 (a weak W/ tag never
// matches).
func tagsMatch(list, tag string) bool { return tagsMatchAs(list, tag, false) }

// noneMatch reports whether an If-None-Match list names tag: the weak
// comparison (W/"x" names "x").
func noneMatch(list, tag string) bool { return tagsMatchAs(list, tag, true) }

func tagsMatchAs(list, tag string, weak bool) bool {
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimSpace(t)
		if weak {
			t = strings.TrimPrefix(t, "W/")
		}
		if t == "*" || t == tag {
			return true
		}
	}
	return false
}

func (g *Gateway) serveStatus(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		httpError(w, http.StatusMethodNotAllowed, r.Method+" is not allowed on /v1/status")
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), g.cfg.Timeout) // (as serveKV's)
	defer cancel()
	st, err := g.cfg.Store.Status(ctx)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, context.DeadlineExceeded) {
			// No coordinator could be reached, or none answered in
			// time: the cluster is unavailable for now, as for a key.
			httpError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		storeError(w, err)
		return
	}
	out := *g.statusFor(st, httpRole(r))
	if out.Servers == nil {
		out.Servers = []status.Server{}
	}
	if out.Shards == nil {
		out.Shards = []status.Shard{}
	}
	if out.Coordinators == nil {
		out.Coordinators = []status.Coordinator{}
	}
	b, err := json.Marshal(out)
	if err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
}

// httpErrors is net/http's error log: each line at warn level, except
// failed TLS handshakes (at debug).
type httpErrors struct{ log zerolog.Logger }

func (h httpErrors) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	ev := h.log.Warn()
	if strings.Contains(msg, "TLS handshake error") {
		ev = h.log.Debug()
	}
	ev.Str("port", "http").Msg(msg)
	return len(p), nil
}
