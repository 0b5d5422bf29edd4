// Package capture records packets crossing a link endpoint, for
// "tunstack tcpdump" and "tunstack run --pcap".
//
// Endpoint wraps a stack.LinkEndpoint and copies packets, in both
// directions, to its subscribers. With no subscriber it costs one atomic
// load per batch of packets: gVisor's sniffer is not used because it logs
// every packet and panics when its writer fails.
//
// Subscribers select packets with a tcpdump filter expression (ParseFilter)
// and receive them on a channel; a subscriber that falls behind loses
// packets (counted) rather than stalling the stack. Packets are written as
// pcap (LINKTYPE_RAW: bare IPv4/IPv6, or, for a Cooked subscription,
// LINKTYPE_LINUX_SLL2 as tcpdump -i any writes: an interface index and a
// direction before each packet), which tcpdump, tshark and Wireshark
// read, or as tcpdump-style text lines (FormatPacket, FormatCookedLine).
package capture
