package limits

import (
	"flag"
	"slices"
	"testing"
	"time"
)

func TestParseBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"4194304", 4 << 20, true}, {"4mb", 4 << 20, true}, {"4MiB", 4 << 20, true},
		{"64k", 64 << 10, true}, {"1G", 1 << 30, true}, {"12b", 12, true},
		{"", 0, false}, {"-1", 0, false}, {"4 tb", 0, false}, {"mb", 0, false}, {"1.5mb", 0, false},
		{"99999999999999gb", 0, false},
	} {
		got, err := ParseBytes(tc.in)
		if (err == nil) != tc.ok || (tc.ok && got != tc.want) {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// A limit set in the file reaches the server as its flag; a flag wins over
// the file; limits left at zero are not passed (the server's default holds).
func TestLinesFlagsArgs(t *testing.T) {
	var file Config
	for line, val := range map[string]string{"max_clients": "500", "output_soft_limit": "1mb", "session_ttl": "2s"} {
		s, ok := Lookup(line)
		if !ok {
			t.Fatalf("no setting %s", line)
		}
		if err := s.Set(&file, val); err != nil {
			t.Fatal(err)
		}
	}
	var flags Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	Flags(fs, &flags)
	if err := fs.Parse([]string{"-max-clients", "700", "-frame-timeout", "3s"}); err != nil {
		t.Fatal(err)
	}
	file.Override(flags)
	want := []string{"-max-clients", "700", "-output-soft-limit", "1048576", "-frame-timeout", "3s", "-session-ttl", "2s"}
	if got := file.Args(); !slices.Equal(got, want) {
		t.Fatalf("Args = %q, want %q", got, want)
	}
	// What the server parses back is what the file said.
	var back Config
	fs2 := flag.NewFlagSet("server", flag.ContinueOnError)
	Flags(fs2, &back)
	if err := fs2.Parse(file.Args()); err != nil {
		t.Fatal(err)
	}
	if back != file {
		t.Fatalf("round trip: %+v, want %+v", back, file)
	}
	d := back.WithDefaults()
	if d.InputBudget != DefaultInputBudget {
		t.Fatalf("WithDefaults: input budget %d, want %d", d.InputBudget, DefaultInputBudget)
	}
	if d.MaxClients != 700 || d.OutputHardLimit != DefaultOutputHardLimit || d.IdleTimeout != 0 || d.SessionTTL != 2*time.Second {
		t.Fatalf("WithDefaults = %+v", d)
	}
}

func TestBadValues(t *testing.T) {
	var c Config
	for line, val := range map[string]string{"max_clients": "-3", "output_budget": "lots", "frame_timeout": "10", "idle_timeout": "-1s"} {
		s, _ := Lookup(line)
		if err := s.Set(&c, val); err == nil {
			t.Errorf("%s %s accepted", line, val)
		}
	}
	if _, ok := Lookup("max_client"); ok {
		t.Error("a misspelt line was found")
	}
	c = Config{OutputSoftLimit: 8 << 20, OutputHardLimit: 1 << 20}
	if c.Validate() == nil {
		t.Error("hard limit below soft limit accepted")
	}
	if (Config{}).Validate() != nil {
		t.Error("the defaults do not validate")
	}
	if (Config{InputBudget: 1 << 20}).Validate() == nil {
		t.Error("an input budget below the largest request accepted")
	}
}

// A flag set to 0 wins over the file's line: zero means the default (for
// idle_timeout: off), and the merged limit is not passed to the servers.
func TestZeroFlagWins(t *testing.T) {
	var file Config
	s, _ := Lookup("idle_timeout")
	if err := s.Set(&file, "30s"); err != nil {
		t.Fatal(err)
	}
	var flags Config
	fs := flag.NewFlagSet("coord", flag.ContinueOnError)
	Flags(fs, &flags)
	if err := fs.Parse([]string{"-idle-timeout", "0", "-max-clients", "0"}); err != nil {
		t.Fatal(err)
	}
	file.Override(flags)
	if file.IdleTimeout != 0 {
		t.Fatalf("idle timeout %s after -idle-timeout 0", file.IdleTimeout)
	}
	if args := file.Args(); len(args) != 0 {
		t.Fatalf("servers get %q, want nothing (their defaults)", args)
	}
	if d := file.WithDefaults(); d.MaxClients != DefaultMaxClients || d.IdleTimeout != 0 {
		t.Fatalf("WithDefaults: %+v", d)
	}
}

// input_budget is a line and a flag like the others, passed to the servers.
func TestInputBudgetSetting(t *testing.T) {
	var file Config
	s, ok := Lookup("input_budget")
	if !ok || s.Flag != "input-budget" || s.Default() != "64MiB" {
		t.Fatalf("input_budget setting: %+v %v", s, ok)
	}
	if err := s.Set(&file, "128mb"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"-input-budget", "134217728"}; !slices.Equal(file.Args(), want) {
		t.Fatalf("Args = %q, want %q", file.Args(), want)
	}
	if file.WithDefaults().InputBudget != 128<<20 {
		t.Fatalf("WithDefaults: %d", file.WithDefaults().InputBudget)
	}
}
