package resp

import (
	"errors"
	"reflect"
	"testing"
)

func TestAppendCommand(t *testing.T) {
	got := string(AppendCommand([]byte("prefix"), []byte("SET"), []byte("k"), []byte("a\r\nb\x00")))
	want := "prefix*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\na\r\nb\x00\r\n"
	if got != want {
		t.Fatalf("AppendCommand = %q, want %q", got, want)
	}
	if got := string(AppendCommand(nil)); got != "*0\r\n" {
		t.Fatalf("empty command = %q", got)
	}
}

func TestParseReply(t *testing.T) {
	tests := []struct {
		in   string
		want Reply
	}{
		{"+OK\r\n", Reply{Type: '+', Str: []byte("OK")}},
		{"-ERR wrong type\r\n", Reply{Type: '-', Str: []byte("ERR wrong type")}},
		{":-42\r\n", Reply{Type: ':', Int: -42}},
		{"$5\r\nhe\r\no\r\n", Reply{Type: '$', Str: []byte("he\r\no")}},
		{"$0\r\n\r\n", Reply{Type: '$', Str: []byte{}}},
		{"$-1\r\n", Reply{Type: '$', Nil: true}},
		{"_\r\n", Reply{Type: '_', Nil: true}},
		{"*-1\r\n", Reply{Type: '*', Nil: true}},
		{"*0\r\n", Reply{Type: '*', Elems: []Reply{}}},
		{"*2\r\n$3\r\nGET\r\n*1\r\n:1\r\n", Reply{Type: '*', Elems: []Reply{
			{Type: '$', Str: []byte("GET")},
			{Type: '*', Elems: []Reply{{Type: ':', Int: 1}}},
		}}},
	}
	for _, tt := range tests {
		// Followed by another reply: n must stop at the first one's end.
		in := tt.in + "+NEXT\r\n"
		got, n, err := ParseReply([]byte(in))
		if err != nil || n != len(tt.in) || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseReply(%q) = %+v, %d, %v; want %+v, %d, nil", tt.in, got, n, err, tt.want, len(tt.in))
		}
		// Every strict prefix is "need more", never an error or a reply.
		for i := range len(tt.in) {
			if r, n, err := ParseReply([]byte(tt.in[:i])); n != 0 || err != nil {
				t.Errorf("ParseReply(%q) = %+v, %d, %v; want need-more", tt.in[:i], r, n, err)
			}
		}
	}
}

func TestParseReplyErrors(t *testing.T) {
	for _, in := range []string{
		"?what\r\n",
		"+bare LF\n",
		"\r\n",
		":12x\r\n",
		":\r\n",
		"$-2\r\n",
		"$abc\r\n",
		"$3\r\nabcX\r",
		"$99999999999\r\n",
		"*-5\r\n",
		"*1\r\n?\r\n",
		"_x\r\n",
	} {
		if r, n, err := ParseReply([]byte(in)); !errors.Is(err, ErrProtocol) {
			t.Errorf("ParseReply(%q) = %+v, %d, %v; want ErrProtocol", in, r, n, err)
		}
	}
	deep := ""
	for range maxReplyNest + 1 {
		deep += "*1\r\n"
	}
	if _, _, err := ParseReply([]byte(deep + ":1\r\n")); !errors.Is(err, ErrProtocol) {
		t.Errorf("nesting %d deep: %v, want ErrProtocol", maxReplyNest+1, err)
	}
	long := make([]byte, 70<<10)
	long[0] = '+'
	for i := 1; i < len(long); i++ {
		long[i] = 'a'
	}
	if _, _, err := ParseReply(long); !errors.Is(err, ErrProtocol) {
		t.Errorf("unterminated 70 KiB line: %v, want ErrProtocol", err)
	}
}

func FuzzParseReply(f *testing.F) {
	for _, s := range []string{"+OK\r\n", "$3\r\nabc\r\n", "*2\r\n:1\r\n$-1\r\n", "-ERR x\r\n", "_\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := ParseReply(b)
		if err != nil && n != 0 {
			t.Fatalf("error with n = %d", n)
		}
		if n < 0 || n > len(b) {
			t.Fatalf("n = %d of %d bytes", n, len(b))
		}
		if n > 0 {
			// A parsed reply parses the same from exactly its bytes.
			r2, n2, err2 := ParseReply(b[:n])
			if err2 != nil || n2 != n || !reflect.DeepEqual(r, r2) {
				t.Fatalf("reparse of %q: %+v %d %v", b[:n], r2, n2, err2)
			}
		}
	})
}
