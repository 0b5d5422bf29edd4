package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/tunstack/tunstack/control"
)

// connect finds the instance the views talk to: --name, or the only one
// running.
func connect(ctx context.Context, name string) (*control.Client, error) {
	return control.Connect(ctx, control.Dir(), name)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// serviceNames reads /etc/services for ss's port names ("http").
func serviceNames() func(port uint16, proto string) string {
	names := map[string]string{}
	f, err := os.Open("/etc/services")
	if err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			line, _, _ := strings.Cut(sc.Text(), "#")
			fs := strings.Fields(line)
			if len(fs) < 2 {
				continue
			}
			if _, dup := names[fs[1]]; !dup {
				names[fs[1]] = fs[0]
			}
		}
	}
	return func(port uint16, proto string) string {
		return names[strconv.Itoa(int(port))+"/"+proto]
	}
}
