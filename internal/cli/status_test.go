package cli

import (
	"bytes"
	"encoding/json"
	"testing"

	"ftkv/status"
)

func fakeStatus() *status.Cluster {
	return &status.Cluster{
		Epoch: 7,
		Servers: []status.Server{
			{ID: 1, Addr: "127.0.0.1:41002", Host: "localhost", PID: 4243, Role: "primary(1) secondary(0)",
				State: "serving", Epoch: 7, Incarnation: 2, PrimaryKeys: 990, SecondaryKeys: 1000,
				PrimaryOf: []int{1}, SecondaryOf: []int{0}, HeartbeatAge: "12ms", Fsync: "always", LogBytes: 3 << 20},
			{ID: 0, Addr: "127.0.0.1:41001", Host: "localhost", PID: 4242, Role: "primary(0) secondary(2)",
				State: "serving", Epoch: 7, Incarnation: 1, PrimaryKeys: 1000, SecondaryKeys: 1010, Fsync: "always", LogBytes: 1536, DiskError: true},
			{ID: 2, Host: "alice@10.0.0.7", Role: "", State: "down\nhard", Epoch: 6, Incarnation: 1},
		},
	}
}

func TestStatusTable(t *testing.T) {
	var b bytes.Buffer
	if err := writeStatusTable(&b, fakeStatus()); err != nil {
		t.Fatal(err)
	}
	// Rows by id, aligned, "-" for unknown, control characters flattened.
	want := `ID  ADDR             HOST            PID   ROLE                     STATE      EPOCH  INC  PRIMARY  SECONDARY  FSYNC       LOG
0   127.0.0.1:41001  localhost       4242  primary(0) secondary(2)  serving    7      1    1000     1010       disk-error  1.5KiB
1   127.0.0.1:41002  localhost       4243  primary(1) secondary(0)  serving    7      2    990      1000       always      3.0MiB
2   -                alice@10.0.0.7  -     -                        down hard  6      1    0        0          -           -
epoch 7
`
	if got := b.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

func TestStatusTableGroup(t *testing.T) {
	st := fakeStatus()
	st.Term, st.Leader, st.Answered = 3, 1, 0
	st.Coordinators = []status.Coordinator{
		{ID: 2, RaftAddr: "127.0.0.1:7102", ClientAddr: "127.0.0.1:7020", ServersAddr: "127.0.0.1:7021", Role: "follower"},
		{ID: 0, RaftAddr: "127.0.0.1:7100", ClientAddr: "127.0.0.1:7000", ServersAddr: "127.0.0.1:7001", Role: "follower"},
		{ID: 1, RaftAddr: "127.0.0.1:7101", ClientAddr: "127.0.0.1:7010", ServersAddr: "127.0.0.1:7011", Role: "leader"},
	}
	var b bytes.Buffer
	if err := writeStatusTable(&b, st); err != nil {
		t.Fatal(err)
	}
	// The servers' table as for one coordinator, then the control plane.
	want := `ID  ADDR             HOST            PID   ROLE                     STATE      EPOCH  INC  PRIMARY  SECONDARY  FSYNC       LOG
0   127.0.0.1:41001  localhost       4242  primary(0) secondary(2)  serving    7      1    1000     1010       disk-error  1.5KiB
1   127.0.0.1:41002  localhost       4243  primary(1) secondary(0)  serving    7      2    990      1000       always      3.0MiB
2   -                alice@10.0.0.7  -     -                        down hard  6      1    0        0          -           -
epoch 7
term 3, leader 1, answered by 0 (a follower: no heartbeat figures)
COORD  CLIENT          SERVERS         RAFT            ROLE
0      127.0.0.1:7000  127.0.0.1:7001  127.0.0.1:7100  follower
1      127.0.0.1:7010  127.0.0.1:7011  127.0.0.1:7101  leader
2      127.0.0.1:7020  127.0.0.1:7021  127.0.0.1:7102  follower
`
	if got := b.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
	// Answered by the leader; no leader known.
	st.Answered = 1
	b.Reset()
	writeStatusTable(&b, st)
	if !bytes.Contains(b.Bytes(), []byte("\nterm 3, leader 1, answered by 1\n")) {
		t.Errorf("answered by the leader:\n%s", b.String())
	}
	st.Leader = -1
	b.Reset()
	writeStatusTable(&b, st)
	if !bytes.Contains(b.Bytes(), []byte("\nterm 3, leader unknown, answered by 1 (a follower")) {
		t.Errorf("no leader:\n%s", b.String())
	}
	// One coordinator: no control plane lines.
	st.Coordinators = st.Coordinators[:1]
	b.Reset()
	writeStatusTable(&b, st)
	if !bytes.HasSuffix(b.Bytes(), []byte("\nepoch 7\n")) {
		t.Errorf("single coordinator:\n%s", b.String())
	}
}

func TestStatusTableEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := writeStatusTable(&b, &status.Cluster{Epoch: 0}); err != nil {
		t.Fatal(err)
	}
	want := "ID  ADDR  HOST  PID  ROLE  STATE  EPOCH  INC  PRIMARY  SECONDARY  FSYNC  LOG\nepoch 0\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
	if err := writeStatusTable(&b, nil); err == nil {
		t.Error("nil status: no error")
	}
}

func TestStatusJSON(t *testing.T) {
	var b bytes.Buffer
	if err := writeStatusJSON(&b, fakeStatus()); err != nil {
		t.Fatal(err)
	}
	out := b.Bytes()
	if bytes.Count(out, []byte("\n")) != 1 || out[len(out)-1] != '\n' {
		t.Fatalf("want one JSON object on one line, got %q", out)
	}
	// What scripts rely on: these names and meanings.
	var got struct {
		Epoch   uint64 `json:"epoch"`
		Servers []struct {
			ID            *int    `json:"id"`
			Addr          *string `json:"addr"`
			Host          *string `json:"host"`
			PID           *int    `json:"pid"`
			State         *string `json:"state"`
			PrimaryKeys   *uint64 `json:"primary_keys"`
			SecondaryKeys *uint64 `json:"secondary_keys"`
		} `json:"servers"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if got.Epoch != 7 || len(got.Servers) != 3 {
		t.Fatalf("epoch %d, %d servers; want 7, 3", got.Epoch, len(got.Servers))
	}
	s := got.Servers[0]
	if s.ID == nil || *s.ID != 1 || *s.Addr != "127.0.0.1:41002" || *s.Host != "localhost" || *s.PID != 4243 ||
		*s.State != "serving" || *s.PrimaryKeys != 990 || *s.SecondaryKeys != 1000 {
		t.Errorf("server 0 = %+v", s)
	}
	// The whole status survives the round trip.
	var back status.Cluster
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	if back.Servers[0].HeartbeatAge != "12ms" || back.Servers[0].PrimaryOf[0] != 1 {
		t.Errorf("round trip lost fields: %+v", back.Servers[0])
	}
}

func TestStatusJSONNoServers(t *testing.T) {
	var b bytes.Buffer
	if err := writeStatusJSON(&b, &status.Cluster{Epoch: 3}); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), `{"epoch":3,"servers":[],"shards":[],"term":0,"leader":0,"answered_by":0,"coordinators":[]}`+"\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
