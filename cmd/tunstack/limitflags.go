package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/tunstack/tunstack/stack/gateway"
)

// Default caps of run and attach. Each flow past a cap is counted
// ("tunstack ps --stats"). A host file descriptor is held per TCP flow,
// UDP flow, ping session and DNS query in flight; the relays together also
// stop short of RLIMIT_NOFILE less a reserve (instance.FDReserve), so the
// defaults need not add up to less than the limit.
const (
	defaultMaxTCPFlows   = 8192
	defaultMaxUDPFlows   = 4096
	defaultMaxPingFlows  = 1024
	defaultMaxDNSQueries = 1024
)

// limitOptions are the resource cap flags.
type limitOptions struct {
	tcpFlows, udpFlows, pingFlows, dnsQueries int
	udpIdle, pingIdle                         time.Duration
}

func (o *limitOptions) addFlags(f *pflag.FlagSet) {
	f.IntVar(&o.tcpFlows, "max-tcp-flows", defaultMaxTCPFlows,
		"cap on concurrent TCP connections from the sandbox; past it connect() fails at once with \"No route to host\" (ICMP administratively prohibited); 0: no cap")
	f.IntVar(&o.udpFlows, "max-udp-flows", defaultMaxUDPFlows,
		"cap on concurrent UDP flows (source, destination) from the sandbox; datagrams of new flows past it are dropped; 0: no cap")
	f.IntVar(&o.pingFlows, "max-ping-flows", defaultMaxPingFlows,
		"cap on concurrent ping sessions; requests of new sessions past it are dropped; 0: no cap")
	f.IntVar(&o.dnsQueries, "max-dns-queries", defaultMaxDNSQueries,
		"cap on DNS queries in flight (UDP and TCP) and on TCP connections to the DNS relay; past it UDP queries are dropped, TCP queries get SERVFAIL; 0: no cap")
	f.DurationVar(&o.udpIdle, "udp-idle-timeout", 60*time.Second, "close a UDP flow after this long without a datagram")
	f.DurationVar(&o.pingIdle, "ping-idle-timeout", 30*time.Second, "close a ping session's host socket after this long without a request")
}

// limits validates the flags and returns the gateway's limits.
func (o *limitOptions) limits() (gateway.Limits, error) {
	for _, c := range []struct {
		flag string
		v    int
	}{{"--max-tcp-flows", o.tcpFlows}, {"--max-udp-flows", o.udpFlows}, {"--max-ping-flows", o.pingFlows}, {"--max-dns-queries", o.dnsQueries}} {
		if c.v < 0 {
			return gateway.Limits{}, fmt.Errorf("%s %d: must be 0 (no cap) or more", c.flag, c.v)
		}
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--udp-idle-timeout", o.udpIdle}, {"--ping-idle-timeout", o.pingIdle}} {
		if d.v <= 0 {
			return gateway.Limits{}, fmt.Errorf("%s %v: must be positive", d.flag, d.v)
		}
	}
	return gateway.Limits{
		TCPFlows: o.tcpFlows, UDPFlows: o.udpFlows, PingFlows: o.pingFlows, DNSQueries: o.dnsQueries,
		UDPIdleTimeout: o.udpIdle, PingIdleTimeout: o.pingIdle,
	}, nil
}
