package wire

import (
	"bytes"
	"testing"
)

// fuzzSeedFrames are small real frames: the maximal-key sample is left out
// so the fuzzer's inputs stay short.
func fuzzSeedFrames() [][]byte {
	var out [][]byte
	for _, tc := range sampleFrames() {
		if tc.f.Size() > 4096 {
			continue
		}
		out = append(out, Append(nil, &tc.f))
	}
	for _, tc := range goldenFrames {
		out = append(out, Append(nil, &tc.f))
	}
	return out
}

func FuzzDecode(f *testing.F) {
	seeds := fuzzSeedFrames()
	for i, enc := range seeds {
		f.Add(enc)
		// Splits: the prefix a reader might hold, and the frame followed by
		// part of the next one.
		for _, cut := range []int{1, 4, 5, HeaderSize - 1, HeaderSize, len(enc) - 1} {
			if cut > 0 && cut < len(enc) {
				f.Add(enc[:cut])
			}
		}
		next := seeds[(i+1)%len(seeds)]
		f.Add(append(append([]byte(nil), enc...), next...))
		f.Add(append(append([]byte(nil), enc...), next[:len(next)/2]...))
	}
	f.Add([]byte{})
	f.Add(lengthPrefix(MaxFrame + 1))
	f.Add(lengthPrefix(0))

	f.Fuzz(func(t *testing.T, buf []byte) {
		fr, n, err := Decode(buf, 0)
		if n < 0 || n > len(buf) {
			t.Fatalf("n = %d outside [0, %d]", n, len(buf))
		}
		if n == 0 && err == nil && len(buf) >= 4 && FrameLen(buf) <= len(buf) {
			t.Fatalf("need-more reported with the whole frame (%d bytes) in a %d-byte buffer", FrameLen(buf), len(buf))
		}
		if n > 0 {
			if n != FrameLen(buf) {
				t.Fatalf("n = %d but length prefix says %d", n, FrameLen(buf))
			}
			// Decode looks at nothing past the frame it reports.
			fr2, n2, err2 := Decode(buf[:n], 0)
			if n2 != n || (err == nil) != (err2 == nil) || !equalFrame(&fr, &fr2) {
				t.Fatalf("decoding buf[:n] differs: n %d/%d err %v/%v", n, n2, err, err2)
			}
		}
		if n > 0 && err == nil {
			if again := Append(nil, &fr); !bytes.Equal(again, buf[:n]) {
				t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, buf[:n])
			}
		}
		// Every strict prefix: never claims bytes it was not given, and a
		// prefix of a good frame only ever asks for more.
		for i := 0; i < len(buf) && (n == 0 || i < n); i++ {
			_, pn, perr := Decode(buf[:i], 0)
			if pn > i {
				t.Fatalf("prefix of %d bytes: n = %d", i, pn)
			}
			if n > 0 && err == nil && (pn != 0 || perr != nil) {
				t.Fatalf("prefix of %d bytes of a good %d-byte frame: n=%d err=%v", i, n, pn, perr)
			}
		}
		// A smaller limit never makes a decoder accept more.
		_, sn, serr := Decode(buf, 100)
		if sn > len(buf) || (serr == nil && sn > 0 && sn-4 > 100) {
			t.Fatalf("limit 100: n = %d err = %v", sn, serr)
		}
	})
}

func FuzzDecodeView(f *testing.F) {
	f.Add(AppendView(nil, &View{}))
	f.Add(AppendView(nil, sampleView()))
	f.Add(AppendView(nil, manyServersView(5, 17)))
	f.Add(AppendView(nil, &View{Epoch: 1, Shards: []Placement{{-1, -1}}}))
	f.Add(AppendView(nil, sampleView())[:20])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeView(b)
		if err != nil {
			return
		}
		if again := AppendView(nil, &v); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, b)
		}
		for s := range v.Shards {
			v.Owner(s) // must not panic on anything DecodeView accepted
		}
	})
}

func FuzzDecodeHeartbeat(f *testing.F) {
	f.Add(AppendHeartbeat(nil, &Heartbeat{}))
	f.Add(AppendHeartbeat(nil, sampleHeartbeat()))
	f.Add(AppendHeartbeat(nil, sampleHeartbeat())[:30])
	f.Add(AppendHeartbeat(nil, linkHeartbeat()))
	f.Add(AppendHeartbeat(nil, metricsHeartbeat()))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := DecodeHeartbeat(b)
		if err != nil {
			return
		}
		again := AppendHeartbeat(nil, &h)
		if len(again) == len(b)+heartbeatTail {
			again = again[:len(b)] // an older server's heartbeat: no sessions
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, b)
		}
	})
}
