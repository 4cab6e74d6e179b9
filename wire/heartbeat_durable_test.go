package wire

import (
	"reflect"
	"testing"
)

func TestHeartbeatDurableRoundTrip(t *testing.T) {
	base := Heartbeat{ID: 2, Incarnation: 3, Addr: "a", PeerAddr: "p", CtlAddr: "c", RSSBytes: 9}
	for _, h := range []Heartbeat{
		base,
		func() Heartbeat { h := base; h.Durable = []ShardIndex{{0, 17}, {2, 1 << 40}}; return h }(),
		func() Heartbeat {
			h := base
			h.Links = []LinkHealth{{Shard: 1, Secondary: 2, Incarnation: 4}}
			h.Durable = []ShardIndex{{1, 5}}
			return h
		}(),
	} {
		got, err := DecodeHeartbeat(AppendHeartbeat(nil, &h))
		if err != nil || !reflect.DeepEqual(got, h) {
			t.Fatalf("round trip of %+v: %+v, %v", h, got, err)
		}
	}
	// A heartbeat without the field (an older server) decodes with none.
	old := AppendHeartbeat(nil, &base)
	if h, err := DecodeHeartbeat(old); err != nil || h.Durable != nil {
		t.Fatalf("older heartbeat: %+v %v", h, err)
	}
}
