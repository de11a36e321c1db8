package pyexec

import (
	"go/ast"
	"go/parser"
	"go/token"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCodesListsEveryConstant reads the Code constants from the source, so
// that a code added without its place in Codes fails here rather than being
// skipped by every test that iterates Codes.
func TestCodesListsEveryConstant(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "pyexec.go", nil, 0)
	require.NoError(t, err)
	var declared []Code
	for _, d := range f.Decls {
		gen, ok := d.(*ast.GenDecl)
		if !ok || gen.Tok != token.CONST {
			continue
		}
		for _, spec := range gen.Specs {
			vs := spec.(*ast.ValueSpec)
			if typ, ok := vs.Type.(*ast.Ident); !ok || typ.Name != "Code" {
				continue
			}
			for _, v := range vs.Values {
				lit, ok := v.(*ast.BasicLit)
				require.True(t, ok, "a Code constant that is not a string literal")
				declared = append(declared, Code(lit.Value[1:len(lit.Value)-1]))
			}
		}
	}
	require.NotEmpty(t, declared, "no Code constants found in pyexec.go")
	assert.Equal(t, declared, Codes())
}

func TestIsScriptCodeIsASubsetOfCodes(t *testing.T) {
	n := 0
	for _, c := range Codes() {
		if IsScriptCode(c) {
			n++
		}
	}
	assert.Equal(t, 7, n, "the codes a script's behaviour can produce")
	assert.False(t, IsScriptCode(Code("something_new")))
}
