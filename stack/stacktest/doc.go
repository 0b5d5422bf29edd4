// Package stacktest is the testing face of package stack/vnet, in the
// spirit of net/http/httptest: the vnet types under their old names, plus
// helpers that take a testing.TB (NewPair, which closes the network when the
// test ends) and leak checks for goroutines and file descriptors
// (CheckLeaks, VerifyTestMain).
//
// Programs that are not tests build networks with package stack/vnet
// directly (vnet.NewNetwork, vnet.NewLoopback); nothing here is needed
// outside a test binary.
package stacktest
