// Package tun creates Linux TUN devices and adapts them to gVisor's
// stack.LinkEndpoint.
//
// Two paths exist. The offload path opens the device with IFF_VNET_HDR and
// enables checksum and TCP segmentation offload (TUNSETOFFLOAD), so that one
// read or write moves a 64 KiB TCP super-segment instead of one MTU-sized
// packet. The plain path (github.com/songgao/water) is the fallback for
// kernels or sandboxes that refuse those ioctls. Open tries the offload path
// first unless told otherwise; Device.Offload reports which one was taken.
//
// A device is usually created inside another network namespace and its file
// descriptor handed to the serving process (package fdpass does that).
package tun
