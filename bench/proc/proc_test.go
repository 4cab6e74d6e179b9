package proc

import (
	"errors"
	"os"
	"testing"

	"ftkv/status"
)

func TestIsServerCmdline(t *testing.T) {
	spawned := []string{"/x/bin/server", "-id", "2", "-inc", "1", "-coord", "127.0.0.1:7001", "-bind", "127.0.0.1"}
	cases := []struct {
		args []string
		id   int
		want bool
	}{
		{spawned, 2, true},
		{spawned, 1, false},
		{[]string{"server", "-id=1", "-coord", "x"}, 1, true},
		{[]string{"server", "-id", "1"}, 1, false},           // no -coord: not a spawned server
		{[]string{"server", "-coord", "x", "-id"}, 1, false}, // -id without value
		{[]string{"bash", "-c", "-id 1 -coord"}, 1, false},
		{nil, 0, false},
	}
	for _, c := range cases {
		if got := IsServerCmdline(c.args, c.id); got != c.want {
			t.Errorf("IsServerCmdline(%q, %d) = %v", c.args, c.id, got)
		}
	}
}

func TestCheckLocalServer(t *testing.T) {
	for _, s := range []status.Server{
		{ID: 1, Host: "alice@10.0.0.7", PID: os.Getpid()}, // remote: its pid means nothing here
		{ID: 1, Host: "localhost", PID: 0},
		{ID: 1, Host: "localhost", PID: os.Getpid()}, // this test binary is no ftkv server
		{ID: 1, Host: "localhost", PID: 1 << 30},     // no such process
	} {
		if err := CheckLocalServer(s); !errors.Is(err, ErrNotLocal) {
			t.Errorf("CheckLocalServer(%+v) = %v, want ErrNotLocal", s, err)
		}
	}
}

func TestProcGone(t *testing.T) {
	if Gone(os.Getpid()) {
		t.Error("this process is gone?")
	}
	if !Gone(1 << 30) {
		t.Error("a pid that cannot exist is running?")
	}
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tserver\nVmPeak:\t  900 kB\nVmRSS:\t   123456 kB\nThreads:\t5\n"
	if got, err := ParseVmRSS([]byte(status)); err != nil || got != 123456*1024 {
		t.Errorf("ParseVmRSS = %d, %v", got, err)
	}
	for _, bad := range []string{"Name: x\n", "VmRSS: 12 MB\n", "VmRSS: x kB\n"} {
		if _, err := ParseVmRSS([]byte(bad)); err == nil {
			t.Errorf("ParseVmRSS(%q) succeeded", bad)
		}
	}
	if rss, err := ReadRSS(os.Getpid()); err != nil || rss <= 0 {
		t.Errorf("ReadRSS(self) = %d, %v", rss, err)
	}
}
