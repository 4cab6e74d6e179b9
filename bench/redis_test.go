package bench

import (
	"ftkv/bench/resp"

	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// pipeRequester connects a redisRequester to f over net.Pipe.
func pipeRequester(t *testing.T, f *fakeRedis) (*redisRequester, net.Conn) {
	t.Helper()
	client, server := net.Pipe()
	go f.serve(server)
	r := newRedisRequester(client)
	t.Cleanup(func() { r.Close() })
	return r, server
}

func TestRedisRequesterPipeline(t *testing.T) {
	f := newFakeRedis()
	r, _ := pipeRequester(t, f)
	ctx := context.Background()
	if err := r.ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	value := []byte("v\x00\r\nalue")
	batch := []Op{
		{Kind: Put, Key: []byte("a"), Value: value},
		{Kind: Get, Key: []byte("a")},
		{Kind: Get, Key: []byte("missing")},
		{Kind: Put, Key: []byte("b"), Value: value},
	}
	if err := r.Do(ctx, batch); err != nil {
		t.Fatalf("Do: %v", err)
	}
	for i, op := range batch {
		if !op.Done || op.Err != nil || op.Latency <= 0 {
			t.Errorf("op %d: done %v, err %v, latency %s", i, op.Done, op.Err, op.Latency)
		}
		if op.Miss != (i == 2) {
			t.Errorf("op %d: miss %v", i, op.Miss)
		}
	}
	if got := f.data["a"]; got != string(value) {
		t.Errorf("stored %q, want %q", got, value)
	}
	// A large reply exercises the read buffer's growth.
	big := make([]byte, 100<<10)
	big[7] = 'x'
	batch = []Op{{Kind: Put, Key: []byte("big"), Value: big}, {Kind: Get, Key: []byte("big")}}
	if err := r.Do(ctx, batch); err != nil || batch[1].Err != nil || batch[1].Miss {
		t.Fatalf("big value: %v, %+v", err, batch[1])
	}
}

func TestRedisRequesterErrorReply(t *testing.T) {
	f := newFakeRedis()
	f.reply = func(cmd []string) string {
		if cmd[0] == "SET" && cmd[1] == "bad" {
			return "-OOM command not allowed\r\n"
		}
		return ""
	}
	r, _ := pipeRequester(t, f)
	batch := []Op{{Kind: Put, Key: []byte("bad"), Value: []byte("x")}, {Kind: Get, Key: []byte("bad")}}
	if err := r.Do(context.Background(), batch); err != nil {
		t.Fatalf("an error reply broke the connection: %v", err)
	}
	var re RedisError
	if !errors.As(batch[0].Err, &re) || string(re) != "OOM command not allowed" {
		t.Errorf("op 0 err = %v, want RedisError", batch[0].Err)
	}
	if batch[1].Err != nil || !batch[1].Miss {
		t.Errorf("op 1 = %+v, want a miss", batch[1])
	}
}

func TestRedisRequesterWrongType(t *testing.T) {
	f := newFakeRedis()
	f.reply = func(cmd []string) string { return ":1\r\n" }
	r, _ := pipeRequester(t, f)
	batch := []Op{{Kind: Get, Key: []byte("k")}}
	if err := r.Do(context.Background(), batch); err != nil || !errors.Is(batch[0].Err, resp.ErrProtocol) {
		t.Fatalf("Do = %v, op err %v; want the op to fail with ErrProtocol", err, batch[0].Err)
	}
}

func TestRedisRequesterBroken(t *testing.T) {
	f := newFakeRedis()
	r, server := pipeRequester(t, f)
	server.Close()
	batch := []Op{{Kind: Get, Key: []byte("k")}}
	if err := r.Do(context.Background(), batch); err == nil {
		t.Fatalf("Do on a closed connection succeeded")
	}
}

func TestRedisRequesterCancel(t *testing.T) {
	client, server := net.Pipe() // nobody answers
	defer server.Close()
	go func() { // swallow the request
		b := make([]byte, 1024)
		for {
			if _, err := server.Read(b); err != nil {
				return
			}
		}
	}()
	r := newRedisRequester(client)
	defer r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	err := r.Do(ctx, []Op{{Kind: Get, Key: []byte("k")}})
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("Do = %v after %s; want an error soon after cancel", err, time.Since(start))
	}
}

func TestRedisTargetPingRefused(t *testing.T) {
	f := newFakeRedis()
	f.reply = func(cmd []string) string { return "-NOAUTH Authentication required.\r\n" }
	addr := f.listen(t)
	_, err := Redis(addr).NewRequester(context.Background())
	var re RedisError
	if !errors.As(err, &re) {
		t.Fatalf("NewRequester = %v, want the NOAUTH error", err)
	}
}

func TestAppendOp(t *testing.T) {
	op := Op{Kind: Get, Key: []byte("key:00000001")}
	if got := string(appendOp(nil, &op)); got != "*2\r\n$3\r\nGET\r\n$12\r\nkey:00000001\r\n" {
		t.Fatalf("GET = %q", got)
	}
}
