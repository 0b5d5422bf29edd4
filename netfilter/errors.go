package netfilter

import "errors"

// paramError marks an error iptables reports as a parameter problem
// (exit status 2): the command line itself is wrong. Other errors (no
// such chain, no matching rule, a ruleset the kernel refuses) are exit
// status 1.
type paramError struct{ err error }

func (e *paramError) Error() string { return e.err.Error() }
func (e *paramError) Unwrap() error { return e.err }

func param(err error) error {
	if err == nil {
		return nil
	}
	var p *paramError
	var k *kernelError
	if errors.As(err, &p) || errors.As(err, &k) {
		return err
	}
	return &paramError{err}
}

// kernelError marks an error found while parsing that Linux reports
// only when the kernel refuses the rule (exit status 1), such as a
// match whose protocol is missing; param leaves it alone.
type kernelError struct{ err error }

func (e *kernelError) Error() string { return e.err.Error() }
func (e *kernelError) Unwrap() error { return e.err }

func kernel(err error) error {
	if err == nil {
		return nil
	}
	return &kernelError{err}
}

// ExitCode returns the exit status iptables gives for err: 0 for nil, 2
// for a parameter problem (bad option, bad value), 1 otherwise.
func ExitCode(err error) int {
	var p *paramError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &p):
		return 2
	}
	return 1
}
