package hostile

import (
	"context"
	"encoding/json"
	"sync"
	"time"
)

// HeartbeatWatch samples, from the coordinator's status, how long ago one
// server's last heartbeat arrived: the liveness a flooded server must keep
// (a server silent for the failure timeout is failed over).
type HeartbeatWatch struct {
	mu      sync.Mutex
	max     time.Duration
	samples int
	cancel  context.CancelFunc
	done    chan struct{}
}

// WatchHeartbeats polls coord's status every interval (20ms when 0) until
// Stop and keeps the largest heartbeat age of server id.
func WatchHeartbeats(coord string, id int, interval time.Duration) *HeartbeatWatch {
	if interval <= 0 {
		interval = 20 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &HeartbeatWatch{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			if age, ok := heartbeatAge(ctx, coord, id); ok {
				w.mu.Lock()
				w.max = max(w.max, age)
				w.samples++
				w.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return w
}

// Stop ends the sampling and returns the largest age seen and how many
// samples it was taken from.
func (w *HeartbeatWatch) Stop() (maxAge time.Duration, samples int) {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.max, w.samples
}

func heartbeatAge(ctx context.Context, coord string, id int) (time.Duration, bool) {
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	raw, err := StatusJSON(rctx, coord)
	if err != nil {
		return 0, false
	}
	var st struct {
		Servers []struct {
			ID           int    `json:"id"`
			HeartbeatAge string `json:"heartbeat_age"`
		} `json:"servers"`
	}
	if json.Unmarshal(raw, &st) != nil {
		return 0, false
	}
	for _, s := range st.Servers {
		if s.ID == id {
			d, err := time.ParseDuration(s.HeartbeatAge)
			return d, err == nil
		}
	}
	return 0, false
}
