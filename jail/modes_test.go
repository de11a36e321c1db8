package jail

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestModes_ParseWhatStringWrites(t *testing.T) {
	for _, v := range []Isolation{IsolationStrict, IsolationFork} {
		got, err := ParseIsolation(v.String())
		require.NoError(t, err)
		assert.Equal(t, v, got)
	}
	for _, v := range []Validation{ValidationStandard, ValidationMinimal} {
		got, err := ParseValidation(v.String())
		require.NoError(t, err)
		assert.Equal(t, v, got)
	}
	for _, v := range []CgroupMode{CgroupAuto, CgroupV1, CgroupV2, CgroupNone} {
		got, err := ParseCgroupMode(v.String())
		require.NoError(t, err)
		assert.Equal(t, v, got)
	}
	// The names are the ones the README and /health use.
	assert.Equal(t, "strict fork", IsolationStrict.String()+" "+IsolationFork.String())
	assert.Equal(t, "standard minimal", ValidationStandard.String()+" "+ValidationMinimal.String())
	assert.Equal(t, "auto v1 v2 none", CgroupAuto.String()+" "+CgroupV1.String()+" "+CgroupV2.String()+" "+CgroupNone.String())
}

func TestModes_RefuseOtherNamesAndSayWhatTheyWant(t *testing.T) {
	_, err := ParseIsolation("vm")
	assert.EqualError(t, err, `"vm": want strict or fork`)
	_, err = ParseValidation("")
	assert.EqualError(t, err, `"": want standard or minimal`)
	_, err = ParseCgroupMode("V2")
	assert.EqualError(t, err, `"V2": want auto, v1, v2 or none`)
	assert.Equal(t, "Isolation(9)", Isolation(9).String())
}

// The zero values are the defaults a Config gets when it says nothing.
func TestModes_ZeroValuesAreTheSafeDefaults(t *testing.T) {
	var c Config
	assert.Equal(t, IsolationStrict, c.Isolation)
	assert.Equal(t, ValidationStandard, c.Validation)
	assert.Equal(t, CgroupAuto, c.Cgroup)
}
