package stacktest

import (
	"github.com/tunstack/tunstack/stack"
	"github.com/tunstack/tunstack/stack/vnet"
)

// The network types live in package vnet, which programs use without
// importing "testing"; these aliases keep stacktest's API unchanged.
type (
	// Options is vnet.Options.
	Options = vnet.Options
	// Network is vnet.Network.
	Network = vnet.Network
	// Host is vnet.Host.
	Host = vnet.Host
	// Link is vnet.Link.
	Link = vnet.Link
	// Switch is vnet.Switch.
	Switch = vnet.Switch
	// Port is vnet.Port.
	Port = vnet.Port
	// Impairment is vnet.Impairment.
	Impairment = vnet.Impairment
	// Stats is vnet.Stats.
	Stats = vnet.Stats
)

// DefaultMTU is vnet.DefaultMTU.
const DefaultMTU = vnet.DefaultMTU

// NewNetwork returns an empty network (vnet.NewNetwork).
func NewNetwork(opts Options) *Network { return vnet.NewNetwork(opts) }

// NewLoopback returns a stack with only a loopback NIC (vnet.NewLoopback).
func NewLoopback(opts stack.Options) (*stack.Stack, error) { return vnet.NewLoopback(opts) }
