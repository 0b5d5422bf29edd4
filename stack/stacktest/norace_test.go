//go:build !race

package stacktest_test

const raceEnabled = false
