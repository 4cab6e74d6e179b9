package wire

import (
	"bytes"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden/*.hex from the current encoder")

// goldenFrames are the frames pinned byte for byte in testdata/golden. A
// change to their encoding is a protocol change: bump Version, don't -update.
var goldenFrames = []struct {
	name string
	f    Frame
}{
	{"put", Frame{Op: OpPut, ID: 0x0102030405060708, Epoch: 3, Client: 0xC1, Seq: 17, Floor: 16,
		Key: []byte("user\x00id"), Value: []byte("\x00val\x00")}},
	{"get", Frame{Op: OpGet, ID: 2, Epoch: 3, Client: 0xC1, Seq: 18, Floor: 18, Key: []byte("k")}},
	{"cas", Frame{Op: OpCAS, Flags: FlagOldPresent, ID: 3, Epoch: 3, Client: 0xC1, Seq: 19, Floor: 19,
		Key: []byte("k"), Value: []byte("new"), Aux: []byte("old")}},
	{"cas-mismatch", Frame{Op: OpCAS, Status: StatusMismatch, Flags: FlagOldPresent, ID: 3, Epoch: 3,
		Value: []byte("cur")}},
	{"repl-delete", Frame{Op: OpRepl, Flags: FlagDelete | FlagSecondary, Epoch: 4, Client: 0xC1, Seq: 1000,
		Floor: 19, Key: []byte("gone")}},
	// A client's HELLO on a client port of a cluster with users, and the
	// two answers a refused one can get.
	{"hello-client", Frame{Op: OpHello, ID: 1, Key: []byte("alice"), Value: []byte("s3cret pass")}},
	{"hello-unauthenticated", Frame{Op: OpHello, Status: StatusUnauthenticated, ID: 1,
		Value: []byte("authentication failed: unknown user or wrong password")}},
	{"put-forbidden", Frame{Op: OpPut, Status: StatusForbidden, ID: 2,
		Value: []byte("permission denied: user bob (role read) may not PUT")}},
}

// formatHex writes 16 bytes per line; readHex ignores all whitespace.
func formatHex(b []byte) []byte {
	var sb strings.Builder
	for len(b) > 0 {
		n := min(16, len(b))
		sb.WriteString(hex.EncodeToString(b[:n]))
		sb.WriteByte('\n')
		b = b[n:]
	}
	return []byte(sb.String())
}

func readHex(t *testing.T, path string) []byte {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./wire -run TestGolden -update to create it)", err)
	}
	b, err := hex.DecodeString(strings.Join(strings.Fields(string(text)), ""))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenFrames {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join("testdata", "golden", tc.name+".hex")
			got := Append(nil, &tc.f)
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, formatHex(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want := readHex(t, path)
			if !bytes.Equal(got, want) {
				t.Fatalf("Append differs from %s:\n got %x\nwant %x", path, got, want)
			}
			// The golden bytes must also decode back to the frame, so the
			// files document a readable encoding and not just a stable one.
			f, n, err := Decode(want, 0)
			if err != nil || n != len(want) || !equalFrame(&f, &tc.f) {
				t.Fatalf("decoding %s: n=%d err=%v frame %+v", path, n, err, f)
			}
		})
	}
}

// TestGoldenLayout spells out one golden frame field by field, so a
// regenerated file that silently changed the layout still fails.
func TestGoldenLayout(t *testing.T) {
	want := "0000003b" + // length: 56 header bytes after the prefix + 3 value bytes
		"01" + "04" + "02" + "01" + // version, op CAS, status MISMATCH, FlagOldPresent
		"0000000000000003" + // ID
		"0000000000000003" + // Epoch
		"0000000000000000" + // Client
		"0000000000000000" + // Seq
		"0000000000000000" + // Floor
		"00000000" + "00000003" + "00000000" + // len(Key), len(Value), len(Aux)
		hex.EncodeToString([]byte("cur"))
	f := Frame{Op: OpCAS, Status: StatusMismatch, Flags: FlagOldPresent, ID: 3, Epoch: 3, Value: []byte("cur")}
	if got := hex.EncodeToString(Append(nil, &f)); got != want {
		t.Fatalf("layout:\n got %s\nwant %s", got, want)
	}
}
