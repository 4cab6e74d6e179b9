package coord

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path"

	"ftkv/internal/tlsconf"
)

// remoteTLSDir is where copy_bin puts a server's TLS files on its host,
// under the remote working directory.
const remoteTLSDir = "ftkv-tls"

// copyTLS puts the servers' TLS files on dest, as copy_bin puts the
// binary there (skipped when identical copies are already in place), and
// returns their paths as the server started in the remote directory sees
// them. The key is created 0600 (umask 077 before the file exists).
func (s *SSHSpawner) copyTLS(ctx context.Context, dest string, f tlsconf.Files) (tlsconf.Files, error) {
	out := tlsconf.Files{
		CA:   path.Join(remoteTLSDir, "ca.pem"),
		Cert: path.Join(remoteTLSDir, "server.pem"),
		Key:  path.Join(remoteTLSDir, "server-key.pem"),
		// (The same certificate: the same kind.)
		Roleless: f.Roleless,
	}
	files := []struct{ local, remote string }{{f.CA, out.CA}, {f.Cert, out.Cert}, {f.Key, out.Key}}
	contents := make([][]byte, len(files))
	h := sha256.New()
	for i, fl := range files {
		b, err := os.ReadFile(fl.local)
		if err != nil {
			return out, fmt.Errorf("copy_bin: TLS file: %w", unwrapPathErr(err))
		}
		contents[i] = b
		h.Write(b)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	key := dest + "\x00tls"
	s.copyMu.Lock()
	defer s.copyMu.Unlock()
	if s.copied[key] == sum {
		return out, nil
	}
	dir := path.Join(s.Dir, remoteTLSDir)
	for i, fl := range files {
		target := path.Join(s.Dir, fl.remote)
		script := "set -e\numask 077\n" +
			"mkdir -p " + shq(dir) + "\n" +
			"t=" + shq(target) + ".tmp.$$\n" +
			"cat > \"$t\"\n" +
			"mv -f \"$t\" " + shq(target)
		if _, err := s.run(ctx, dest, script, bytes.NewReader(contents[i])); err != nil {
			return out, fmt.Errorf("copy TLS file %s: %w", path.Base(fl.remote), err)
		}
	}
	if s.copied == nil {
		s.copied = map[string]string{}
	}
	s.copied[key] = sum
	s.Log.Info().Str("host", dest).Str("dir", dir).Msg("TLS files copied")
	return out, nil
}
