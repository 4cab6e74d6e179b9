package bench

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"
)

// waitRedis answers WAIT with the number of replicas it pretends to have.
func waitRedis(replicas int, waits *int) *fakeRedis {
	f := newFakeRedis()
	f.reply = func(cmd []string) string {
		if cmd[0] == "WAIT" {
			*waits++ // under f.mu
			if len(cmd) != 3 || cmd[1] != "1" || cmd[2] != "250" {
				return "-ERR wrong WAIT arguments\r\n"
			}
			return ":" + strconv.Itoa(replicas) + "\r\n"
		}
		if cmd[0] == "SET" && cmd[1] == "bad" {
			return "-READONLY no writes\r\n"
		}
		return ""
	}
	return f
}

func TestRedisWaitPipeline(t *testing.T) {
	waits := 0
	f := waitRedis(1, &waits)
	tg := Redis(f.listen(t), RedisWait(1, 250*time.Millisecond))
	if tg.Name() != "redis+wait" {
		t.Errorf("Name = %q", tg.Name())
	}
	r, err := tg.NewRequester(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	batch := []Op{
		{Kind: Put, Key: []byte("a"), Value: []byte("1")},
		{Kind: Get, Key: []byte("a")},
		{Kind: Put, Key: []byte("bad"), Value: []byte("1")},
		{Kind: Put, Key: []byte("b"), Value: []byte("2")},
		{Kind: Get, Key: []byte("b")},
	}
	if err := r.Do(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	for i, op := range batch {
		if !op.Done || op.Latency <= 0 {
			t.Errorf("op %d not done: %+v", i, op)
		}
		if wantErr := i == 2; (op.Err != nil) != wantErr {
			t.Errorf("op %d err = %v", i, op.Err)
		}
		if op.Miss {
			t.Errorf("op %d missed: the gets follow their puts", i)
		}
	}
	var re RedisError
	if !errors.As(batch[2].Err, &re) || string(re) != "READONLY no writes" {
		t.Errorf("failed SET's error = %v", batch[2].Err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if waits != 3 {
		t.Errorf("%d WAITs for 3 SETs", waits)
	}
}

func TestRedisWaitNotReplicated(t *testing.T) {
	waits := 0
	f := waitRedis(0, &waits)
	r, err := Redis(f.listen(t), RedisWait(1, 250*time.Millisecond)).NewRequester(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	batch := []Op{{Kind: Put, Key: []byte("a"), Value: []byte("1")}, {Kind: Get, Key: []byte("a")}}
	if err := r.Do(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(batch[0].Err, ErrNotReplicated) || batch[1].Err != nil {
		t.Errorf("errs = %v, %v; want the put not replicated", batch[0].Err, batch[1].Err)
	}
}

func TestRedisWaitOption(t *testing.T) {
	tg := Redis("x:1", RedisWait(2, 0)).(*redisTarget)
	if tg.waitReplicas != 2 || tg.waitMillis != 1 {
		t.Errorf("RedisWait(2, 0) = %d replicas, %dms", tg.waitReplicas, tg.waitMillis)
	}
	if tg := Redis("x:1", RedisWait(0, time.Second)).(*redisTarget); tg.Name() != "redis" {
		t.Errorf("RedisWait(0) named %q", tg.Name())
	}
}

// A full run through the loop with WAIT and a pipeline.
func TestRunRedisWait(t *testing.T) {
	waits := 0
	f := waitRedis(1, &waits)
	res, err := Run(context.Background(), Config{Connections: 3, Ops: 300, Ratio: 0.5, Keys: 50, Pipeline: 4},
		Redis(f.listen(t), RedisWait(1, 250*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	if res.Target != "redis+wait" || res.Ops != 300 || res.Errors != 0 || res.Misses != 0 {
		t.Fatalf("result %+v", res)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if int64(waits) != res.Puts+res.Preload.Keys {
		t.Errorf("%d WAITs for %d puts", waits, res.Puts+res.Preload.Keys)
	}
}
