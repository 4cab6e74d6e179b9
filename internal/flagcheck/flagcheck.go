// Package flagcheck holds the check every command makes of its flags
// alike.
package flagcheck

import (
	"flag"
	"slices"
)

// Empty returns the name of the first flag given on the command line with
// an empty value (an empty argument, or "-tls-ca $CA" with CA unset), other
// than those of except, or "". Read as "not given", such a flag fell back
// to its default silently: plaintext for an unset -tls-ca, stdin for
// -f, the default log for -l (a black-box tester). Only string flags
// are named (fs.String, fs.StringVar): a number, a boolean or a duration
// is never empty, and a flag.Func's value is its own to check.
func Empty(fs *flag.FlagSet, except ...string) string {
	name := ""
	fs.Visit(func(f *flag.Flag) {
		g, ok := f.Value.(flag.Getter)
		if !ok || name != "" || slices.Contains(except, f.Name) {
			return
		}
		if v, ok := g.Get().(string); ok && v == "" {
			name = f.Name
		}
	})
	return name
}
