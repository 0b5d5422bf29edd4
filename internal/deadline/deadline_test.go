package deadline

import (
	"testing"
	"time"
)

func fired(d *Deadline) bool {
	select {
	case <-d.Done():
		return true
	default:
		return false
	}
}

// TestDeadline walks a deadline through its states.
func TestDeadline(t *testing.T) {
	var d Deadline
	if d.Done() != nil || d.Expired() {
		t.Fatal("zero Deadline: has a channel or has passed")
	}
	tests := []struct {
		name string
		set  time.Time
		wait time.Duration // before checking
		want bool
	}{
		{"in the past: passed at once", time.Now().Add(-time.Second), 0, true},
		{"cleared: not passed", time.Time{}, 0, false},
		{"later: not yet", time.Now().Add(time.Hour), 0, false},
		{"soon: passes", time.Now().Add(20 * time.Millisecond), 200 * time.Millisecond, true},
		{"moved out again: not passed", time.Now().Add(time.Hour), 0, false},
	}
	for _, tt := range tests {
		d.Set(tt.set)
		time.Sleep(tt.wait)
		if got := fired(&d); got != tt.want || d.Expired() != tt.want {
			t.Errorf("%s: channel closed %v, Expired %v, want %v", tt.name, got, d.Expired(), tt.want)
		}
	}
}

// TestDeadlineExtendedWhileWaiting: a call blocked on Done before the
// deadline moves later wakes at the later time, not the earlier one.
func TestDeadlineExtendedWhileWaiting(t *testing.T) {
	var d Deadline
	d.Set(time.Now().Add(30 * time.Millisecond))
	ch := d.Done()
	d.Set(time.Now().Add(time.Hour))
	select {
	case <-ch:
		t.Fatal("the first deadline fired after it was moved")
	case <-time.After(100 * time.Millisecond):
	}
	d.Set(time.Now())
	select {
	case <-ch:
	case <-time.After(time.Second):
		t.Fatal("moving the deadline to now did not wake the waiter")
	}
	d.Stop()
}
