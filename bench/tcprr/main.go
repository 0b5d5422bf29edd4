// Command tcprr measures TCP request/response latency for bench/run.sh.
//
// Server:  tcprr -s ADDR[,ADDR...] [-lifetime 10m]
//
//	echoes every byte it receives on every accepted connection
//	(TCP_NODELAY), until -lifetime has passed.
//
// Client:  tcprr -c HOST:PORT [-n 2000] [-warmup 100] [-crr 200] [-timeout 60s] [-stackpid PID]
//
//	rr:  one persistent connection (TCP_NODELAY); -n times write 1 byte and
//	     read the 1-byte echo; per-round-trip latency percentiles and the
//	     transaction rate.
//	crr: -crr times connect, write 1 byte, read the echo, close; latency
//	     percentiles of the whole sequence and the rate.
//
// Results go to stdout as key=value lines (rr_p50_us, rr_p99_us, rr_tps,
// crr_p50_us, crr_p99_us, crr_cps); errors go to stderr with exit status 1.
// With -stackpid, the CPU time (utime+stime from /proc/PID/stat, all
// threads) the stack process PID spent over the measured rounds is printed
// too, per operation: rr_cpu_us per round trip and crr_cpu_us per
// connection. Its resolution is the kernel's clock tick (10 ms), so it
// needs a run of a second or more of stack CPU to be worth reading.
//
// Helper for the benchmark script (no jq needed):
//
//	tcprr -iperf FILE.json [-prefix fwd]
//
// reads an iperf3 -J result and prints PREFIX_mbps (receiver), PREFIX_bytes
// (receiver bytes, plus the bytes of the omitted warm-up intervals, so that
// they can be set against CPU time measured over the whole run) and
// PREFIX_stall_s (measured 1 s intervals under 1 Mbit/s).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"time"
)

func main() {
	var (
		serve    = flag.String("s", "", "server: comma-separated listen addresses")
		lifetime = flag.Duration("lifetime", 10*time.Minute, "server: exit after this long")
		connect  = flag.String("c", "", "client: server HOST:PORT")
		n        = flag.Int("n", 2000, "client: request/response round trips on one connection")
		warmup   = flag.Int("warmup", 100, "client: round trips before measuring")
		crr      = flag.Int("crr", 200, "client: connect+request+close sequences")
		timeout  = flag.Duration("timeout", 60*time.Second, "client: overall deadline")
		stackpid = flag.Int("stackpid", 0, "client: also report this process's CPU time per operation")
		iperf    = flag.String("iperf", "", "parse an iperf3 -J output file")
		prefix   = flag.String("prefix", "iperf", "key prefix for -iperf")
	)
	flag.Parse()
	var err error
	switch {
	case *iperf != "":
		err = iperfSummary(*iperf, *prefix)
	case *serve != "":
		err = server(strings.Split(*serve, ","), *lifetime)
	case *connect != "":
		err = client(*connect, *n, *warmup, *crr, *timeout, cpuMeter(*stackpid))
	default:
		flag.Usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tcprr:", err)
		os.Exit(1)
	}
}

func server(addrs []string, lifetime time.Duration) error {
	errc := make(chan error, len(addrs))
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return err
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					errc <- err
					return
				}
				go echo(c)
			}
		}()
	}
	select {
	case err := <-errc:
		return err
	case <-time.After(lifetime):
		return nil
	}
}

func echo(c net.Conn) {
	defer c.Close()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	buf := make([]byte, 4096)
	for {
		k, err := c.Read(buf)
		if k > 0 {
			if _, werr := c.Write(buf[:k]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func client(addr string, n, warmup, ncrr int, timeout time.Duration, cpu cpuMeter) error {
	deadline := time.Now().Add(timeout)
	if n > 0 {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return fmt.Errorf("rr dial: %w", err)
		}
		_ = c.(*net.TCPConn).SetNoDelay(true)
		_ = c.SetDeadline(deadline)
		b := []byte{'x'}
		lat := make([]time.Duration, 0, n)
		var start time.Time
		var cpu0 time.Duration
		for i := 0; i < warmup+n; i++ {
			if i == warmup {
				start = time.Now()
				cpu0 = cpu.used()
			}
			t0 := time.Now()
			if err := roundTrip(c, b); err != nil {
				c.Close()
				return fmt.Errorf("rr round trip %d: %w", i, err)
			}
			if i >= warmup {
				lat = append(lat, time.Since(t0))
			}
		}
		total := time.Since(start)
		cpu.print("rr_cpu_us", cpu0, n)
		c.Close()
		fmt.Printf("rr_p50_us=%.1f\nrr_p99_us=%.1f\nrr_tps=%.0f\n",
			us(pct(lat, 50)), us(pct(lat, 99)), float64(n)/total.Seconds())
	}
	if ncrr > 0 {
		lat := make([]time.Duration, 0, ncrr)
		b := []byte{'y'}
		start := time.Now()
		cpu0 := cpu.used()
		for i := 0; i < ncrr; i++ {
			t0 := time.Now()
			d := net.Dialer{Timeout: 5 * time.Second, Deadline: deadline}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				return fmt.Errorf("crr dial %d: %w", i, err)
			}
			_ = c.SetDeadline(deadline)
			err = roundTrip(c, b)
			c.Close()
			if err != nil {
				return fmt.Errorf("crr round trip %d: %w", i, err)
			}
			lat = append(lat, time.Since(t0))
		}
		total := time.Since(start)
		cpu.print("crr_cpu_us", cpu0, ncrr)
		fmt.Printf("crr_p50_us=%.1f\ncrr_p99_us=%.1f\ncrr_cps=%.0f\n",
			us(pct(lat, 50)), us(pct(lat, 99)), float64(ncrr)/total.Seconds())
	}
	return nil
}

func roundTrip(c net.Conn, b []byte) error {
	if _, err := c.Write(b); err != nil {
		return err
	}
	r := make([]byte, 1)
	if _, err := io.ReadFull(c, r); err != nil {
		return err
	}
	if r[0] != b[0] {
		return errors.New("echo mismatch")
	}
	return nil
}

// pct returns the p-th percentile (nearest rank) of d; it sorts d.
func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	k := (len(d)*p + 99) / 100
	if k < 1 {
		k = 1
	}
	return d[k-1]
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// iperfResult is the part of iperf3's -J output that is used.
type iperfResult struct {
	Error     string `json:"error"`
	Intervals []struct {
		Sum struct {
			Bytes         float64 `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
			Seconds       float64 `json:"seconds"`
			Omitted       bool    `json:"omitted"`
		} `json:"sum"`
	} `json:"intervals"`
	End struct {
		SumReceived struct {
			Bytes         float64 `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
}

func iperfSummary(file, prefix string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var r iperfResult
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if r.Error != "" {
		return fmt.Errorf("iperf3: %s", r.Error)
	}
	if r.End.SumReceived.Bytes == 0 {
		return errors.New("iperf3: no bytes received")
	}
	bytes := r.End.SumReceived.Bytes
	stall := 0
	for _, iv := range r.Intervals {
		if iv.Sum.Omitted {
			bytes += iv.Sum.Bytes
			continue
		}
		if iv.Sum.Seconds > 0.5 && iv.Sum.BitsPerSecond < 1e6 {
			stall++
		}
	}
	fmt.Printf("%s_mbps=%.1f\n%s_bytes=%.0f\n%s_stall_s=%d\n",
		prefix, r.End.SumReceived.BitsPerSecond/1e6, prefix, bytes, prefix, stall)
	return nil
}

// cpuMeter is the PID of a process whose CPU time is reported; 0 is none.
type cpuMeter int

// userHZ is the unit of /proc/PID/stat's utime and stime: USER_HZ, 100 on
// every Linux architecture Go supports.
const userHZ = 100

// used returns the process's utime+stime so far, or -1 when it cannot be
// read (no process given, or it has gone).
func (m cpuMeter) used() time.Duration {
	if m <= 0 {
		return -1
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", int(m)))
	if err != nil {
		return -1
	}
	// The command name in parentheses may hold spaces: fields count from
	// after its closing parenthesis (utime and stime are fields 14 and 15).
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return -1
	}
	var ut, st int64
	if _, err := fmt.Sscan(f[11], &ut); err != nil {
		return -1
	}
	if _, err := fmt.Sscan(f[12], &st); err != nil {
		return -1
	}
	return time.Duration(ut+st) * time.Second / userHZ
}

// print writes KEY=µs of CPU per operation since start, over ops
// operations; nothing when the process could not be read.
func (m cpuMeter) print(key string, start time.Duration, ops int) {
	end := m.used()
	if start < 0 || end < 0 || ops <= 0 {
		return
	}
	fmt.Printf("%s=%.1f\n", key, us(end-start)/float64(ops))
}
