package difftest

import (
	"strings"

	"github.com/tunstack/tunstack/netfilter"
)

func family(fam int) netfilter.Family {
	if fam == 6 {
		return netfilter.IPv6
	}
	return netfilter.IPv4
}

// RunOurs runs c through tunstack's iptables, starting from Base of its
// table, as RunReal does with the real one.
func RunOurs(c Case) Result {
	fw, err := netfilter.New(nil, netfilter.Config{})
	if err != nil {
		return Result{Err: err.Error(), Code: -1}
	}
	f := family(c.Fam)
	for _, s := range Sets {
		if _, err := fw.IPSet(s); err != nil {
			return Result{Err: "ipset: " + err.Error(), Code: -1}
		}
	}
	if err := fw.Restore(f, Base(c.Table()), netfilter.RestoreOptions{}); err != nil {
		return Result{Err: "base: " + err.Error(), Code: -1}
	}
	out, err := fw.Exec(f, c.Args)
	if err != nil {
		return Result{Err: err.Error(), Code: netfilter.ExitCode(err)}
	}
	rules, err := fw.Exec(f, []string{"-t", c.Table(), "-S"})
	if err != nil {
		return Result{Err: "-S: " + err.Error(), Code: -1}
	}
	r := Result{OK: true, Out: out, Rules: rules}
	for _, l := range Listings(c) {
		text, err := fw.Exec(f, l)
		if err != nil {
			text = refused
		}
		r.Lists = append(r.Lists, text)
	}
	return r
}

// RestoreSaveOurs is RestoreSave with tunstack's restore and save.
func RestoreSaveOurs(fam int, text string, counters bool, tbls []string) (map[string]string, error) {
	fw, err := netfilter.New(nil, netfilter.Config{})
	if err != nil {
		return nil, err
	}
	f := family(fam)
	if err := fw.Restore(f, text, netfilter.RestoreOptions{Counters: counters}); err != nil {
		return nil, err
	}
	save := StripComments(fw.Save(f, counters))
	res := map[string]string{}
	for _, t := range tbls {
		res[t] = section(save, t)
	}
	return res, nil
}

// section returns the "*table ... COMMIT" part of save text.
func section(save, table string) string {
	i := strings.Index(save, "*"+table+"\n")
	if i < 0 {
		return ""
	}
	rest := save[i:]
	j := strings.Index(rest, "COMMIT\n")
	if j < 0 {
		return rest
	}
	return rest[:j+len("COMMIT\n")]
}
