package wire

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func metricsHeartbeat() *Heartbeat {
	h := sampleHeartbeat()
	h.MetricsAddr = "127.0.0.1:9103"
	return h
}

// The metrics address follows the storage report; a server without a
// log writes the report flagged absent, and a heartbeat without the
// address (an older server's) decodes with "".
func TestHeartbeatMetricsAddr(t *testing.T) {
	withLog := metricsHeartbeat()
	withLog.Storage = StorageReport{Fsync: "everysec", LogBytes: 7}
	withLog.Durable = []ShardIndex{{Shard: 1, Index: 3}}
	for _, h := range []*Heartbeat{metricsHeartbeat(), withLog} {
		enc := AppendHeartbeat(nil, h)
		got, err := DecodeHeartbeat(enc)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, *h) {
			t.Fatalf("round trip mismatch:\n got %+v\nwant %+v", got, *h)
		}
		if again := AppendHeartbeat(nil, &got); !bytes.Equal(again, enc) {
			t.Fatal("re-encoding differs")
		}
		plain := *h
		plain.MetricsAddr = ""
		old := AppendHeartbeat(nil, &plain)
		if got, err := DecodeHeartbeat(old); err != nil || got.MetricsAddr != "" {
			t.Fatalf("heartbeat without a metrics address: %+v, %v", got, err)
		}
		for i := len(old) + 1; i < len(enc); i++ {
			if _, err := DecodeHeartbeat(enc[:i]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("truncated to %d/%d bytes: err = %v, want ErrMalformed", i, len(enc), err)
			}
		}
	}
	// The absent-storage flag with nothing after it, unknown flags and
	// an empty address are refused (every encoding is canonical).
	enc := AppendHeartbeat(nil, metricsHeartbeat())
	base := len(AppendHeartbeat(nil, sampleHeartbeat()))
	bare := append(append([]byte(nil), enc[:base+4]...), storageAbsent)
	for name, b := range map[string][]byte{
		"absent, nothing after": bare,
		"unknown flags":         append(append([]byte(nil), enc[:base+4]...), 0x80),
		"empty address":         append(append([]byte(nil), bare...), 0, 0),
	} {
		if _, err := DecodeHeartbeat(b); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}
