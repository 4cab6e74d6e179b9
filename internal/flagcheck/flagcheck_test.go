package flagcheck

import (
	"flag"
	"io"
	"testing"
)

func TestEmpty(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		except []string
		want   string
	}{
		{[]string{"-tls-ca", "ca.pem", "-n", "3"}, nil, ""},
		{[]string{"-n", "3"}, nil, ""},
		{[]string{"-tls-ca", ""}, nil, "tls-ca"},
		{[]string{"-tls-ca="}, nil, "tls-ca"},
		{[]string{"-user", "ops", "-f", ""}, nil, "f"},
		{[]string{"-f", ""}, []string{"f"}, ""},
		{[]string{"-v", "-n", "0"}, nil, ""},
		{[]string{"-limit", "5"}, nil, ""},
		{[]string{"-limit", ""}, nil, ""},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.String("tls-ca", "", "")
		fs.String("user", "", "")
		fs.String("f", "", "")
		fs.Int("n", 1, "")
		fs.Bool("v", false, "")
		fs.Func("limit", "", func(string) error { return nil })
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if got := Empty(fs, tc.except...); got != tc.want {
			t.Errorf("Empty(%q, except %q) = %q, want %q", tc.args, tc.except, got, tc.want)
		}
	}
}
