package netfilter

import (
	"fmt"
	"strings"
)

// optionParser is implemented by every match and target that has
// options: parseOpt handles one option (c.opt, negated when c.inv) and
// reports false when the option is not its own. Each extension's
// parsing lives next to its save and check code.
type optionParser interface {
	parseOpt(c *optCtx) (bool, error)
}

// finisher is implemented by extensions with required options; finish
// runs once the whole rule is parsed.
type finisher interface {
	finish(c *optCtx) error
}

// optCtx is one option being parsed, for one extension instance.
type optCtx struct {
	p   *ruleParser
	ext any // the match or target instance (keys "given once" checks)
	opt string
	inv bool
	r   *argReader
}

func (c *optCtx) fam() Family { return c.p.fam }

func (c *optCtx) key(k string) string { return fmt.Sprintf("%p%s", c.ext, k) }

// once fails when key (an option, or a group of exclusive options) was
// already given for this extension instance, as xtables does.
func (c *optCtx) once(key string) error {
	if c.p.tgtSeen[c.key(key)] {
		return fmt.Errorf("multiple %s flags not allowed (option can only be used once)", c.opt)
	}
	c.p.tgtSeen[c.key(key)] = true
	return nil
}

// seen reports whether key was given for this extension instance.
func (c *optCtx) seen(key string) bool { return c.p.tgtSeen[c.key(key)] }

// next returns the option's next argument.
func (c *optCtx) next() (string, error) { return c.r.next(c.opt) }

// val returns a match option's value: the option once, and "!" only
// before the option.
func (c *optCtx) val() (string, error) {
	if err := c.once(c.opt); err != nil {
		return "", err
	}
	v, err := c.next()
	if err == nil && v == "!" {
		return "", fmt.Errorf("intrapositioned negation (%s ! X) is not supported; write ! %s X", c.opt, c.opt)
	}
	return v, err
}

// noInv fails when the option was negated.
func (c *optCtx) noInv() error {
	if c.inv {
		return fmt.Errorf("option %s cannot be negated", c.opt)
	}
	return nil
}

// tval returns a target option's value: not negatable, once.
func (c *optCtx) tval() (string, error) {
	if err := c.noInv(); err != nil {
		return "", err
	}
	return c.val()
}

// flag checks a target option without value: not negated, once.
func (c *optCtx) flag() error {
	if err := c.noInv(); err != nil {
		return err
	}
	return c.once(c.opt)
}

// exclusive checks that only one option of a group (named by key) is
// given; names lists them for the error.
func (c *optCtx) exclusive(key, what string, names ...string) error {
	if c.seen(key) {
		return fmt.Errorf("%s: only one of %s allowed", what, strings.Join(names, ", "))
	}
	c.p.tgtSeen[c.key(key)] = true
	return nil
}
