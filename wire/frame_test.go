package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// sampleFrames returns one representative frame per Op, plus frames with
// binary fields, empty fields and a maximal key. Names are unique.
func sampleFrames() []struct {
	name string
	f    Frame
} {
	maxKey := bytes.Repeat([]byte{0xA5, 0x00}, MaxKey/2)
	return []struct {
		name string
		f    Frame
	}{
		{"get", Frame{Op: OpGet, ID: 1, Epoch: 7, Client: 42, Seq: 3, Floor: 2, Key: []byte("user:1")}},
		{"get-not-found", Frame{Op: OpGet, Status: StatusNotFound, ID: 1, Epoch: 7}},
		{"put-nul", Frame{Op: OpPut, ID: 2, Epoch: 7, Client: 42, Seq: 4, Floor: 4, Key: []byte("a\x00b"), Value: []byte{0, 0, 1, 0}}},
		{"put-empty-key-and-value", Frame{Op: OpPut, ID: 3, Key: []byte{}, Value: []byte{}}},
		{"put-all-bytes", Frame{Op: OpPut, ID: ^uint64(0), Epoch: ^uint64(0), Client: ^uint64(0), Seq: ^uint64(0), Floor: ^uint64(0), Flags: 0xFF, Key: allBytes(), Value: allBytes(), Aux: allBytes()}},
		{"put-max-key", Frame{Op: OpPut, ID: 4, Key: maxKey, Value: []byte("v")}},
		{"delete", Frame{Op: OpDelete, ID: 5, Key: []byte("k")}},
		{"cas-old-present", Frame{Op: OpCAS, Flags: FlagOldPresent, ID: 6, Key: []byte("k"), Value: []byte("new"), Aux: []byte("old\x00")}},
		{"cas-old-absent", Frame{Op: OpCAS, ID: 7, Key: []byte("k"), Value: []byte("new")}},
		{"cas-mismatch", Frame{Op: OpCAS, Status: StatusMismatch, Flags: FlagOldPresent, ID: 6, Value: []byte("cur")}},
		{"append", Frame{Op: OpAppend, ID: 8, Key: []byte("log"), Value: []byte("\x00line\n")}},
		{"view", Frame{Op: OpView, ID: 9}},
		{"view-answer", Frame{Op: OpView, ID: 9, Value: AppendView(nil, sampleView())}},
		{"status", Frame{Op: OpStatus, ID: 10, Value: []byte(`{"servers":[]}`)}},
		{"heartbeat", Frame{Op: OpHeartbeat, Client: 3, Value: AppendHeartbeat(nil, sampleHeartbeat())}},
		{"setview", Frame{Op: OpSetView, Epoch: 12, Value: AppendView(nil, sampleView())}},
		{"replhello", Frame{Op: OpReplHello, Epoch: 12, Client: 1}},
		{"repl", Frame{Op: OpRepl, Flags: FlagSecondary, Seq: 100, Client: 42, Floor: 9, Key: []byte("k"), Value: []byte("v")}},
		{"repl-delete", Frame{Op: OpRepl, Flags: FlagDelete | FlagSecondary, Seq: 101, Key: []byte("k")}},
		{"repl-noop", Frame{Op: OpRepl, Flags: FlagNoop | FlagSecondary, Seq: 102, Client: 42}},
		{"replack", Frame{Op: OpReplAck, Seq: 102}},
		{"shutdown", Frame{Op: OpShutdown, ID: 11}},
		{"hello", Frame{Op: OpHello, Value: []byte("s3cret")}},
		{"seed", Frame{Op: OpSeed, ID: 3, Flags: FlagSeedDone, Value: AppendSeedEntry(nil, []byte("k\x00"), []byte("v"), 77)}},
		{"freeze", Frame{Op: OpFreeze, Seq: 2, Epoch: 5}},
		{"setcoord", Frame{Op: OpSetCoord, Value: []byte("127.0.0.1:7001")}},
		{"ping", Frame{Op: OpPing, ID: 9}},
		{"cad", Frame{Op: OpCAD, Flags: FlagOldPresent | FlagNoCurrent, ID: 10, Client: 3, Seq: 4, Key: []byte("k"), Aux: []byte("old")}},
		{"error-answer", Frame{Op: OpPut, Status: StatusError, ID: 2, Value: []byte("disk on fire")}},
		{"wrong-server", Frame{Op: OpGet, Status: StatusWrongServer, Epoch: 13}},
	}
}

func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// equalFrame compares frames treating nil and empty slices alike (the
// encoding cannot tell them apart).
func equalFrame(a, b *Frame) bool {
	return a.Op == b.Op && a.Status == b.Status && a.Flags == b.Flags &&
		a.ID == b.ID && a.Epoch == b.Epoch && a.Client == b.Client &&
		a.Seq == b.Seq && a.Floor == b.Floor &&
		bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) && bytes.Equal(a.Aux, b.Aux)
}

func TestEveryOpHasASample(t *testing.T) {
	seen := map[Op]bool{}
	for _, tc := range sampleFrames() {
		seen[tc.f.Op] = true
	}
	for op := OpInvalid + 1; op < opMax; op++ {
		if !seen[op] {
			t.Errorf("no sample frame for %v", op)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range sampleFrames() {
		t.Run(tc.name, func(t *testing.T) {
			prefix := []byte("junk")
			buf := Append(prefix, &tc.f)
			if !bytes.Equal(buf[:len(prefix)], []byte("junk")) {
				t.Fatalf("Append clobbered dst")
			}
			enc := buf[len(prefix):]
			if len(enc) != tc.f.Size() {
				t.Fatalf("encoded %d bytes, Size() = %d", len(enc), tc.f.Size())
			}
			if got := FrameLen(enc); got != len(enc) {
				t.Fatalf("FrameLen = %d, want %d", got, len(enc))
			}
			got, n, err := Decode(enc, 0)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if n != len(enc) {
				t.Fatalf("Decode consumed %d of %d bytes", n, len(enc))
			}
			if !equalFrame(&got, &tc.f) {
				t.Fatalf("round trip mismatch:\n got %+v\nwant %+v", got, tc.f)
			}
			if again := Append(nil, &got); !bytes.Equal(again, enc) {
				t.Fatalf("re-encoding differs")
			}
		})
	}
}

// Decoded slices alias the buffer but have their capacity clipped, so that
// appending to one field can never overwrite the next.
func TestDecodeClipsCapacity(t *testing.T) {
	f := Frame{Op: OpCAS, Key: []byte("key"), Value: []byte("val"), Aux: []byte("aux")}
	buf := Append(nil, &f)
	got, _, err := Decode(buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string][]byte{"Key": got.Key, "Value": got.Value, "Aux": got.Aux} {
		if cap(s) != len(s) {
			t.Errorf("%s: cap %d != len %d", name, cap(s), len(s))
		}
	}
	_ = append(got.Key, "XXXXXXXXX"...)
	if string(got.Value) != "val" || string(got.Aux) != "aux" {
		t.Fatalf("append to Key clobbered later fields: %q %q", got.Value, got.Aux)
	}
	// Aliasing is documented: the slices point into buf.
	buf[HeaderSize] = 'K'
	if string(got.Key) != "Key" {
		t.Fatalf("Key does not alias buf: %q", got.Key)
	}
}

func TestDecodeConcatenated(t *testing.T) {
	samples := sampleFrames()
	var buf []byte
	for i := range samples {
		buf = Append(buf, &samples[i].f)
	}
	rest := buf
	for i, tc := range samples {
		f, n, err := Decode(rest, 0)
		if err != nil || n == 0 {
			t.Fatalf("frame %d (%s): n=%d err=%v", i, tc.name, n, err)
		}
		if !equalFrame(&f, &tc.f) {
			t.Fatalf("frame %d (%s) mismatch:\n got %+v\nwant %+v", i, tc.name, f, tc.f)
		}
		rest = rest[n:]
	}
	if len(rest) != 0 {
		t.Fatalf("%d bytes left over", len(rest))
	}
	if _, n, err := Decode(rest, 0); n != 0 || err != nil {
		t.Fatalf("empty buffer: n=%d err=%v, want need-more", n, err)
	}
}

// TestDecodeSplit feeds every frame split at every byte, as a stream reader
// would receive it: the prefix must ask for more bytes, and prefix+rest must
// yield the frame. A trailing partial frame must not disturb the first.
func TestDecodeSplit(t *testing.T) {
	next := Append(nil, &Frame{Op: OpReplAck, Seq: 9})
	for _, tc := range sampleFrames() {
		t.Run(tc.name, func(t *testing.T) {
			enc := Append(nil, &tc.f)
			step := 1
			if len(enc) > 4096 {
				step = 997 // keep the maximal key quadratic-free; still hits header bytes below
			}
			for i := 0; i < len(enc); i++ {
				if i > HeaderSize+1 && i%step != 0 && i != len(enc)-1 {
					continue
				}
				stream := make([]byte, 0, len(enc)+len(next))
				stream = append(stream, enc[:i]...)
				f, n, err := Decode(stream, 0)
				if n != 0 || err != nil {
					t.Fatalf("prefix of %d/%d bytes: n=%d err=%v, want need-more", i, len(enc), n, err)
				}
				if !equalFrame(&f, &Frame{}) {
					t.Fatalf("prefix of %d bytes returned a non-zero frame %+v", i, f)
				}
				stream = append(stream, enc[i:]...)
				stream = append(stream, next[:i%len(next)]...)
				f, n, err = Decode(stream, 0)
				if err != nil || n != len(enc) {
					t.Fatalf("split at %d: n=%d err=%v, want n=%d", i, n, err, len(enc))
				}
				if !equalFrame(&f, &tc.f) {
					t.Fatalf("split at %d: mismatch", i)
				}
			}
		})
	}
}

func lengthPrefix(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }

func TestDecodeTooLarge(t *testing.T) {
	cases := []struct {
		name   string
		buf    []byte
		max    int
		tooBig bool
	}{
		{"default-limit+1", lengthPrefix(MaxFrame + 1), 0, true},
		{"negative-max-means-default", lengthPrefix(MaxFrame + 1), -5, true},
		{"max-uint32", lengthPrefix(^uint32(0)), 0, true},
		{"exactly-default-limit", lengthPrefix(MaxFrame), 0, false},
		{"custom-limit+1", lengthPrefix(1001), 1000, true},
		{"exactly-custom-limit", lengthPrefix(1000), 1000, false},
		{"custom-limit-below-header", lengthPrefix(HeaderSize - 4), 10, true},
		{"with-body-bytes", append(lengthPrefix(MaxFrame+1), Version, byte(OpGet)), 0, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, n, err := Decode(tc.buf, tc.max)
			if n != 0 {
				t.Fatalf("n = %d, want 0", n)
			}
			if tc.tooBig {
				if !errors.Is(err, ErrTooLarge) {
					t.Fatalf("err = %v, want ErrTooLarge", err)
				}
				if f.Key != nil || f.Value != nil || f.Aux != nil {
					t.Fatalf("refused frame carries data: %+v", f)
				}
			} else if err != nil {
				t.Fatalf("err = %v, want need-more", err)
			}
		})
	}
}

func TestDecodeTooLargeDoesNotAllocate(t *testing.T) {
	buf := lengthPrefix(^uint32(0))
	allocs := testing.AllocsPerRun(100, func() {
		_, _, err := Decode(buf, 0)
		if err == nil {
			panic("no error")
		}
	})
	// The error value itself (fmt.Errorf) may allocate a little; the frame
	// body (4 GiB here) must not be.
	if allocs > 5 {
		t.Fatalf("%v allocations to refuse an oversize frame", allocs)
	}
}

// corrupt returns a valid encoding of f modified by mod.
func corrupt(f Frame, mod func(b []byte)) []byte {
	b := Append(nil, &f)
	mod(b)
	return b
}

func TestDecodeErrors(t *testing.T) {
	base := Frame{Op: OpPut, ID: 1, Key: []byte("key"), Value: []byte("value"), Aux: []byte("x")}
	put32 := func(off int, v uint32) func([]byte) {
		return func(b []byte) { binary.BigEndian.PutUint32(b[off:], v) }
	}
	setByte := func(off int, v byte) func([]byte) {
		return func(b []byte) { b[off] = v }
	}
	cases := []struct {
		name string
		buf  []byte
		want error
	}{
		{"version-0", corrupt(base, setByte(4, 0)), ErrVersion},
		{"version-2", corrupt(base, setByte(4, 2)), ErrVersion},
		{"version-255-header-only", corrupt(base, setByte(4, 255))[:HeaderSize], ErrVersion},
		{"version-early-5-bytes", corrupt(base, setByte(4, 2))[:5], ErrVersion},
		{"length-zero", lengthPrefix(0), ErrMalformed},
		{"length-header-minus-1", lengthPrefix(HeaderSize - 5), ErrMalformed},
		{"key-len-too-big", corrupt(base, put32(48, 4)), ErrMalformed},
		{"key-len-too-small", corrupt(base, put32(48, 2)), ErrMalformed},
		{"value-len-wrong", corrupt(base, put32(52, 6)), ErrMalformed},
		{"aux-len-wrong", corrupt(base, put32(56, 0)), ErrMalformed},
		{"field-lens-overflow-uint32", corrupt(base, func(b []byte) {
			// 3 + 0xFFFFFFFF + 0xFFFFFFFF + ... wraps in uint32 arithmetic;
			// the decoder must add them without overflow.
			binary.BigEndian.PutUint32(b[48:], 0xFFFFFFFF)
			binary.BigEndian.PutUint32(b[52:], 0xFFFFFFFF)
			binary.BigEndian.PutUint32(b[56:], 3+5+1+2)
		}), ErrMalformed},
		{"field-lens-wrong-header-only", corrupt(base, put32(48, 100))[:HeaderSize], ErrMalformed},
		{"length-larger-than-fields", corrupt(base, func(b []byte) {
			binary.BigEndian.PutUint32(b[0:], binary.BigEndian.Uint32(b)+1)
		}), ErrMalformed},
		{"op-invalid", corrupt(base, setByte(5, byte(OpInvalid))), ErrMalformed},
		{"op-max", corrupt(base, setByte(5, byte(opMax))), ErrMalformed},
		{"op-255", corrupt(base, setByte(5, 255)), ErrMalformed},
		{"status-max", corrupt(base, setByte(6, byte(statusMax))), ErrMalformed},
		{"status-255", corrupt(base, setByte(6, 255)), ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, n, err := Decode(tc.buf, 0)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if n > len(tc.buf) {
				t.Fatalf("n = %d exceeds buffer of %d", n, len(tc.buf))
			}
		})
	}
}

func TestCheckLimits(t *testing.T) {
	mk := func(n int) []byte { return make([]byte, n) }
	cases := []struct {
		name            string
		key, value, aux []byte
		wantErr         bool
	}{
		{"empty", nil, nil, nil, false},
		{"all-at-limit", mk(MaxKey), mk(MaxValue), mk(MaxValue), false},
		{"key-over", mk(MaxKey + 1), nil, nil, true},
		{"value-over", nil, mk(MaxValue + 1), nil, true},
		{"aux-over", nil, nil, mk(MaxValue + 1), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckLimits(tc.key, tc.value, tc.aux)
			if tc.wantErr != (err != nil) {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("err = %v, want ErrTooLarge", err)
			}
		})
	}
	// A frame holding maximal fields must fit what a decoder accepts.
	if (&Frame{Key: mk(MaxKey), Value: mk(MaxValue), Aux: mk(MaxValue)}).Size()-4 > MaxFrame {
		t.Fatalf("a frame within CheckLimits exceeds MaxFrame")
	}
}

func TestSeedEntries(t *testing.T) {
	var b []byte
	b = AppendSeedEntry(b, []byte("a\x00"), []byte(""), 1)
	b = AppendSeedEntry(b, []byte(""), []byte("value"), 1<<40)
	if got := AppendSeedEntryString(nil, "a\x00", []byte(""), 1); string(got) != string(b[:len(got)]) {
		t.Fatal("AppendSeedEntryString differs from AppendSeedEntry")
	}
	k, v, ver, rest, err := NextSeedEntry(b)
	if err != nil || string(k) != "a\x00" || len(v) != 0 || ver != 1 {
		t.Fatalf("first entry: %q %q %d %v", k, v, ver, err)
	}
	k, v, ver, rest, err = NextSeedEntry(rest)
	if err != nil || len(k) != 0 || string(v) != "value" || ver != 1<<40 || len(rest) != 0 {
		t.Fatalf("second entry: %q %q %d %v", k, v, ver, err)
	}
	for i := 0; i < len(b)-1; i++ {
		if _, _, _, _, err := NextSeedEntry(b[:i]); err == nil && i < 13 {
			t.Fatalf("truncated entry of %d bytes decoded", i)
		}
	}
}

func TestNames(t *testing.T) {
	for op := OpInvalid; op < opMax; op++ {
		if s := op.String(); s == "" || strings.HasPrefix(s, "OP(") {
			t.Errorf("Op %d has no name: %q", op, s)
		}
	}
	if got := opMax.String(); got != fmt.Sprintf("OP(%d)", uint8(opMax)) {
		t.Errorf("opMax.String() = %q", got)
	}
	for s := StatusOK; s < statusMax; s++ {
		if n := s.String(); n == "" || strings.HasPrefix(n, "STATUS(") {
			t.Errorf("Status %d has no name: %q", s, n)
		}
	}
	if got := Status(200).String(); got != "STATUS(200)" {
		t.Errorf("Status(200).String() = %q", got)
	}
	if OpPut.String() != "PUT" || StatusMismatch.String() != "MISMATCH" {
		t.Errorf("unexpected names %v %v", OpPut, StatusMismatch)
	}
}

func TestIsWrite(t *testing.T) {
	writes := map[Op]bool{OpPut: true, OpDelete: true, OpCAS: true, OpAppend: true, OpCAD: true}
	for op := OpInvalid; op <= opMax; op++ {
		if op.IsWrite() != writes[op] {
			t.Errorf("%v.IsWrite() = %v", op, op.IsWrite())
		}
	}
}

func TestFrameLen(t *testing.T) {
	for i := 0; i < 4; i++ {
		if got := FrameLen(make([]byte, i)); got != 0 {
			t.Errorf("FrameLen(%d bytes) = %d, want 0", i, got)
		}
	}
	if got := FrameLen(lengthPrefix(56)); got != HeaderSize {
		t.Errorf("FrameLen = %d, want %d", got, HeaderSize)
	}
}

func TestCountFrames(t *testing.T) {
	get := Append(nil, &Frame{Op: OpGet, ID: 1, Key: []byte("k")})
	put := Append(nil, &Frame{Op: OpPut, ID: 2, Key: []byte("k"), Value: make([]byte, 1000)})
	var many []byte
	for range 100 {
		many = append(many, get...)
	}
	cases := []struct {
		name string
		buf  []byte
		max  int
		want int
	}{
		{"nothing", nil, 10, 0},
		{"one whole frame", get, 10, 1},
		{"a frame and half a prefix", append(append([]byte{}, get...), 0, 0), 10, 2},
		{"a GET and the start of a PUT", append(append([]byte{}, get...), put[:100]...), 10, 2},
		{"100 GETs, counted to 10", many, 10, 10},
		{"100 GETs, counted to 1000", many, 1000, 100},
		{"a length of 4 GiB", []byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3}, 10, 1},
	}
	for _, tc := range cases {
		if got := CountFrames(tc.buf, tc.max); got != tc.want {
			t.Errorf("%s: CountFrames = %d, want %d", tc.name, got, tc.want)
		}
	}
}
