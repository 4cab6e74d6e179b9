package cli

import (
	"context"
	"errors"
	"io"

	"ftkv/client"
	"ftkv/status"
)

// Store is what the CLI needs from a cluster; *client.Client implements it.
type Store interface {
	Get(ctx context.Context, key string) ([]byte, error)
	Put(ctx context.Context, key string, value []byte) error
	Delete(ctx context.Context, key string) error
	CompareAndSwapCurrent(ctx context.Context, key string, old, new []byte) (bool, []byte, error)
	Append(ctx context.Context, key string, value []byte) error
	Status(ctx context.Context) (*status.Cluster, error)
	ShutdownCluster(ctx context.Context) error
	Close() error
}

var _ Store = (*client.Client)(nil)

var (
	okLine  = []byte("OK\n")
	nilLine = []byte(nilWord + "\n")
)

// execute runs a key-value or status command against s and writes its
// answer to w. miss reports an answer that is not a success: a G that found
// nothing or a T that mismatched.
func execute(ctx context.Context, s Store, c command, w io.Writer) (miss bool, err error) {
	switch c.op {
	case opPut:
		err = s.Put(ctx, c.key, c.value)
	case opDelete:
		err = s.Delete(ctx, c.key)
	case opAppend:
		err = s.Append(ctx, c.key, c.value)
	case opGet:
		v, err := s.Get(ctx, c.key)
		if errors.Is(err, client.ErrNotFound) {
			_, err = w.Write(nilLine)
			return true, err
		}
		if err != nil {
			return false, err
		}
		return false, writeValue(w, nil, v)
	case opCAS:
		swapped, cur, err := s.CompareAndSwapCurrent(ctx, c.key, c.old, c.value)
		if err != nil {
			return false, err
		}
		if swapped {
			_, err = w.Write(okLine)
			return false, err
		}
		if cur == nil {
			return true, writeValue(w, []byte("MISMATCH "), []byte(nilWord))
		}
		return true, writeValue(w, []byte("MISMATCH "), cur)
	case opShutdown:
		err = s.ShutdownCluster(ctx)
	case opStatus:
		st, err := s.Status(ctx)
		if err != nil {
			return false, err
		}
		if c.json {
			return false, writeStatusJSON(w, st)
		}
		return false, writeStatusTable(w, st)
	default:
		return false, errors.New("internal error: not a store command")
	}
	if err != nil {
		return false, err
	}
	_, err = w.Write(okLine)
	return false, err
}

// writeValue writes prefix, the raw bytes of v and a newline in one write.
func writeValue(w io.Writer, prefix, v []byte) error {
	line := make([]byte, 0, len(prefix)+len(v)+1)
	line = append(append(append(line, prefix...), v...), '\n')
	_, err := w.Write(line)
	return err
}
