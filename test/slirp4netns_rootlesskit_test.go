package test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestSlirp4netnsRootlesskitFetch: rootlesskit --net=slirp4netns with
// tunstack as its slirp4netns binary; the child fetches a host file from
// the gateway address (the host's loopback) intact. The same passes with
// the real slirp4netns and fails with /bin/false.
func TestSlirp4netnsRootlesskitFetch(t *testing.T) {
	needProg(t, "rootlesskit")
	u := containerUser(t)
	needTun(t, u.uid)
	port := startHTTP(t, "127.0.0.1:0")
	_, sum := testPayload()
	for _, impl := range slirpImpls(t) {
		t.Run(impl.name, func(t *testing.T) {
			script := fmt.Sprintf("busybox wget -q -O - http://10.0.2.2:%d/file | sha256sum", port)
			r := u.run(t, 120*time.Second, nil, nil, "rootlesskit", "--net=slirp4netns", "--slirp4netns-binary="+impl.path,
				"--mtu=65520", "--", "sh", "-c", script)
			ok := r.code == 0 && strings.Contains(r.stdout, sum)
			if ok != impl.works {
				t.Fatalf("rootlesskit with %s: exit %d, want success %v\nstdout: %s\nstderr: %s", impl.path, r.code, impl.works, r.stdout, r.stderr)
			}
		})
	}
}

// TestSlirp4netnsRootlesskitPortDriver: rootlesskit's slirp4netns port
// driver adds a forward through the API socket; a server inside the child
// answers on the host port, and sees the client as the gateway (the
// client is on the host's loopback), as with the real slirp4netns.
func TestSlirp4netnsRootlesskitPortDriver(t *testing.T) {
	needProg(t, "rootlesskit")
	u := containerUser(t)
	needTun(t, u.uid)
	_, sum := testPayload()
	for _, impl := range slirpImpls(t) {
		t.Run(impl.name, func(t *testing.T) {
			hp := freePort(t)
			stdin, keep := io.Pipe()
			defer keep.Close()
			ctx := t.Context()
			cmd := u.command(ctx, []string{helperEnv + "=server"}, "rootlesskit", "--net=slirp4netns", "--slirp4netns-binary="+impl.path,
				"--port-driver=slirp4netns", "-p", fmt.Sprintf("127.0.0.1:%d:80/tcp", hp), "--", helperPath, "0.0.0.0:80")
			var out syncBuffer
			cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			defer func() {
				keep.Close()
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					cmd.Process.Kill()
					<-done
				}
			}()
			base := fmt.Sprintf("http://127.0.0.1:%d", hp)
			wait := 30 * time.Second
			if !impl.works {
				wait = 10 * time.Second // rootlesskit may hang rather than exit
			}
			hello, err := pollGet(base+"/", done, wait)
			if !impl.works {
				if err == nil {
					t.Fatalf("with %s the forward answered %q; the harness cannot fail", impl.path, hello)
				}
				return
			}
			if err != nil {
				t.Fatalf("forward 127.0.0.1:%d -> child :80: %v\noutput: %s", hp, err, out.String())
			}
			if !strings.Contains(hello, "to 10.0.2.2:") {
				t.Errorf("server inside saw %q, want the client as 10.0.2.2", hello)
			}
			resp, err := http.Get(base + "/file")
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			io.Copy(h, resp.Body)
			resp.Body.Close()
			if got := hex.EncodeToString(h.Sum(nil)); got != sum {
				t.Fatalf("file through the forward: sha256 %s, want %s", got, sum)
			}
		})
	}
}

// pollGet GETs url until it answers 200, the program ends (done) or the
// timeout passes.
func pollGet(url string, done <-chan error, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: 3 * time.Second}
	var last error
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			return "", fmt.Errorf("program exited (%v) before %s answered (last: %v)", err, url, last)
		default:
		}
		resp, err := c.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return string(b), nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return "", fmt.Errorf("%s did not answer within %v: %v", url, timeout, last)
}
