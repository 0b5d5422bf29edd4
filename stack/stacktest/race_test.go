//go:build race

package stacktest_test

const raceEnabled = true
