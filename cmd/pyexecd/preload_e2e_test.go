package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/pyexec/pyexec/internal/testenv"
	"github.com/pyexec/pyexec/jail"
)

func TestE2E_Preload(t *testing.T) { inEveryMode(t, testE2EPreload) }

// testE2EPreload checks that PYEXEC_PRELOAD decides what a script finds
// already imported, and that a figure drawn from a preloaded pyplot comes
// back as from one the script imported.
func testE2EPreload(t *testing.T, iso jail.Isolation) {
	const probe = "import sys\n" +
		"def main():\n" +
		"    return [m in sys.modules for m in ('numpy', 'pandas', 'matplotlib.pyplot')]\n"
	for _, tc := range []struct {
		name    string
		preload []string
		want    string
	}{
		{"default", nil, `[true, true, false]`},
		{"with pyplot", []string{"numpy", "pandas", "matplotlib.pyplot"}, `[true, true, true]`},
		{"none", []string{}, `[false, false, false]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startService(t, iso, func(c *Config) {
				c.PoolSize = 1
				if tc.preload != nil {
					c.Preload = tc.preload
				}
			})
			r := s.run(probe, 0)
			require.Nil(t, r.Body.Error)
			assert.JSONEq(t, tc.want, string(r.Body.Result))
			r = s.run("import matplotlib.pyplot as plt\ndef main():\n    plt.plot([1, 2])\n    return 1\n", 0)
			require.Nil(t, r.Body.Error)
			require.Len(t, r.Body.Figures, 1)
			assert.Equal(t, [2]int{640, 480}, [2]int{r.Body.Figures[0].Width, r.Body.Figures[0].Height})
		})
	}
}

// A module that cannot be imported keeps the service from starting, with
// the harness's reason.
func TestE2E_PreloadOfAMissingModuleFailsTheStart(t *testing.T) {
	m := NewMain()
	m.Config.Python = testenv.Python(t)
	m.Config.Host, m.Config.Port = "127.0.0.1", "0"
	m.Config.PoolSize = 1
	m.Config.StartupTimeout = 30 * time.Second
	m.Config.Preload = []string{"numpy", "no_such_module_here"}
	m.Log = zap.NewNop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := m.Run(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no_such_module_here")
	assert.NoError(t, m.Close())
}
