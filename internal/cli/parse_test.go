package cli

import (
	"errors"
	"reflect"
	"testing"
)

func TestTokenize(t *testing.T) {
	q := func(s string) Token { return Token{Text: s, Quoted: true} }
	u := func(s string) Token { return Token{Text: s} }
	tests := []struct {
		line string
		want []Token
	}{
		{``, nil},
		{"  \t ", nil},
		{`G key`, []Token{u("G"), u("key")}},
		{"  P\tk  v \r", []Token{u("P"), u("k"), u("v")}},
		{`P "a key" "a value"`, []Token{u("P"), q("a key"), q("a value")}},
		{`P "" ""`, []Token{u("P"), q(""), q("")}},
		{`P "say \"hi\"" "back\\slash"`, []Token{u("P"), q(`say "hi"`), q(`back\slash`)}},
		{`P k "a\nb\tc\rd"`, []Token{u("P"), u("k"), q("a\nb\tc\rd")}},
		{`P k "x\0y\0"`, []Token{u("P"), u("k"), q("x\x00y\x00")}},
		{`P k "\x00\xff\x41\xAb"`, []Token{u("P"), u("k"), q("\x00\xffA\xab")}},
		{"P k \"raw\x00nul\"", []Token{u("P"), u("k"), q("raw\x00nul")}},
		{`P k "#not a comment"`, []Token{u("P"), u("k"), q("#not a comment")}},
		// Unquoted words are literal: backslashes and inner quotes stay.
		{`P a\nb c"d`, []Token{u("P"), u(`a\nb`), u(`c"d`)}},
		{`T k (nil) "(nil)"`, []Token{u("T"), u("k"), u("(nil)"), q("(nil)")}},
		{`P "日本" "é"`, []Token{u("P"), q("日本"), q("é")}},
	}
	for _, tt := range tests {
		got, err := Tokenize(tt.line)
		if err != nil {
			t.Errorf("Tokenize(%q): %v", tt.line, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Tokenize(%q) = %#v, want %#v", tt.line, got, tt.want)
		}
	}
}

func TestTokenizeErrors(t *testing.T) {
	tests := []struct {
		line string
		col  int
		msg  string
	}{
		{`P k "unterminated`, 5, "unterminated quote"},
		{`P k "ends in backslash\`, 5, "unterminated quote"},
		{`P k "escaped quote at end\"`, 5, "unterminated quote"},
		{`P k "bad \q escape"`, 10, `unknown escape \q (use \" \\ \n \t \r \0 or \xHH)`},
		{"P k \"ctl \\\x07\"", 10, `unknown escape \ followed by byte 0x07 (use \" \\ \n \t \r \0 or \xHH)`},
		{`P k "\x4"`, 6, `\x needs two hex digits`},
		{`P k "\xzz"`, 6, `\x needs two hex digits`},
		{`P k "\x`, 6, `\x needs two hex digits`},
		{`P "a"b c`, 6, "closing quote must be followed by a blank"},
	}
	for _, tt := range tests {
		toks, err := Tokenize(tt.line)
		var se *SyntaxError
		if !errors.As(err, &se) {
			t.Errorf("Tokenize(%q) = %v, %v; want a SyntaxError", tt.line, toks, err)
			continue
		}
		if se.Col != tt.col || se.Msg != tt.msg {
			t.Errorf("Tokenize(%q): column %d %q, want column %d %q", tt.line, se.Col, se.Msg, tt.col, tt.msg)
		}
	}
}

// FuzzTokenize checks that no line panics and that any byte string survives
// a round trip through quoting.
func FuzzTokenize(f *testing.F) {
	for _, s := range []string{`P "a b" c`, `"\x00\"`, `"`, `\`, "\"\\x\xff", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = Tokenize(s)
		toks, err := Tokenize("P " + quote(s))
		if err != nil {
			t.Fatalf("quoted %q: %v", s, err)
		}
		if len(toks) != 2 || toks[1].Text != s || !toks[1].Quoted {
			t.Fatalf("quoted %q: got %#v", s, toks)
		}
	})
}

// quote writes s in the CLI's quoting, escaping every byte that needs it.
func quote(s string) string {
	b := []byte{'"'}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < ' ' || c >= 0x7f:
			b = append(b, '\\', 'x', "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
		default:
			b = append(b, c)
		}
	}
	return string(append(b, '"'))
}
