package cli

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"ftkv/client"
	"ftkv/wire"
)

func mustTokenize(t *testing.T, line string) []Token {
	t.Helper()
	toks, err := Tokenize(line)
	if err != nil {
		t.Fatalf("Tokenize(%q): %v", line, err)
	}
	return toks
}

func TestParseCommand(t *testing.T) {
	tests := []struct {
		line string
		want command
	}{
		{`P k v`, command{op: opPut, key: "k", value: []byte("v")}},
		{`put "a b" ""`, command{op: opPut, key: "a b", value: []byte{}}},
		{`g k`, command{op: opGet, key: "k"}},
		{`GET k`, command{op: opGet, key: "k"}},
		{`d k`, command{op: opDelete, key: "k"}},
		{`Del k`, command{op: opDelete, key: "k"}},
		{`A k "\0"`, command{op: opAppend, key: "k", value: []byte{0}}},
		{`T k old new`, command{op: opCAS, key: "k", old: []byte("old"), value: []byte("new")}},
		// Unquoted (nil) as old: only if absent. Quoted: the literal string.
		{`T k (nil) new`, command{op: opCAS, key: "k", old: nil, value: []byte("new")}},
		{`T k "(nil)" new`, command{op: opCAS, key: "k", old: []byte("(nil)"), value: []byte("new")}},
		// Empty old is a present empty value, not absent.
		{`T k "" new`, command{op: opCAS, key: "k", old: []byte{}, value: []byte("new")}},
		// (nil) is special only as T's old value.
		{`T k old (nil)`, command{op: opCAS, key: "k", old: []byte("old"), value: []byte("(nil)")}},
		{`P k (nil)`, command{op: opPut, key: "k", value: []byte("(nil)")}},
		{`status`, command{op: opStatus}},
		{`STATUS --json`, command{op: opStatus, json: true}},
		{`status -json`, command{op: opStatus, json: true}},
		{`help`, command{op: opHelp}},
		{`quit`, command{op: opQuit}},
		{`Exit`, command{op: opQuit}},
	}
	for _, tt := range tests {
		got, err := parseCommand(mustTokenize(t, tt.line))
		if err != nil {
			t.Errorf("%s: %v", tt.line, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %#v, want %#v", tt.line, got, tt.want)
		}
		if got.op == opCAS && (got.old == nil) != (tt.want.old == nil) {
			t.Errorf("%s: old nil = %v, want %v", tt.line, got.old == nil, tt.want.old == nil)
		}
	}
}

func TestParseCommandErrors(t *testing.T) {
	tests := []struct{ line, msg string }{
		{`X k`, `unknown command "X" (commands: P G D T A status shutdown help quit)`},
		{`PP k v`, `unknown command "PP"`},
		{`P k`, `P takes 2 arguments (P key value), got 1`},
		{`P k v extra`, `P takes 2 arguments (P key value), got 3`},
		{`G`, `G takes 1 argument (G key), got 0`},
		{`g a b`, `G takes 1 argument (G key), got 2`},
		{`D`, `D takes 1 argument (D key), got 0`},
		{`T k old`, `T takes 3 arguments (T key old new), got 2`},
		{`A k`, `A takes 2 arguments (A key value), got 1`},
		{`status --yaml`, `status takes only --json, got "--yaml"`},
		{`status --json x`, `status takes no arguments or --json, got 2`},
		{`quit now`, `quit takes no arguments, got 1`},
	}
	for _, tt := range tests {
		_, err := parseCommand(mustTokenize(t, tt.line))
		if err == nil || !strings.HasPrefix(err.Error(), tt.msg) {
			t.Errorf("%s: error %v, want %q", tt.line, err, tt.msg)
			continue
		}
		if code := exitCode(err); code != ExitUsage {
			t.Errorf("%s: exit code %d, want %d", tt.line, code, ExitUsage)
		}
	}
}

func TestParseCommandLimits(t *testing.T) {
	bigKey := strings.Repeat("k", wire.MaxKey+1)
	bigVal := strings.Repeat("v", wire.MaxValue+1)
	for _, toks := range [][]Token{
		{{Text: "G"}, {Text: bigKey}},
		{{Text: "P"}, {Text: "k"}, {Text: bigVal}},
		{{Text: "A"}, {Text: "k"}, {Text: bigVal}},
		{{Text: "T"}, {Text: "k"}, {Text: bigVal}, {Text: "v"}},
		{{Text: "T"}, {Text: "k"}, {Text: "v"}, {Text: bigVal}},
	} {
		_, err := parseCommand(toks)
		if !errors.Is(err, client.ErrTooLarge) || exitCode(err) != ExitUsage || !strings.Contains(err.Error(), "too large") {
			t.Errorf("%s with a big argument: %v (exit %d), want too large, exit 2", toks[0].Text, err, exitCode(err))
		}
	}
	// Exactly at the limits is fine.
	if _, err := parseCommand([]Token{{Text: "P"}, {Text: bigKey[1:]}, {Text: bigVal[1:]}}); err != nil {
		t.Errorf("key and value at the limits: %v", err)
	}
}
