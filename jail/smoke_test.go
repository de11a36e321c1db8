package jail

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/internal/testenv"
)

func TestSmoke(t *testing.T) {
	py := testenv.Python(t)
	s, err := NewSpawner(Config{PythonPath: py}, zap.NewExample())
	require.NoError(t, err)
	defer s.Close()
	t0 := time.Now()
	w, err := s.Spawn(context.Background())
	require.NoError(t, err)
	t.Log("spawn", time.Since(t0), w.ready)
	resp, err := w.Run(context.Background(), pyexec.Request{ID: "a", Script: "import os\ndef main():\n    print('hi', os.getuid())\n    return {'x': 1}", Timeout: 2 * time.Second})
	require.NoError(t, err)
	t.Logf("%+v %s", resp, resp.Result)
	w.Kill()
}
