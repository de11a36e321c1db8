package pool

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"go.uber.org/zap"
)

func TestNew_RefusesAMissingSetting(t *testing.T) {
	f := &factory{}
	full := Config{Size: 1, Spawn: f.spawn, QueueTimeout: time.Second, SpawnTimeout: time.Second, MaxAge: time.Minute}
	for name, change := range map[string]func(*Config){
		"no spawn function": func(c *Config) { c.Spawn = nil },
		"size 0":            func(c *Config) { c.Size = 0 },
		"no queue timeout":  func(c *Config) { c.QueueTimeout = 0 },
		"no spawn timeout":  func(c *Config) { c.SpawnTimeout = 0 },
		"no max age":        func(c *Config) { c.MaxAge = 0 },
	} {
		cfg := full
		change(&cfg)
		_, err := New(cfg, zap.NewNop())
		assert.Error(t, err, name)
	}
	p, err := New(full, zap.NewNop())
	if assert.NoError(t, err) {
		p.Close()
	}
}
