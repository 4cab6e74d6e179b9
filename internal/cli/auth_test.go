package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"ftkv/client"
	"ftkv/status"
)

func TestPasswordFlagRefused(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"-p", "7000", "-a", "hunter2", "G", "k"}, strings.NewReader(""), &out, &errb, nil)
	if code != ExitUsage || !strings.Contains(errb.String(), "-a: ftkv takes no password on the command line") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	if strings.Contains(errb.String(), "hunter2") {
		t.Errorf("the password is echoed: %q", errb.String())
	}
}

func TestPassword(t *testing.T) {
	t.Setenv(PasswordEnv, "from-env")
	if pw, err := Password("alice", nil, nil); err != nil || pw != "from-env" {
		t.Fatalf("Password = %q, %v", pw, err)
	}
	t.Setenv(PasswordEnv, "")
	if _, err := Password("alice", nil, nil); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("an empty %s: %v", PasswordEnv, err)
	}
	os.Unsetenv(PasswordEnv)
	old := ttyFile
	ttyFile = func() (*os.File, error) { return nil, errors.New("no tty") }
	defer func() { ttyFile = old }()
	f, err := os.CreateTemp(t.TempDir(), "stdin")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = Password("alice", f, nil)
	if err == nil || !strings.Contains(err.Error(), "set "+PasswordEnv+", or run at a terminal") {
		t.Errorf("no env, no terminal: %v", err)
	}
	// bin/client -user without a password: a usage error before dialing.
	var out, errb bytes.Buffer
	if code := run([]string{"-p", "7000", "-user", "alice", "G", "k"}, f, &out, &errb, nil); code != ExitUsage {
		t.Errorf("exit %d, stderr %q", code, errb.String())
	}
}

func TestExitDenied(t *testing.T) {
	for _, err := range []error{
		fmt.Errorf("%w: coordinator x: unknown user or wrong password", client.ErrAuth),
		fmt.Errorf("%w: user bob (role read) may not PUT", client.ErrPermission),
	} {
		if got := exitCode(err); got != ExitDenied {
			t.Errorf("exitCode(%v) = %d, want %d", err, got, ExitDenied)
		}
		var out, errb bytes.Buffer
		dial := func(context.Context, string) (Store, error) { return nil, err }
		if code := run([]string{"-p", "7000", "G", "k"}, strings.NewReader(""), &out, &errb, dial); code != ExitDenied ||
			!strings.HasPrefix(errb.String(), "error: ftkv: ") || strings.Count(errb.String(), "\n") != 1 {
			t.Errorf("dial refused (%v): exit %d, stderr %q", err, code, errb.String())
		}
	}
}

func TestStatusTableRedacted(t *testing.T) {
	var b bytes.Buffer
	st := &status.Cluster{Epoch: 2, Redacted: true, Servers: []status.Server{{ID: 0, Addr: "127.0.0.1:1", State: "serving"}}}
	if err := writeStatusTable(&b, st); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "(details for admin users only)") {
		t.Errorf("redacted table:\n%s", b.String())
	}
	b.Reset()
	st.Redacted = false
	_ = writeStatusTable(&b, st)
	if strings.Contains(b.String(), "admin") {
		t.Errorf("an admin's table mentions redaction:\n%s", b.String())
	}
}
