package timing

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every duration the server, the coordinator and the client wait for comes
// from this package: a time unit written in their code (outside tests) is a
// failure unless it only converts units (d / time.Millisecond, d.Round(…))
// or a comment within two lines above says "timing: exception — why".
func TestNoLiteralDurations(t *testing.T) {
	units := map[string]bool{"Nanosecond": true, "Microsecond": true, "Millisecond": true, "Second": true, "Minute": true, "Hour": true}
	exceptions := 0
	for _, dir := range []string{"../server", "../coord", "../client"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no Go files in %s: %v", dir, err)
		}
		for _, path := range files {
			if strings.HasSuffix(path, "_test.go") {
				continue
			}
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(string(src), "\n")
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, path, src, parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			// A unit is a conversion, not a duration, when it divides, is
			// an argument of Round/Truncate or of a numeric conversion, or
			// multiplies or offsets something other than a number literal.
			allowed := map[ast.Node]bool{}
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.BinaryExpr:
					_, xLit := n.X.(*ast.BasicLit)
					_, yLit := n.Y.(*ast.BasicLit)
					switch {
					case n.Op == token.QUO:
						allowed[n.Y] = true
						if !yLit {
							allowed[n.X] = true
						}
					case !xLit && !yLit:
						allowed[n.X], allowed[n.Y] = true, true
					}
				case *ast.CallExpr:
					conv := false
					if id, ok := n.Fun.(*ast.Ident); ok && (id.Name == "float64" || id.Name == "int64") {
						conv = true
					}
					if sel, ok := n.Fun.(*ast.SelectorExpr); ok && (sel.Sel.Name == "Round" || sel.Sel.Name == "Truncate") {
						conv = true
					}
					for _, a := range n.Args {
						allowed[a] = allowed[a] || conv
					}
				case *ast.ParenExpr:
					if allowed[n] {
						allowed[n.X] = true
					}
				case *ast.SelectorExpr:
					id, ok := n.X.(*ast.Ident)
					if !ok || id.Name != "time" || !units[n.Sel.Name] || allowed[n] {
						return true
					}
					line := fset.Position(n.Pos()).Line
					for l := line; l >= 1 && l >= line-2; l-- {
						if strings.Contains(lines[l-1], "timing: exception") {
							exceptions++
							t.Logf("exception %s:%d: %s", path, line, strings.TrimSpace(lines[line-1]))
							return true
						}
					}
					t.Errorf("%s:%d: literal duration %s outside the timing configuration: %s", path, line, "time."+n.Sel.Name, strings.TrimSpace(lines[line-1]))
				}
				return true
			})
		}
	}
	t.Logf("%d commented exceptions", exceptions)
}
