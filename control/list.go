package control

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// List returns the instances running with sockets in dir, sorted by name.
// Sockets nobody answers on (their instance died) are removed; other
// failures are returned alongside the instances that did answer.
func List(ctx context.Context, dir string) ([]Info, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("control: list %s: %w", dir, err)
	}
	var out []Info
	var errs []error
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".sock") || e.Type()&os.ModeSocket == 0 {
			continue
		}
		path := filepath.Join(dir, e.Name())
		c := NewClient(path)
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		in, err := c.Info(qctx)
		cancel()
		c.Close()
		switch {
		case err == nil:
			in.Socket = path
			out = append(out, in)
		case errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT):
			// Nobody listens: the instance is gone without cleaning up.
			os.Remove(path)
		default:
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, errors.Join(errs...)
}
