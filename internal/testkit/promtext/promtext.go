// Package promtext checks a scrape in the Prometheus text format the way
// a strict parser reads it: every family in one group, after one TYPE
// line.
package promtext

import (
	"fmt"
	"strings"
)

// Check returns the problems of text: a sample outside its family's group
// (its family's TYPE line must come just before the group), a family that
// comes back after another began, a second TYPE line, an ftkv_ family
// without help text; and, for want's families, a type other than want's.
func Check(text string, want map[string]string) []string {
	var probs []string
	types := map[string]string{}
	done := map[string]bool{}
	cur := ""
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		if f, ok := strings.CutPrefix(l, "# HELP "); ok {
			if name, h, _ := strings.Cut(f, " "); strings.HasPrefix(name, "ftkv_") && strings.TrimSpace(h) == "" {
				probs = append(probs, "no help text for "+name)
			}
			continue
		}
		if f, ok := strings.CutPrefix(l, "# TYPE "); ok {
			name, typ, _ := strings.Cut(f, " ")
			if _, dup := types[name]; dup {
				probs = append(probs, "second TYPE line for "+name)
			}
			types[name] = typ
			if cur != "" {
				done[cur] = true
			}
			cur = name
			continue
		}
		if strings.HasPrefix(l, "#") || l == "" {
			continue
		}
		name := l
		if i := strings.IndexAny(l, "{ "); i >= 0 {
			name = l[:i]
		}
		switch {
		case done[name]:
			probs = append(probs, fmt.Sprintf("family %s comes back after another: %q", name, l))
		case name != cur && !strings.HasPrefix(name, cur+"_"):
			probs = append(probs, fmt.Sprintf("sample %q outside its family's group (the group is %q's)", l, cur))
		}
	}
	for name, typ := range want {
		if types[name] != typ {
			probs = append(probs, fmt.Sprintf("family %s: type %q, want %q", name, types[name], typ))
		}
	}
	return probs
}
