package tun

import (
	"github.com/tunstack/tunstack/netdev"
)

// virtioNetHdrLen is sizeof(struct virtio_net_hdr) (linux/virtio_net.h):
// the header without the num_buffers field, little-endian on a TUN. Its
// codec is netdev.VirtioNetHdr, shared with netdev's endpoint (gVisor's
// header.VirtioNetHeader getters read the u16 fields big-endian, which is
// wrong for a TUN).
const virtioNetHdrLen = netdev.VirtioNetHdrLen
