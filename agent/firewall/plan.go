package firewall

import (
	"fmt"
	"slices"
	"strings"
)

// legacyWarning is what iptables-nft-save prints when the same namespace
// also has iptables-legacy tables.
const legacyWarning = "iptables-legacy tables present"

// saved is parsed iptables-save output: the tables it lists.
type saved struct {
	tables map[string]*savedTable
	legacy bool    // iptables-legacy tables exist besides the nf_tables ones
	nft    *nftUse // nf_tables' own account of conntrack users; nil = not read
}

// savedTable is one table: declared chains (name -> policy, "-" for user
// chains) and the rules of each chain as specs without "-A CHAIN ".
type savedTable struct {
	chains map[string]string
	rules  map[string][]string
}

// parseSave reads iptables-save output (without -c).
func parseSave(text string) (saved, error) {
	s := saved{tables: map[string]*savedTable{}}
	var cur *savedTable
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "":
		case strings.HasPrefix(line, "#"):
			if strings.Contains(line, legacyWarning) {
				s.legacy = true
			}
		case strings.HasPrefix(line, "*"):
			cur = &savedTable{chains: map[string]string{}, rules: map[string][]string{}}
			s.tables[line[1:]] = cur
		case line == "COMMIT":
			cur = nil
		case cur == nil:
			return saved{}, fmt.Errorf("iptables-save line %d outside a table: %q", i+1, line)
		case strings.HasPrefix(line, ":"):
			f := strings.Fields(line[1:])
			if len(f) < 2 {
				return saved{}, fmt.Errorf("iptables-save line %d: bad chain declaration %q", i+1, line)
			}
			cur.chains[f[0]] = f[1]
		case strings.HasPrefix(line, "-A "):
			chain, spec, _ := strings.Cut(line[3:], " ")
			cur.rules[chain] = append(cur.rules[chain], spec)
		default:
			return saved{}, fmt.Errorf("iptables-save line %d not understood: %q", i+1, line)
		}
	}
	return s, nil
}

func (s saved) table(name string) *savedTable {
	if t := s.tables[name]; t != nil {
		return t
	}
	return &savedTable{}
}

func (t *savedTable) has(chain string) bool {
	_, ok := t.chains[chain]
	return ok
}

// jumpsTo lists the rules of chain from that jump (or go) to target, with
// their 0-based positions.
func (t *savedTable) jumpsTo(chain, target string) (specs []string, pos []int) {
	for i, spec := range t.rules[chain] {
		if isJumpTo(spec, target) {
			specs = append(specs, spec)
			pos = append(pos, i)
		}
	}
	return specs, pos
}

func isJumpTo(spec, target string) bool {
	f := strings.Fields(spec)
	for i := 0; i+1 < len(f); i++ {
		if (f[i] == "-j" || f[i] == "-g") && f[i+1] == target {
			return true
		}
	}
	return false
}

// jumpOK says whether the hook's first rule is exactly our jump and there is
// no other jump to the chain.
func (t *savedTable) jumpOK(c Chain) bool {
	specs, pos := t.jumpsTo(c.Hook, c.Name)
	return len(specs) == 1 && pos[0] == 0 && specs[0] == c.Jump
}

// planEnsure returns the iptables-restore --noflush input that turns have
// into want, touching only what differs; "" when nothing does. A chain whose
// rules differ is redeclared (flushed) and refilled in the same transaction.
// A misplaced, foreign-looking or duplicate jump is deleted by its exact spec
// (never by position, which a concurrent writer could shift) and ours
// inserted at 1.
func planEnsure(want []Chain, have saved) string {
	var b strings.Builder
	for _, table := range tablesOf(want) {
		t := have.table(table)
		var lines []string
		for _, c := range want {
			if c.Table != table {
				continue
			}
			if !t.has(c.Name) || !slices.Equal(t.rules[c.Name], c.Rules) {
				lines = append(lines, ":"+c.Name+" - [0:0]")
				for _, r := range c.Rules {
					lines = append(lines, "-A "+c.Name+" "+r)
				}
			}
			if !t.jumpOK(c) {
				specs, _ := t.jumpsTo(c.Hook, c.Name)
				for _, s := range specs {
					lines = append(lines, "-D "+c.Hook+" "+s)
				}
				lines = append(lines, "-I "+c.Hook+" 1 "+c.Jump)
			}
		}
		writeTable(&b, table, lines)
	}
	return b.String()
}

// planRemove returns the input that deletes every jump to the named chains
// (from any chain of their table), then flushes and deletes them; "" when
// none exists.
func planRemove(chains []Chain, have saved) string {
	var b strings.Builder
	for _, table := range tablesOf(chains) {
		t := have.table(table)
		var dels, flush, del []string
		for _, c := range chains {
			if c.Table != table || !t.has(c.Name) {
				continue
			}
			for _, from := range sortedKeys(t.rules) {
				specs, _ := t.jumpsTo(from, c.Name)
				for _, s := range specs {
					dels = append(dels, "-D "+from+" "+s)
				}
			}
			flush = append(flush, "-F "+c.Name)
			del = append(del, "-X "+c.Name)
		}
		writeTable(&b, table, slices.Concat(dels, flush, del))
	}
	return b.String()
}

// problems compares have with want and describes each difference.
func problems(f Family, want []Chain, have saved) []string {
	var out []string
	if have.legacy {
		out = append(out, fmt.Sprintf("%s: iptables-legacy tables are present besides the nf_tables ones; "+
			"their rules (a DROP policy on FORWARD, say) apply too, and flatmesh manages only the nf_tables ones", f))
	}
	for _, c := range want {
		t := have.table(c.Table)
		switch {
		case !t.has(c.Name):
			out = append(out, fmt.Sprintf("%s: chain %s is missing from table %s", f, c.Name, c.Table))
		case !slices.Equal(t.rules[c.Name], c.Rules):
			out = append(out, fmt.Sprintf("%s: chain %s in table %s holds %d rules that differ from the %d desired",
				f, c.Name, c.Table, len(t.rules[c.Name]), len(c.Rules)))
		}
		specs, pos := t.jumpsTo(c.Hook, c.Name)
		switch {
		case len(specs) == 0:
			out = append(out, fmt.Sprintf("%s: no jump from %s to %s in table %s", f, c.Hook, c.Name, c.Table))
		case len(specs) > 1:
			out = append(out, fmt.Sprintf("%s: %d jumps from %s to %s in table %s, want one",
				f, len(specs), c.Hook, c.Name, c.Table))
		case pos[0] != 0:
			out = append(out, fmt.Sprintf("%s: jump from %s to %s in table %s is rule %d, not the first",
				f, c.Hook, c.Name, c.Table, pos[0]+1))
		case specs[0] != c.Jump:
			out = append(out, fmt.Sprintf("%s: jump from %s to %s in table %s is %q, want %q",
				f, c.Hook, c.Name, c.Table, specs[0], c.Jump))
		}
	}
	return out
}

// tablesOf lists the tables of the chains in first-seen order.
func tablesOf(chains []Chain) []string {
	var ts []string
	for _, c := range chains {
		if !slices.Contains(ts, c.Table) {
			ts = append(ts, c.Table)
		}
	}
	return ts
}

func writeTable(b *strings.Builder, table string, lines []string) {
	if len(lines) == 0 {
		return
	}
	b.WriteString("*" + table + "\n")
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	b.WriteString("COMMIT\n")
}

func sortedKeys(m map[string][]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
