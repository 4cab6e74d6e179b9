package gateway

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ftkv/client"
	"ftkv/limits"
)

func start(t *testing.T, st Store, tweak func(*Config)) *Gateway {
	t.Helper()
	cfg := Config{Store: st, Listen: "127.0.0.1:0", HTTP: "127.0.0.1:0", Timeout: 2 * time.Second,
		Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)}
	if tweak != nil {
		tweak(&cfg)
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = g.Close(ctx)
	})
	return g
}

// cmd encodes a command as a RESP array of bulk strings.
func cmd(args ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return b.String()
}

// liveHeap is the heap the gateway holds: in use after a collection,
// less what was allocated during the collection and until it is read.
// Those allocations were counted as in use whether they are garbage
// already or not, and a gateway busy making answers of 1 MiB values
// allocates tens of MiB meanwhile: without race instrumentation the
// same run measured from 19 to 146 MiB. What stays held is counted by
// the next sample.
func liveHeap() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	runtime.GC()
	runtime.ReadMemStats(&ms)
	during := ms.TotalAlloc - before
	if during >= ms.HeapInuse {
		return 0
	}
	return ms.HeapInuse - during
}

// sendNew sends in on a new connection, whose reads then end after d;
// the connection is closed when the test ends.
func sendNew(t *testing.T, addr, in string, d time.Duration) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if _, err := io.WriteString(nc, in); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(d))
	return nc
}

// exchange sends in on a new connection and reads exactly len(want) bytes.
func exchange(t *testing.T, addr, in string, want string) {
	t.Helper()
	nc := sendNew(t, addr, in, 5*time.Second)
	got := make([]byte, len(want))
	n, err := io.ReadFull(nc, got)
	if err != nil || string(got) != want {
		t.Fatalf("sent %q\ngot  %q (%v)\nwant %q", in, got[:n], err, want)
	}
}

// TestReplies checks answers byte for byte, in Redis 7's words, each
// table row on a connection of its own.
func TestReplies(t *testing.T) {
	g := start(t, newMemStore(), nil)
	for _, tc := range []struct{ name, in, want string }{
		{"ping", cmd("PING"), "+PONG\r\n"},
		{"ping msg", cmd("ping", "hi"), "$2\r\nhi\r\n"},
		{"inline", "PING\r\necho  \"a b\"\r\n", "+PONG\r\n$3\r\na b\r\n"},
		{"echo", cmd("ECHO", "x\r\ny"), "$4\r\nx\r\ny\r\n"},
		{"get absent", cmd("GET", "nope"), "$-1\r\n"},
		{"set get", cmd("SET", "k", "v\x00w") + cmd("GET", "k"), "+OK\r\n$3\r\nv\x00w\r\n"},
		{"empty value", cmd("SET", "e", "") + cmd("GET", "e") + cmd("STRLEN", "e") + cmd("EXISTS", "e"), "+OK\r\n$0\r\n\r\n:0\r\n:1\r\n"},
		{"unknown", cmd("FOO", "a", "b"), "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n"},
		{"unknown no args", cmd("foo"), "-ERR unknown command 'foo', with args beginning with: \r\n"},
		{"arity", cmd("GET"), "-ERR wrong number of arguments for 'get' command\r\n"},
		{"arity set", cmd("set", "a"), "-ERR wrong number of arguments for 'set' command\r\n"},
		{"set ex", cmd("SET", "a", "1", "EX", "10"), "-" + string(errNoExpiry) + "\r\n"},
		{"set keepttl", cmd("SET", "a", "1", "KEEPTTL"), "-" + string(errNoExpiry) + "\r\n"},
		{"set syntax", cmd("SET", "a", "1", "NX", "XX"), "-ERR syntax error\r\n"},
		{"set nx", cmd("SET", "n", "1", "NX") + cmd("SET", "n", "2", "NX") + cmd("GET", "n"), "+OK\r\n$-1\r\n$1\r\n1\r\n"},
		{"set xx", cmd("SET", "x", "1", "XX") + cmd("SET", "x", "1") + cmd("SET", "x", "2", "XX") + cmd("GET", "x"), "$-1\r\n+OK\r\n+OK\r\n$1\r\n2\r\n"},
		{"set get", cmd("SET", "sg", "1", "GET") + cmd("SET", "sg", "2", "GET"), "$-1\r\n$1\r\n1\r\n"},
		{"set nx get", cmd("SET", "sng", "1", "NX", "GET") + cmd("SET", "sng", "2", "NX", "GET") + cmd("GET", "sng"), "$-1\r\n$1\r\n1\r\n$1\r\n1\r\n"},
		{"setnx", cmd("SETNX", "s", "a") + cmd("SETNX", "s", "b") + cmd("GET", "s"), ":1\r\n:0\r\n$1\r\na\r\n"},
		{"getset", cmd("GETSET", "gs", "a") + cmd("GETSET", "gs", "b"), "$-1\r\n$1\r\na\r\n"},
		{"getdel", cmd("SET", "gd", "v\x00") + cmd("GETDEL", "gd") + cmd("GETDEL", "gd") + cmd("EXISTS", "gd") + cmd("GETDEL"),
			"+OK\r\n$2\r\nv\x00\r\n$-1\r\n:0\r\n-ERR wrong number of arguments for 'getdel' command\r\n"},
		{"incr", cmd("INCR", "i") + cmd("INCRBY", "i", "41") + cmd("DECR", "i") + cmd("DECRBY", "i", "-3") + cmd("GET", "i"),
			":1\r\n:42\r\n:41\r\n:44\r\n$2\r\n44\r\n"},
		{"incr not int", cmd("SET", "ni", "1.5") + cmd("INCR", "ni") + cmd("SET", "nj", "007") + cmd("INCR", "nj"),
			"+OK\r\n-ERR value is not an integer or out of range\r\n+OK\r\n-ERR value is not an integer or out of range\r\n"},
		{"incrby not int", cmd("INCRBY", "ii", "x"), "-ERR value is not an integer or out of range\r\n"},
		{"incr overflow", cmd("SET", "o", "9223372036854775807") + cmd("INCR", "o"), "+OK\r\n-ERR increment or decrement would overflow\r\n"},
		{"append", cmd("APPEND", "ap", "hello") + cmd("APPEND", "ap", " world") + cmd("GET", "ap") + cmd("STRLEN", "ap"),
			":5\r\n:11\r\n$11\r\nhello world\r\n:11\r\n"},
		{"del exists", cmd("MSET", "d1", "a", "d2", "b") + cmd("EXISTS", "d1", "d2", "d3", "d1") + cmd("DEL", "d1", "d2", "d3", "d1") + cmd("EXISTS", "d1"),
			"+OK\r\n:3\r\n:2\r\n:0\r\n"},
		{"mset mget", cmd("MSET", "m1", "a", "m2", "b", "m1", "c") + cmd("MGET", "m1", "m2", "m3"), "+OK\r\n*3\r\n$1\r\nc\r\n$1\r\nb\r\n$-1\r\n"},
		{"mset odd", cmd("MSET", "m1", "a", "m2"), "-ERR wrong number of arguments for 'mset' command\r\n"},
		{"select", cmd("SELECT", "0") + cmd("SELECT", "1") + cmd("SELECT", "x"),
			"+OK\r\n-ERR DB index is out of range\r\n-ERR value is not an integer or out of range\r\n"},
		{"config get", cmd("CONFIG", "GET", "save") + cmd("CONFIG", "GET", "appendonly") + cmd("CONFIG", "GET", "whatever"),
			"*2\r\n$4\r\nsave\r\n$0\r\n\r\n*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n*2\r\n$8\r\nwhatever\r\n$0\r\n\r\n"},
		{"config sub", cmd("CONFIG", "FOO"), "-ERR unknown subcommand 'FOO'. Try CONFIG HELP.\r\n"},
		{"client", cmd("CLIENT", "GETNAME") + cmd("CLIENT", "SETNAME", "app") + cmd("CLIENT", "GETNAME") + cmd("CLIENT", "SETNAME", "a b") +
			cmd("CLIENT", "SETINFO", "lib-name", "x") + cmd("CLIENT", "NOPE"),
			"$-1\r\n+OK\r\n$3\r\napp\r\n-" + string(errClientName) + "\r\n+OK\r\n-ERR unknown subcommand 'NOPE'. Try CLIENT HELP.\r\n"},
		{"client setinfo checked", cmd("CLIENT", "SETINFO", "lib-name", "a b") + cmd("CLIENT", "SETINFO", "LIB-VER", "1\nid=1") + cmd("CLIENT", "SETINFO", "lib-x", "a b"),
			"-ERR lib-name cannot contain spaces, newlines or special characters.\r\n-ERR lib-ver cannot contain spaces, newlines or special characters.\r\n-ERR Unrecognized option 'lib-x'\r\n"},
		{"command count", cmd("COMMAND", "COUNT"), fmt.Sprintf(":%d\r\n", len(specs))},
		{"client help", cmd("CLIENT", "HELP"), "*35\r\n+CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n+GETNAME\r\n"},
		{"config help", cmd("CONFIG", "HELP"), "*5\r\n+CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n+GET <pattern>\r\n"},
		{"command help", cmd("COMMAND", "HELP"), "*13\r\n+COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n"},
		{"type ttl unlink", cmd("SET", "tk", "v") + cmd("TYPE", "tk") + cmd("TYPE", "tnone") + cmd("TTL", "tk") + cmd("TTL", "tnone") +
			cmd("PTTL", "tk") + cmd("UNLINK", "tk", "tnone") + cmd("TYPE", "tk"),
			"+OK\r\n+string\r\n+none\r\n:-1\r\n:-2\r\n:-1\r\n:1\r\n+none\r\n"},
		{"auth without users", cmd("AUTH", "default", "x") + cmd("AUTH", "bob", "x") + cmd("AUTH", "x") + cmd("AUTH", "a", "b", "c"),
			"+OK\r\n-WRONGPASS invalid username-password pair or user is disabled.\r\n-" + string(errAuthDisabled) + "\r\n-ERR syntax error\r\n"},
		{"multi exec", cmd("MULTI") + cmd("SET", "txk", "1") + cmd("INCR", "txc") + cmd("MULTI") + cmd("EXEC") + cmd("MGET", "txk", "txc") + cmd("EXEC"),
			"-" + string(errNoMulti) + "\r\n-" + string(errInMulti) + "\r\n-" + string(errInMulti) + "\r\n-ERR MULTI calls can not be nested\r\n" +
				"-EXECABORT Transaction discarded because of previous errors.\r\n*2\r\n$-1\r\n$-1\r\n-ERR EXEC without MULTI\r\n"},
		{"multi discard", cmd("MULTI") + cmd("SET", "txk", "1") + cmd("DISCARD") + cmd("GET", "txk") + cmd("DISCARD"),
			"-" + string(errNoMulti) + "\r\n-" + string(errInMulti) + "\r\n+OK\r\n$-1\r\n-ERR DISCARD without MULTI\r\n"},
		{"command count x", cmd("COMMAND", "COUNT", "x"), "-ERR wrong number of arguments for 'command|count' command\r\n"},
		{"hello 3", cmd("HELLO", "3") + cmd("GET", "absent") + cmd("MGET", "absent") + cmd("HELLO", "2") + cmd("GET", "absent"),
			"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.0.0\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:"},
		{"hello bad", cmd("HELLO", "4"), "-NOPROTO unsupported protocol version\r\n"},
		{"too large key", cmd("GET", strings.Repeat("k", maxKey+1)), "-ERR key of 65537 bytes is over ftkv's limit of 65536 bytes\r\n"},
		{"too large value", cmd("SET", "k", strings.Repeat("v", maxValue+1)), "-ERR value of 1048577 bytes is over ftkv's limit of 1048576 bytes\r\n"},
		{"dbsize", cmd("SET", "db", "1") + cmd("DBSIZE"), "+OK\r\n:"},
		{"quit", cmd("QUIT") + cmd("PING"), "+OK\r\n"},
		// RESET leaves an open MULTI (the SET after it runs) and clears
		// the name, as Redis 7 does.
		{"reset", cmd("CLIENT", "SETNAME", "app") + cmd("MULTI") + cmd("RESET") + cmd("CLIENT", "GETNAME") + cmd("SET", "rk", "1") + cmd("GET", "rk") + cmd("RESET", "x"),
			"+OK\r\n-" + string(errNoMulti) + "\r\n+RESET\r\n$-1\r\n+OK\r\n$1\r\n1\r\n-ERR wrong number of arguments for 'reset' command\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) { exchange(t, g.Addr(), tc.in, tc.want) })
	}
}

// TestResetProtocol: RESET after HELLO 3 answers in RESP2 again (a null
// is $-1, not _).
func TestResetProtocol(t *testing.T) {
	g := start(t, newMemStore(), nil)
	nc := dialRESP(t, g.Addr())
	if hello := readAnswer(t, nc, cmd("HELLO", "3")); !strings.HasPrefix(hello, "%7\r\n") {
		t.Fatalf("HELLO 3: %q", hello)
	}
	exchangeOn(t, nc, cmd("GET", "absent"), "_\r\n")
	exchangeOn(t, nc, cmd("RESET")+cmd("GET", "absent"), "+RESET\r\n$-1\r\n")
}

// TestClientInfo: CLIENT INFO describes the connection in Redis's format:
// its id and addresses, name, protocol and library.
func TestClientInfo(t *testing.T) {
	g := start(t, newMemStore(), nil)
	nc := dialRESP(t, g.Addr())
	exchangeOn(t, nc, cmd("CLIENT", "SETNAME", "app")+cmd("CLIENT", "SETINFO", "lib-name", "go-redis"), "+OK\r\n+OK\r\n")
	id := readAnswer(t, nc, cmd("CLIENT", "ID"))
	info := readAnswer(t, nc, cmd("CLIENT", "INFO"))
	line, ok := strings.CutPrefix(info, "$")
	if !ok {
		t.Fatalf("CLIENT INFO: not a bulk string: %q", info)
	}
	_, line, _ = strings.Cut(line, "\r\n")
	line = strings.TrimSuffix(line, "\n\r\n")
	fields := map[string]string{}
	for _, f := range strings.Fields(line) {
		k, v, _ := strings.Cut(f, "=")
		fields[k] = v
	}
	want := map[string]string{
		"id": strings.Trim(id, ":\r\n"), "addr": nc.LocalAddr().String(), "laddr": g.Addr(), "name": "app",
		"db": "0", "flags": "N", "cmd": "client|info", "user": "default", "resp": "2", "lib-name": "go-redis", "lib-ver": "",
	}
	for k, v := range want {
		if got, ok := fields[k]; !ok || got != v {
			t.Errorf("CLIENT INFO %s=%q (present: %v), want %q; line %q", k, got, ok, v, line)
		}
	}
	if got := readAnswer(t, nc, cmd("CLIENT", "INFO", "x")); got != "-ERR wrong number of arguments for 'client|info' command\r\n" {
		t.Errorf("CLIENT INFO x: %q", got)
	}
}

// clientLines parses a CLIENT LIST (or INFO) answer: one field map per line.
func clientLines(t *testing.T, answer string) []map[string]string {
	t.Helper()
	body, ok := strings.CutPrefix(answer, "$")
	if !ok {
		t.Fatalf("not a bulk string: %q", answer)
	}
	_, body, _ = strings.Cut(body, "\r\n")
	body = strings.TrimSuffix(body, "\r\n")
	var out []map[string]string
	for _, l := range strings.Split(strings.TrimSuffix(body, "\n"), "\n") {
		if l == "" {
			continue
		}
		m := map[string]string{}
		for _, f := range strings.Fields(l) {
			k, v, _ := strings.Cut(f, "=")
			m[k] = v
		}
		out = append(out, m)
	}
	return out
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestClientList: CLIENT LIST shows every open connection, by id: the
// asker's running CLIENT LIST, another's name and last command; TYPE and
// ID select, as in Redis; a closed connection leaves the list.
func TestClientList(t *testing.T) {
	g := start(t, newMemStore(), nil)
	me := dialRESP(t, g.Addr())
	other := dialRESP(t, g.Addr())
	exchangeOn(t, other, cmd("CLIENT", "SETNAME", "worker")+cmd("GET", "k"), "+OK\r\n$-1\r\n")
	myID := strings.Trim(readAnswer(t, me, cmd("CLIENT", "ID")), ":\r\n")
	otherID := strings.Trim(readAnswer(t, other, cmd("CLIENT", "ID")), ":\r\n")
	exchangeOn(t, other, cmd("GET", "k"), "$-1\r\n")

	// (The two connections' ids follow the order their event loops took
	// them in, not the order they were dialled.)
	lines := clientLines(t, readAnswer(t, me, cmd("CLIENT", "LIST")))
	mine, others := 0, 1
	if mustAtoi(t, myID) > mustAtoi(t, otherID) {
		mine, others = 1, 0
	}
	if len(lines) != 2 || lines[mine]["id"] != myID || lines[others]["id"] != otherID {
		t.Fatalf("CLIENT LIST: %v, want ids %s (mine) and %s, by id", lines, myID, otherID)
	}
	if l := lines[mine]; l["cmd"] != "client|list" || l["idle"] != "0" || l["addr"] != me.LocalAddr().String() {
		t.Errorf("the asker's line: %v", l)
	}
	if l := lines[others]; l["cmd"] != "get" || l["name"] != "worker" || l["addr"] != other.LocalAddr().String() || l["laddr"] != g.Addr() {
		t.Errorf("the other's line: %v", l)
	}
	if got := clientLines(t, readAnswer(t, me, cmd("CLIENT", "LIST", "ID", otherID, "999"))); len(got) != 1 || got[0]["id"] != otherID {
		t.Errorf("CLIENT LIST ID %s 999: %v", otherID, got)
	}
	if got := clientLines(t, readAnswer(t, me, cmd("CLIENT", "LIST", "TYPE", "normal"))); len(got) != 2 {
		t.Errorf("CLIENT LIST TYPE normal: %v", got)
	}
	exchangeOn(t, me, cmd("CLIENT", "LIST", "TYPE", "pubsub")+cmd("CLIENT", "LIST", "TYPE", "x")+cmd("CLIENT", "LIST", "ID", "a")+cmd("CLIENT", "LIST", "x")+
		cmd("CLIENT", "LIST", "TYPE", "normal", "ID", "1"),
		"$0\r\n\r\n-ERR Unknown client type 'x'\r\n-ERR Invalid client ID\r\n-ERR syntax error\r\n-ERR syntax error\r\n")
	// A refused MULTI shows as Redis shows an open one; a command not
	// served as NULL.
	exchangeOn(t, other, cmd("MULTI"), "-"+string(errNoMulti)+"\r\n")
	if l := clientLines(t, readAnswer(t, me, cmd("CLIENT", "LIST", "ID", otherID)))[0]; l["cmd"] != "multi" || l["flags"] != "x" || l["multi"] != "0" {
		t.Errorf("after MULTI: %v", l)
	}
	exchangeOn(t, other, cmd("DISCARD")+cmd("NOSUCH"), "+OK\r\n-ERR unknown command 'NOSUCH', with args beginning with: \r\n")
	if l := clientLines(t, readAnswer(t, me, cmd("CLIENT", "LIST", "ID", otherID)))[0]; l["cmd"] != "NULL" || l["flags"] != "N" || l["multi"] != "-1" {
		t.Errorf("after DISCARD and an unknown command: %v", l)
	}

	other.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines = clientLines(t, readAnswer(t, me, cmd("CLIENT", "LIST")))
		if len(lines) == 1 && lines[0]["id"] == myID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5 s after the other connection closed, CLIENT LIST: %v", lines)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestClientKill: CLIENT KILL closes the connections its filters select
// and counts them, the old form by address; the asker is spared unless
// it says SKIPME no; bad filters are refused in Redis 7.0's words and
// close nothing.
func TestClientKill(t *testing.T) {
	st := newMemStore()
	g := start(t, st, nil)
	me, a, b, c := dialRESP(t, g.Addr()), dialRESP(t, g.Addr()), dialRESP(t, g.Addr()), dialRESP(t, g.Addr())
	myID := strings.Trim(readAnswer(t, me, cmd("CLIENT", "ID")), ":\r\n")
	aID := strings.Trim(readAnswer(t, a, cmd("CLIENT", "ID")), ":\r\n")
	exchangeOn(t, b, cmd("PING"), "+PONG\r\n")
	exchangeOn(t, c, cmd("PING"), "+PONG\r\n")

	exchangeOn(t, me, cmd("CLIENT", "KILL")+cmd("CLIENT", "KILL", "1.2.3.4:5")+cmd("CLIENT", "KILL", "ID", "abc")+cmd("CLIENT", "KILL", "ID", "0")+
		cmd("CLIENT", "KILL", "TYPE", "foo")+cmd("CLIENT", "KILL", "SKIPME", "maybe")+cmd("CLIENT", "KILL", "nosuch", "1")+
		cmd("CLIENT", "KILL", "ID", aID, "TYPE")+cmd("CLIENT", "KILL", "USER", "nosuch")+cmd("CLIENT", "KILL", "TYPE", "pubsub")+
		cmd("CLIENT", "KILL", "ID", "99999")+cmd("CLIENT", "KILL", "ID", aID, "ADDR", b.LocalAddr().String())+
		cmd("CLIENT", "KILL", "ID", "0", "SKIPME")+cmd("CLIENT", "KILL", "TYPE", "bogus", "ID")+cmd("CLIENT", "KILL", "USER", ""),
		"-ERR wrong number of arguments for 'client|kill' command\r\n-ERR No such client\r\n-ERR client-id should be greater than 0\r\n"+
			"-ERR client-id should be greater than 0\r\n-ERR Unknown client type 'foo'\r\n-ERR syntax error\r\n-ERR syntax error\r\n"+
			"-ERR syntax error\r\n-ERR No such user 'nosuch'\r\n:0\r\n:0\r\n:0\r\n"+
			"-ERR client-id should be greater than 0\r\n-ERR Unknown client type 'bogus'\r\n-ERR No such user ''\r\n")
	for _, nc := range []net.Conn{a, b, c} {
		exchangeOn(t, nc, cmd("PING"), "+PONG\r\n") // (refused filters closed nothing)
	}

	exchangeOn(t, me, cmd("CLIENT", "KILL", "ID", aID), ":1\r\n")
	if !closedWithin(a, 5*time.Second) {
		t.Fatalf("connection %s still open 5 s after CLIENT KILL ID", aID)
	}
	exchangeOn(t, me, cmd("CLIENT", "KILL", b.LocalAddr().String()), "+OK\r\n")
	if !closedWithin(b, 5*time.Second) {
		t.Fatal("connection b still open 5 s after CLIENT KILL <its address>")
	}
	// TYPE normal with SKIPME yes (the default): everyone but the asker.
	exchangeOn(t, me, cmd("CLIENT", "KILL", "TYPE", "normal", "USER", "default", "LADDR", g.Addr()), ":1\r\n")
	if !closedWithin(c, 5*time.Second) {
		t.Fatal("connection c still open 5 s after CLIENT KILL TYPE normal")
	}
	exchangeOn(t, me, cmd("PING"), "+PONG\r\n")
	if got := clientLines(t, readAnswer(t, me, cmd("CLIENT", "LIST"))); len(got) != 1 || got[0]["id"] != myID {
		t.Errorf("CLIENT LIST after the kills: %v, want only %s", got, myID)
	}
	// SKIPME no: the asker is answered, then closed; what it sent after
	// never runs.
	exchangeOn(t, me, cmd("CLIENT", "KILL", "ID", myID, "SKIPME", "no")+cmd("SET", "after", "1"), ":1\r\n")
	if !closedWithin(me, 5*time.Second) {
		t.Fatal("the asker still open 5 s after CLIENT KILL ID <its own> SKIPME no")
	}
	st.mu.Lock()
	_, ran := st.m["after"]
	st.mu.Unlock()
	if ran {
		t.Error("a SET pipelined after CLIENT KILL of the asker ran")
	}
	me = dialRESP(t, g.Addr())
	exchangeOn(t, me, cmd("CLIENT", "KILL", me.LocalAddr().String()), "+OK\r\n")
	if !closedWithin(me, 5*time.Second) {
		t.Fatal("the asker still open 5 s after CLIENT KILL <its own address>")
	}
}

// TestClientKillOfItselfRunsNothingAfter: what a client pipelined after
// CLIENT KILL of itself never runs, also what the gateway reads after the
// kill ran and before the connection is closed (a review: SETs sent after
// it ran a batch at a time, in 9 runs of 137; Redis runs none).
func TestClientKillOfItselfRunsNothingAfter(t *testing.T) {
	st := newMemStore()
	g := start(t, st, nil)
	var after strings.Builder
	for i := range 20000 {
		after.WriteString(cmd("SET", fmt.Sprintf("t:%d", i), "v"))
	}
	for run := range 10 {
		nc := dialRESP(t, g.Addr())
		in := cmd("SET", "pre", "1") + cmd("CLIENT", "KILL", "ADDR", nc.LocalAddr().String(), "SKIPME", "no") + after.String()
		go io.WriteString(nc, in) // (it may fail once the gateway closes)
		if !closedWithin(nc, 10*time.Second) {
			t.Fatalf("run %d: the asker still open 10 s after CLIENT KILL of itself", run)
		}
		time.Sleep(20 * time.Millisecond)
		st.mu.Lock()
		n := len(st.m)
		st.mu.Unlock()
		if n != 1 {
			t.Fatalf("run %d: %d keys, want only pre: commands sent after CLIENT KILL of the asker ran", run, n)
		}
		nc.Close()
	}
}

// TestClientKillAfterItsClientClosed: a CLIENT KILL whose client closed
// before it ran (its writes still run) kills nobody: the address it names
// may be another connection's by now (a review: the port's next user was
// closed).
func TestClientKillAfterItsClientClosed(t *testing.T) {
	st := newMemStore()
	st.gate = make(chan struct{}) // the SETs wait until the close is seen
	g := start(t, st, nil)
	other := dialRESP(t, g.Addr())
	exchangeOn(t, other, cmd("PING"), "+PONG\r\n")
	nc, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(nc, cmd("SET", "a", "1")+cmd("SET", "b", "1")+cmd("CLIENT", "KILL", "TYPE", "normal")+cmd("SET", "c", "1")); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	time.Sleep(200 * time.Millisecond)
	close(st.gate)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if c, _ := st.Get(context.Background(), "c"); string(c) == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the closed client's writes did not run")
		}
		time.Sleep(10 * time.Millisecond)
	}
	exchangeOn(t, other, cmd("PING"), "+PONG\r\n")
}

func TestHello3Nulls(t *testing.T) {
	g := start(t, newMemStore(), nil)
	nc, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	io.WriteString(nc, cmd("HELLO", "3")+cmd("GET", "absent")+cmd("MGET", "absent", "absent")+cmd("CONFIG", "GET", "save")+cmd("PING"))
	r := bufio.NewReader(nc)
	var lines []string
	for len(lines) < 60 {
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %q: %v", lines, err)
		}
		lines = append(lines, l)
		if l == "+PONG\r\n" {
			break
		}
	}
	got := strings.Join(lines, "")
	want := "$7\r\nmodules\r\n*0\r\n_\r\n*2\r\n_\r\n_\r\n%1\r\n$4\r\nsave\r\n$0\r\n\r\n+PONG\r\n"
	if !strings.HasSuffix(got, want) {
		t.Fatalf("got %q\nwant suffix %q", got, want)
	}
}

// TestPipelineInOrder sends thousands of commands in one write, same keys
// and distinct ones mixed, and checks every answer in order.
func TestPipelineInOrder(t *testing.T) {
	g := start(t, newMemStore(), func(c *Config) { c.Limits.MaxInflight = 100 })
	var in, want strings.Builder
	const n = 3000
	for i := 0; i < n; i++ {
		k := fmt.Sprintf("k%d", i%50)
		v := fmt.Sprint(i)
		in.WriteString(cmd("SET", k, v) + cmd("GET", k) + cmd("INCR", "counter"))
		fmt.Fprintf(&want, "+OK\r\n$%d\r\n%s\r\n:%d\r\n", len(v), v, i+1)
	}
	exchange(t, g.Addr(), in.String(), want.String())
}

// TestCommandsRunAfterTheClientCloses: commands a client sent before it
// closed its connection (a script writing to /dev/tcp, `nc -N`) all run,
// as Redis runs what it read; only their answers go nowhere. They were
// dropped once the close was seen (a review: a SET and three INCRs sent
// and closed at once left nothing, 6 times of 6).
func TestCommandsRunAfterTheClientCloses(t *testing.T) {
	for _, how := range []string{"close", "half-close"} {
		t.Run(how, func(t *testing.T) {
			st := newMemStore()
			st.gate = make(chan struct{}) // the first SET waits until the close is seen
			g := start(t, st, nil)
			nc, err := net.Dial("tcp", g.Addr())
			if err != nil {
				t.Fatal(err)
			}
			in := cmd("SET", "k", "1") + cmd("INCR", "c") + cmd("INCR", "c") + cmd("INCR", "c") + cmd("SET", "last", "x")
			if _, err := io.WriteString(nc, in); err != nil {
				t.Fatal(err)
			}
			if how == "close" {
				nc.Close()
			} else {
				_ = nc.(*net.TCPConn).CloseWrite()
				defer nc.Close()
			}
			time.Sleep(200 * time.Millisecond)
			close(st.gate)
			deadline := time.Now().Add(5 * time.Second)
			for {
				c, _ := st.Get(context.Background(), "c")
				last, _ := st.Get(context.Background(), "last")
				if string(c) == "3" && string(last) == "x" {
					break
				}
				if time.Now().After(deadline) {
					k, _ := st.Get(context.Background(), "k")
					t.Fatalf("after the client's %s: k=%q c=%q last=%q, want every command run (1, 3, x)", how, k, c, last)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

func TestProtocolErrorCloses(t *testing.T) {
	g := start(t, newMemStore(), nil)
	exchange(t, g.Addr(), cmd("PING")+"*1\r\n$x\r\n", "+PONG\r\n-ERR Protocol error: invalid bulk length\r\n")
	nc, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	io.WriteString(nc, "*1\r\n$x\r\n")
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(nc); err != nil || !strings.HasPrefix(string(b), "-ERR Protocol error") {
		t.Fatalf("read %q, %v: want the error then end of stream", b, err)
	}
}

// TestHTTPOnRESPPortCloses: an HTTP request sent to the RESP port (a web
// page posting across protocols) runs none of its lines: the connection
// is closed at "POST" or "Host:", as Redis does. (An attack set a key with
// the body of a POST.)
func TestHTTPOnRESPPortCloses(t *testing.T) {
	st := newMemStore()
	g := start(t, st, nil)
	for _, req := range []string{
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18\r\n\r\nSET xproto pwned\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\nSET xproto pwned\r\n",
	} {
		nc := sendNew(t, g.Addr(), req, 5*time.Second)
		b, err := io.ReadAll(nc)
		if err != nil {
			t.Fatalf("%q: %v", req, err)
		}
		if strings.Contains(string(b), "OK") {
			t.Fatalf("%q was answered %q", req, b)
		}
	}
	exchange(t, g.Addr(), cmd("EXISTS", "xproto"), ":0\r\n")
}

// TestRequestOverLimit: an inline command still unfinished at the limit is
// refused (an array's declared lengths are, as soon as they are read:
// TestOverLimitAtOnce).
func TestRequestOverLimit(t *testing.T) {
	g := start(t, newMemStore(), func(c *Config) { c.MaxRequest = 4096 })
	nc, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	io.WriteString(nc, "SET k "+strings.Repeat("v", 8000))
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(nc)
	if !strings.HasPrefix(string(b), "-ERR Protocol error: request over the gateway's limit of 4096 bytes") {
		t.Fatalf("read %q", b)
	}
}

func TestMaxClients(t *testing.T) {
	g := start(t, newMemStore(), func(c *Config) { c.Limits = limits.Config{MaxClients: 2} })
	var conns []net.Conn
	for i := 0; i < 2; i++ {
		nc, err := net.Dial("tcp", g.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		conns = append(conns, nc)
	}
	exchangeOn(t, conns[0], cmd("PING"), "+PONG\r\n")
	exchangeOn(t, conns[1], cmd("PING"), "+PONG\r\n")
	nc, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(nc)
	if string(b) != errMaxClients {
		t.Fatalf("third connection read %q, want %q", b, errMaxClients)
	}
}

func exchangeOn(t *testing.T, nc net.Conn, in, want string) {
	t.Helper()
	io.WriteString(nc, in)
	_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(want))
	if _, err := io.ReadFull(nc, got); err != nil || string(got) != want {
		t.Fatalf("got %q (%v), want %q", got, err, want)
	}
}

// TestClusterErrors: a shard without a live copy answers CLUSTERDOWN, no
// answer in time TRYAGAIN, both in RESP and as 503 over HTTP.
func TestClusterErrors(t *testing.T) {
	st := newMemStore()
	g := start(t, st, nil)
	st.setFail(fmt.Errorf("%w (last error: %v)", context.DeadlineExceeded, fmt.Errorf("%w: shard 1", client.ErrUnavailable)))
	exchange(t, g.Addr(), cmd("GET", "k"), "-CLUSTERDOWN context deadline exceeded (last error: ftkv: shard unavailable: shard 1)\r\n")
	st.setFail(fmt.Errorf("%w (last error: connection refused)", context.DeadlineExceeded))
	exchange(t, g.Addr(), cmd("SET", "k", "v")+cmd("SET", "k", "v", "NX"), "-TRYAGAIN ftkv did not answer in time")
}

func TestObserve(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	errs := 0
	g := start(t, newMemStore(), func(c *Config) {
		c.Observe = func(cmd string, d time.Duration, err error) {
			mu.Lock()
			defer mu.Unlock()
			seen[cmd]++
			if err != nil {
				errs++
			}
		}
	})
	exchange(t, g.Addr(), cmd("SET", "a", "1")+cmd("SET", "b", "1")+cmd("GET", "a")+cmd("INCR", "a")+cmd("NOPE"),
		"+OK\r\n+OK\r\n$1\r\n1\r\n:2\r\n-ERR unknown command 'NOPE', with args beginning with: \r\n")
	mu.Lock()
	defer mu.Unlock()
	if seen["set"] != 2 || seen["get"] != 1 || seen["incr"] != 1 || seen["unknown"] != 1 || errs != 1 {
		t.Fatalf("observed %v with %d errors", seen, errs)
	}
	// After MULTI, commands are refused under their own names, and any
	// other name is "unknown": the metrics' labels stay bounded.
	clear(seen)
	mu.Unlock()
	exchange(t, g.Addr(), cmd("MULTI")+cmd("SET", "a", "2")+cmd("Random-Name-1")+cmd("EXEC"),
		"-"+string(errNoMulti)+"\r\n-"+string(errInMulti)+"\r\n-"+string(errInMulti)+"\r\n-EXECABORT Transaction discarded because of previous errors.\r\n")
	mu.Lock()
	if len(seen) != 4 || seen["multi"] != 1 || seen["set"] != 1 || seen["unknown"] != 1 || seen["exec"] != 1 {
		t.Fatalf("observed %v after MULTI", seen)
	}
}

// TestTransactionOfAClientThatClosed: a client that sends a refused
// transaction and then a write, and closes, has the transaction refused
// and the write after its EXEC run.
func TestTransactionOfAClientThatClosed(t *testing.T) {
	st := newMemStore()
	g := start(t, st, nil)
	nc, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(nc, cmd("MULTI")+cmd("SET", "in", "x")+cmd("EXEC")+cmd("SET", "after", "y")); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if v, _ := st.Get(context.Background(), "after"); string(v) == "y" {
			break
		}
		if time.Now().After(end) {
			t.Fatal("the SET after EXEC did not run")
		}
	}
	if v, err := st.Get(context.Background(), "in"); err == nil {
		t.Fatalf("the SET inside MULTI ran: %q", v)
	}
}

// TestNeverReadingClientBounded: a client pipelining GETs of a 1 MiB value
// and never reading its answers is closed; the gateway's heap stays small.
func TestNeverReadingClientBounded(t *testing.T) {
	st := newMemStore()
	st.m["big"] = make([]byte, maxValue)
	g := start(t, st, nil)
	nc, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	req := []byte(strings.Repeat(cmd("GET", "big"), 1000))
	// The live heap (liveHeap): the heap in use also counts the answers'
	// garbage not yet collected, which a CPU-starved collector lets pile
	// up (a -race run beside a CPU burner and other test runs on 2 CPUs
	// measured 512 MiB in use, the gateway's own buffers holding 6 MiB
	// when it closed the client).
	var peak uint64
	deadline := time.Now().Add(20 * time.Second)
	closed := false
	for time.Now().Before(deadline) && !closed {
		_ = nc.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := nc.Write(req); err != nil && !isTimeout(err) {
			closed = true
		}
		peak = max(peak, liveHeap())
	}
	t.Logf("peak live heap %d MiB; closed by the gateway: %v", peak>>20, closed)
	if !closed {
		t.Fatal("a client that never reads was not closed within 20s")
	}
	if peak > 512<<20 {
		t.Fatalf("live heap peaked at %d MiB", peak>>20)
	}
}

// TestNeverReadingClientsHeldAtTheirLimit: clients each send max_inflight
// GETs of a 1 MiB value at once, all read by the gateway before any answer
// is queued, and never read the answers. The answers stop piling up at the
// output limits (each connection's soft limit, the shared budget): the
// gateway's heap stays within a few MiB per connection, and an honest
// client is answered meanwhile. (An attack held 32 MiB per connection,
// 3.3 GB with 100 of them: only the reading paused, and every command
// already read ran and queued its answer.)
func TestNeverReadingClientsHeldAtTheirLimit(t *testing.T) {
	st := newMemStore()
	var req strings.Builder
	for i := range 64 {
		st.m[fmt.Sprintf("big%d", i)] = make([]byte, maxValue)
	}
	for i := range limits.DefaultMaxInflight {
		req.WriteString(cmd("GET", fmt.Sprintf("big%d", i%64))) // (distinct keys batch together)
	}
	st.m["small"] = []byte("v")
	g := start(t, st, nil)
	const conns = 8
	base := liveHeap()
	for range conns {
		sendNew(t, g.Addr(), req.String(), time.Minute)
	}
	// The live heap (collected first: the store's 64 MiB of values let
	// garbage pile up to as much again before a collection).
	var peak uint64
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		peak = max(peak, liveHeap())
		time.Sleep(100 * time.Millisecond)
	}
	exchange(t, g.Addr(), cmd("GET", "small"), "$1\r\nv\r\n")
	grew := int64(peak) - int64(base)
	t.Logf("live heap grew by %d MiB with %d clients not reading", grew>>20, conns)
	// Each connection: its soft limit (2 MiB) and the answer that crossed
	// it, in gnet's buffers (grown by powers of two), a value in flight
	// and its answer, its commands. (Without the hold: 600 MiB.)
	if limit := int64(conns*10<<20 + 16<<20); grew > limit {
		t.Fatalf("live heap grew by %d MiB, want at most %d MiB", grew>>20, limit>>20)
	}
}

// TestBudgetHeldClientsClosedAfterGrace: clients that never read, each
// held back below its soft limit because together they spent the output
// budget, are closed after output_grace like a client over its soft
// limit. (A review kept 30 such clients open for as long as they liked,
// the budget spent for good and every other connection slowed.)
func TestBudgetHeldClientsClosedAfterGrace(t *testing.T) {
	st := newMemStore()
	st.m["v"] = make([]byte, 200<<10)
	g := start(t, st, func(c *Config) {
		c.Limits = limits.Config{OutputSoftLimit: 4 << 20, OutputHardLimit: 64 << 20, OutputBudget: 8 << 20, OutputGrace: time.Second}
	})
	const conns = 30
	for range conns {
		sendNew(t, g.Addr(), strings.Repeat(cmd("GET", "v"), 2000), time.Minute)
	}
	deadline := time.Now().Add(8 * time.Second)
	for g.clients.Load() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d clients that never read are open 8 s later (grace 1 s)", g.clients.Load(), conns)
		}
		time.Sleep(50 * time.Millisecond)
	}
	exchange(t, g.Addr(), cmd("PING"), "+PONG\r\n")
	// The operator sees them closed.
	m := NewMetrics()
	m.Attach(g)
	var b bytes.Buffer
	m.reg.Write(&b)
	_, limit, evicted := g.Closed()
	t.Logf("closed for a limit: %d, of them for the output budget: %d", limit, evicted)
	for _, want := range []string{
		fmt.Sprintf("ftkv_gateway_connections_limit_closed_total %d\n", conns),
		fmt.Sprintf("ftkv_gateway_connections_output_evicted_total %d\n", evicted),
		"ftkv_gateway_connections_rejected_total 0\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics: no %q in\n%s", want, b.String())
		}
	}
}

// TestPipelinedGetsBatch: a connection's pipelined GETs of small values
// go to the cluster together, from its second pipeline on (its first GET
// runs alone while the size of its values is unknown). (The bound on a
// batch's answers once kept every GET of a pipeline alone: the size was
// learnt only from batches, and a GET run alone taught nothing; GET at
// P16 through the gateway fell from about 0.6x Redis to 0.27x.)
func TestPipelinedGetsBatch(t *testing.T) {
	st := newMemStore()
	var req strings.Builder
	for i := range 16 {
		st.m[fmt.Sprintf("k%d", i)] = []byte("v")
		req.WriteString(cmd("GET", fmt.Sprintf("k%d", i)))
	}
	g := start(t, st, nil)
	want := strings.Repeat("$1\r\nv\r\n", 16)
	nc := sendNew(t, g.Addr(), req.String(), 5*time.Second)
	for round := range 3 {
		got := make([]byte, len(want))
		if _, err := io.ReadFull(nc, got); err != nil || string(got) != want {
			t.Fatalf("round %d: %q %v", round, got, err)
		}
		if round < 2 {
			if _, err := io.WriteString(nc, req.String()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := st.largestBatch.Load(); n < 8 {
		t.Fatalf("the largest batch of 3 pipelines of 16 GETs had %d operations", n)
	}
}

// TestSlowReaderGetsEveryAnswer: a client that sends 300 GETs of a 1 MiB
// value and reads nothing for a while (its commands are held back at its
// output limit) then reads every answer, whole and in order.
func TestSlowReaderGetsEveryAnswer(t *testing.T) {
	st := newMemStore()
	const keys = 64
	var req strings.Builder
	for k := range keys {
		big := make([]byte, maxValue)
		for i := range big {
			big[i] = byte(i*7 + k)
		}
		st.m[fmt.Sprintf("big%d", k)] = big
	}
	g := start(t, st, nil)
	const n = 300
	for i := range n {
		req.WriteString(cmd("GET", fmt.Sprintf("big%d", i%keys))) // (distinct keys batch together)
	}
	nc := sendNew(t, g.Addr(), req.String()+cmd("PING"), time.Minute)
	time.Sleep(time.Second)
	br := bufio.NewReaderSize(nc, 1<<20)
	got := make([]byte, maxValue+16)
	for i := range n {
		want := fmt.Sprintf("$%d\r\n%s\r\n", maxValue, st.m[fmt.Sprintf("big%d", i%keys)])
		if _, err := io.ReadFull(br, got[:len(want)]); err != nil || string(got[:len(want)]) != want {
			t.Fatalf("answer %d: %v (%d bytes differ)", i, err, len(want))
		}
	}
	if line, err := br.ReadString('\n'); err != nil || line != "+PONG\r\n" {
		t.Fatalf("after the GETs: %q %v", line, err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestManyConnectionsInOrder: connections that send at the same time
// (their commands share batches) each get their own answers in order.
func TestManyConnectionsInOrder(t *testing.T) {
	g := start(t, newMemStore(), nil)
	var wg sync.WaitGroup
	for c := 0; c < 20; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			nc, err := net.Dial("tcp", g.Addr())
			if err != nil {
				t.Error(err)
				return
			}
			defer nc.Close()
			for round := 0; round < 50; round++ {
				var in, want strings.Builder
				for i := 0; i < 1+round%17; i++ {
					k, v := fmt.Sprintf("c%d:%d", c, i), fmt.Sprintf("%d-%d", round, i)
					in.WriteString(cmd("SET", k, v))
					in.WriteString(cmd("GET", fmt.Sprintf("c%d:%d", c, i+100)))
					fmt.Fprintf(&want, "+OK\r\n$-1\r\n")
				}
				in.WriteString(cmd("GET", fmt.Sprintf("c%d:0", c)))
				fmt.Fprintf(&want, "$%d\r\n%d-0\r\n", len(fmt.Sprint(round))+2, round)
				io.WriteString(nc, in.String())
				_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
				got := make([]byte, want.Len())
				if _, err := io.ReadFull(nc, got); err != nil || string(got) != want.String() {
					t.Errorf("connection %d round %d: got %q (%v), want %q", c, round, got, err, want.String())
					return
				}
			}
		}(c)
	}
	wg.Wait()
}

// TestSplitAnywhere sends one pipeline (RESP and inline commands, binary
// values) cut at every point in turn, the two halves written apart: the
// answers never change.
func TestSplitAnywhere(t *testing.T) {
	g := start(t, newMemStore(), nil)
	in := cmd("SET", "k", "a\r\nb") + "GET k\r\n" + cmd("APPEND", "k", "\x00") + cmd("MGET", "k", "x") + "PING\r\n" + cmd("STRLEN", "k")
	want := "+OK\r\n$4\r\na\r\nb\r\n:5\r\n*2\r\n$5\r\na\r\nb\x00\r\n$-1\r\n+PONG\r\n:5\r\n"
	for cut := 1; cut < len(in); cut++ {
		nc, err := net.Dial("tcp", g.Addr())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(nc, cmd("SET", "k", "a\r\nb")) // the same start for every cut
		got := make([]byte, 5)
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(nc, got); err != nil {
			t.Fatal(err)
		}
		io.WriteString(nc, in[:cut])
		time.Sleep(time.Millisecond)
		io.WriteString(nc, in[cut:])
		got = make([]byte, len(want))
		if _, err := io.ReadFull(nc, got); err != nil || string(got) != want {
			t.Fatalf("cut at %d: got %q (%v), want %q", cut, got, err, want)
		}
		nc.Close()
	}
}

// TestGetsJumpingToLargeValuesBounded: clients that read many small
// values, then pipeline GETs of 1 MiB values without reading, do not make
// the gateway fetch 64 of them at once each: a batch's GETs take values of
// at most their cap, and a longer one runs again, alone, under the output
// limits. (An attack: 48 such connections, 1.6 GB; here 6 grew the live
// heap by about 400 MiB.) A client that reads gets every answer, in order.
func TestGetsJumpingToLargeValuesBounded(t *testing.T) {
	st := newMemStore()
	var req strings.Builder
	for i := range 200 {
		st.m[fmt.Sprintf("small%d", i)] = []byte("v")
	}
	for i := range 64 {
		st.m[fmt.Sprintf("big%d", i)] = bytes.Repeat([]byte{byte('a' + i%26)}, maxValue)
	}
	// Small GETs in batches of 64 (the estimate learns them small), then
	// the large ones.
	for round := range 20 {
		for i := range 64 {
			req.WriteString(cmd("GET", fmt.Sprintf("small%d", (round*64+i)%200)))
		}
	}
	for i := range 64 {
		req.WriteString(cmd("GET", fmt.Sprintf("big%d", i)))
	}
	g := start(t, st, nil)
	const conns = 6
	base := liveHeap()
	for range conns {
		sendNew(t, g.Addr(), req.String(), time.Minute)
	}
	var peak uint64
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		peak = max(peak, liveHeap())
		time.Sleep(50 * time.Millisecond)
	}
	grew := int64(peak) - int64(base)
	t.Logf("live heap grew by %d MiB with %d clients jumping to large values, not reading", grew>>20, conns)
	// As TestNeverReadingClientsHeldAtTheirLimit: a soft limit and what
	// crossed it per connection, in gnet's buffers grown by powers of two.
	if limit := int64(conns*10<<20 + 16<<20); grew > limit {
		t.Fatalf("live heap grew by %d MiB, want at most %d MiB", grew>>20, limit>>20)
	}

	// A reading client: small, large and SETs mixed, answered in order.
	var mixed strings.Builder
	var want strings.Builder
	for i := range 64 {
		mixed.WriteString(cmd("GET", fmt.Sprintf("small%d", i)))
		want.WriteString("$1\r\nv\r\n")
	}
	for i := range 8 {
		mixed.WriteString(cmd("GET", fmt.Sprintf("big%d", i)))
		want.WriteString(fmt.Sprintf("$%d\r\n%s\r\n", maxValue, strings.Repeat(string(rune('a'+i%26)), maxValue)))
		mixed.WriteString(cmd("SET", fmt.Sprintf("new%d", i), "x"))
		want.WriteString("+OK\r\n")
		mixed.WriteString(cmd("GET", fmt.Sprintf("new%d", i)))
		want.WriteString("$1\r\nx\r\n")
	}
	exchange(t, g.Addr(), mixed.String(), want.String())
}

// TestLongCommandReadOnce: a command of 2M small arguments (14 MB, under
// the 16 MiB request limit) sent at once is answered. Each read used to
// parse the command again from its start: 1M arguments took 6 to 10 s,
// and 1.9M ran into the frame timeout, the connection closed (a review).
// An inline line without its end past 64 KiB gets Redis's answer. Under
// the race detector 512K arguments (3.7 MB): 2M took 12-13 s to parse
// there (1M 7.3 s) on a quiet machine, and went over the 10 s frame
// timeout in a CI run beside other packages' tests; parsed from the
// start on each read, 512K would take about as long as 1M did without
// the race detector then, several times over. The request limit is
// raised to allow that many arguments (maxArgs: 262,144 under the
// default).
func TestLongCommandReadOnce(t *testing.T) {
	n := 2 << 20
	if raceEnabled {
		n = 512 << 10
	}
	g := start(t, newMemStore(), func(c *Config) { c.MaxRequest = 64 * (n + 1) })
	var b bytes.Buffer
	b.WriteString("*" + strconv.Itoa(n+1) + "\r\n$4\r\nNOPE\r\n")
	b.WriteString(strings.Repeat("$1\r\na\r\n", n))
	nc, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	go func() { _, _ = nc.Write(b.Bytes()) }()
	_ = nc.SetReadDeadline(time.Now().Add(60 * time.Second))
	start := time.Now()
	line, err := bufio.NewReader(nc).ReadString('\n')
	if err != nil {
		t.Fatalf("a command of %d arguments (%d bytes): %v after %v", n+1, b.Len(), err, time.Since(start))
	}
	if !strings.HasPrefix(line, "-ERR unknown command 'NOPE'") {
		t.Fatalf("a command of %d arguments: answered %q", n+1, line)
	}
	t.Logf("a command of %d arguments (%.1f MB) answered in %v", n+1, float64(b.Len())/1e6, time.Since(start))

	exchange(t, g.Addr(), "SET k "+strings.Repeat("v", 70<<10), "-ERR Protocol error: too big inline request\r\n")
}

// TestInfoForRedisCLIStat: INFO has the fields `redis-cli --stat` reads
// (without them it showed -9223372036854775808 for memory, blocked
// clients and connections: a review).
func TestInfoForRedisCLIStat(t *testing.T) {
	g := start(t, newMemStore(), nil)
	nc, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	info := readAnswer(t, nc, cmd("INFO"))
	for _, want := range []string{"\r\nconnected_clients:1\r\n", "\r\nblocked_clients:0\r\n", "\r\nused_memory:", "\r\ntotal_connections_received:1\r\n", "\r\ntotal_commands_processed:"} {
		if !strings.Contains(info, want) {
			t.Errorf("INFO lacks %q:\n%s", want, info)
		}
	}
	if strings.Contains(info, "\r\nused_memory:0\r\n") {
		t.Errorf("INFO says used_memory:0")
	}
}
