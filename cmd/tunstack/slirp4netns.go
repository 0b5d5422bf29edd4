package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/tunstack/tunstack/control"
	"github.com/tunstack/tunstack/harden"
	"github.com/tunstack/tunstack/instance"
	"github.com/tunstack/tunstack/netfilter"
	"github.com/tunstack/tunstack/sandbox"
	"github.com/tunstack/tunstack/slirp4netns"
	"github.com/tunstack/tunstack/stack/gateway"
)

// slirpNameEnv names the instance of a slirp4netns-mode tunstack.
const slirpNameEnv = "TUNSTACK_NAME"

// isSlirp4netns reports whether the binary was started as slirp4netns (a
// symlink named so, as busybox applets are).
func isSlirp4netns(argv0 string) bool { return filepath.Base(argv0) == "slirp4netns" }

func newSlirp4netnsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "slirp4netns [OPTION]... PID|PATH TAPNAME",
		Short: "Act as slirp4netns 1.2 for rootlesskit, podman and buildah",
		Long: `Serve a network namespace's TAP device exactly as slirp4netns 1.2 does for
its callers (command line, ready and exit pipes, JSON API socket), with
tunstack's stack, firewall, views and capture. A symlink named slirp4netns
to the tunstack binary does the same. See "tunstack slirp4netns --help".`,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return exitError{runSlirp4netns("slirp4netns", args)}
		},
	}
}

// runSlirp4netns runs slirp4netns mode and returns the exit status: 0 when
// told to stop (exit fd hangup, namespace gone), 1 on any failure, without
// writing to the ready fd.
func runSlirp4netns(argv0 string, args []string) int {
	opts, err := slirp4netns.Parse(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", argv0, err)
		slirp4netns.Usage(os.Stdout, argv0)
		return 1
	}
	switch {
	case opts.Help:
		slirp4netns.Usage(os.Stdout, argv0)
		return 0
	case opts.Version:
		slirp4netns.WriteVersion(os.Stdout, versionString())
		return 0
	}
	log := slirpLogger()
	for _, w := range opts.Warnings {
		log.Warn(w)
	}
	if err := serveSlirp(opts, log); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", argv0, err)
		return 1
	}
	return 0
}

func slirpLogger() *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(os.Getenv("TUNSTACK_LOG_LEVEL"))); err != nil {
		lvl = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})).With("prog", "tunstack-slirp4netns")
}

// serveSlirp serves the namespace until the exit fd hangs up, the
// namespace goes away or a signal arrives.
func serveSlirp(opts *slirp4netns.Options, log *slog.Logger) error {
	ready, exit, err := slirpFDs(opts)
	if err != nil {
		return err
	}
	if ready != nil {
		// Closed without a write on failure: the caller sees EOF.
		defer ready.Close()
	}
	cfg, err := slirpConfig(opts, log)
	if err != nil {
		return err
	}
	if opts.EnableSandbox || opts.EnableSeccomp {
		// slirp4netns's confinement, done tunstack's way (package harden):
		// --enable-sandbox drops privileges (no_new_privs; as root, the
		// switch to nobody), --enable-seccomp adds the system call filter.
		cfg.Confine = &harden.Options{NoSeccomp: !opts.EnableSeccomp}
	}
	target := instance.AttachTarget{PID: opts.PID, NetNS: opts.NetNSPath, UserNS: opts.UserNSPath,
		TAP: opts.TapName, Unconfigured: !opts.Configure}
	if opts.MACAddress != nil {
		target.MAC = opts.MACAddress.String()
	}
	in, err := instance.Attach(cfg, target)
	if err != nil {
		return err
	}
	defer in.Close()
	// GOMAXPROCS adapts as with tunstack run's default --procs 0.
	defer startGovernor(in, log)()
	if opts.APISocket != "" {
		api := slirp4netns.NewAPI(in.Forwards, cfg.V4.Sandbox, log)
		srv, err := slirp4netns.Listen(opts.APISocket, api)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	if ready != nil {
		if _, err := ready.Write([]byte("1")); err != nil {
			return fmt.Errorf("write ready fd %d: %w", opts.ReadyFD, err)
		}
		ready.Close()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if exit != nil {
		ctx = watchExitFD(ctx, exit)
	}
	in.Wait(ctx)
	return nil
}

// slirpFDs checks and takes the ready and exit descriptors. They are made
// close-on-exec so that no helper we start holds the caller's pipes open.
func slirpFDs(opts *slirp4netns.Options) (ready, exit *os.File, err error) {
	for _, fd := range []struct {
		n    int
		name string
		f    **os.File
	}{{opts.ReadyFD, "ready-fd", &ready}, {opts.ExitFD, "exit-fd", &exit}} {
		if fd.n < 0 {
			continue
		}
		if _, err := unix.FcntlInt(uintptr(fd.n), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
			return nil, nil, fmt.Errorf("%s %d: %w", fd.name, fd.n, err)
		}
		// Non-blocking, so the runtime poller waits on it, not a thread.
		unix.SetNonblock(fd.n, true)
		*fd.f = os.NewFile(uintptr(fd.n), fd.name)
	}
	return ready, exit, nil
}

// watchExitFD returns a context cancelled when exit reports hangup or an
// error (the caller closed its end).
func watchExitFD(parent context.Context, exit *os.File) context.Context {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		defer cancel()
		buf := make([]byte, 64)
		for {
			if _, err := exit.Read(buf); err != nil {
				return
			}
		}
	}()
	context.AfterFunc(ctx, func() { exit.Close() })
	return ctx
}

// slirpConfig builds the instance: slirp4netns's addresses, MTU and
// loopback policy, and a control socket named after the namespace.
func slirpConfig(opts *slirp4netns.Options, log *slog.Logger) (instance.Config, error) {
	// slirp4netns takes up to 65521; tunstack's device up to MaxMTU.
	c := instance.Config{MTU: min(opts.MTU, sandbox.MaxMTU), TxQueueLen: sandbox.DefaultTxQueueLen, Queues: 1,
		DisableHostLoopback: opts.DisableHostLoopback, Logger: log}
	if err := c.Device().Validate(); err != nil {
		return c, fmt.Errorf("--mtu %d: %w", opts.MTU, err)
	}
	var err error
	if c.V4, err = gateway.AddressesFor(opts.CIDR); err != nil {
		return c, fmt.Errorf("--cidr: %w", err)
	}
	if opts.EnableIPv6 {
		c.V6, _ = gateway.AddressesFor(gateway.DefaultCIDR6)
	}
	if opts.DisableDNS {
		// slirp4netns then answers nothing at the DNS address.
		c.Rules = map[netfilter.Family]string{netfilter.IPv4: fmt.Sprintf(
			"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -d %s/32 -j DROP\nCOMMIT\n", c.V4.DNS)}
	}
	if opts.OutboundAddr != "" || opts.OutboundAddr6 != "" {
		d, err := slirp4netns.NewOutboundDialer(opts.OutboundAddr, opts.OutboundAddr6)
		if err != nil {
			return c, err
		}
		c.Dialer = d
	}
	c.Name = slirpName(opts)
	c.ControlDir = slirpControlDir()
	return c, nil
}

// slirpName is $TUNSTACK_NAME, or "slirp4netns-" and the target PID or
// the namespace file's name.
func slirpName(opts *slirp4netns.Options) string {
	if n := os.Getenv(slirpNameEnv); control.ValidateName(n) == nil {
		return n
	}
	n := "slirp4netns-" + strconv.Itoa(opts.PID)
	if opts.NetNSPath != "" {
		n = "slirp4netns-" + filepath.Base(opts.NetNSPath)
	}
	if control.ValidateName(n) != nil {
		n = control.DefaultName(os.Getpid())
	}
	return n
}

// slirpControlDir is control.Dir, except inside a user namespace that is
// not the initial one (podman runs slirp4netns in its own): there we are
// "root" but cannot write /run, and the user's tunstack looks in
// $XDG_RUNTIME_DIR/tunstack.
func slirpControlDir() string {
	if os.Getenv(control.DirEnv) != "" || os.Geteuid() != 0 {
		return control.Dir()
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" && !initialUserNS() {
		return filepath.Join(d, "tunstack")
	}
	return control.Dir()
}

// initialUserNS reports whether we run in the initial user namespace,
// whose uid map is the identity over the whole range.
func initialUserNS() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return true
	}
	return strings.Join(strings.Fields(string(b)), " ") == "0 0 4294967295"
}
