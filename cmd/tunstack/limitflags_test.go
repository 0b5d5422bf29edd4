package main

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestLimitFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
		check   func(o limitOptions) bool
	}{
		{args: nil, check: func(o limitOptions) bool {
			return o.tcpFlows == defaultMaxTCPFlows && o.udpFlows == defaultMaxUDPFlows &&
				o.pingFlows == defaultMaxPingFlows && o.dnsQueries == defaultMaxDNSQueries &&
				o.udpIdle == 60*time.Second && o.pingIdle == 30*time.Second
		}},
		{args: []string{"--max-tcp-flows", "0", "--max-udp-flows", "7"}, check: func(o limitOptions) bool {
			return o.tcpFlows == 0 && o.udpFlows == 7
		}},
		{args: []string{"--max-ping-flows", "-1"}, wantErr: "--max-ping-flows -1: must be 0 (no cap) or more"},
		{args: []string{"--max-dns-queries", "-5"}, wantErr: "--max-dns-queries -5"},
		{args: []string{"--udp-idle-timeout", "0s"}, wantErr: "--udp-idle-timeout 0s: must be positive"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var o limitOptions
			f := pflag.NewFlagSet("run", pflag.ContinueOnError)
			o.addFlags(f)
			if err := f.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			l, err := o.limits()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(o) || l.TCPFlows != o.tcpFlows || l.UDPIdleTimeout != o.udpIdle {
				t.Errorf("flags %v gave %+v", tt.args, l)
			}
		})
	}
}
