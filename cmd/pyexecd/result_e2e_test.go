package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec/jail"
)

func TestE2E_Results(t *testing.T) { inEveryMode(t, testE2EResults) }

// testE2EResults checks, through the real jail, that the values data
// scripts return (DataFrames with missing values, Timestamps, Decimals)
// come back as JSON, and that a bare NaN is still refused.
func testE2EResults(t *testing.T, iso jail.Isolation) {
	s := startService(t, iso, nil)

	t.Run("a DataFrame with a NaN, a Timestamp and a Decimal", func(t *testing.T) {
		r := s.run("import decimal\nimport numpy as np\nimport pandas as pd\n"+
			"def main():\n"+
			"    df = pd.DataFrame({'city': ['Oslo', 'Bergen'], 'temp': [3.5, np.nan],\n"+
			"                       'at': [pd.Timestamp('2024-05-06 07:08:09'), pd.Timestamp('2024-05-07')]})\n"+
			"    return {'rows': df, 'total': decimal.Decimal('12345678901234567890.10')}\n", 0)
		require.Equal(t, 200, r.Status)
		require.Nil(t, r.Body.Error)
		assert.JSONEq(t, `{"rows": [
			{"city": "Oslo", "temp": 3.5, "at": "2024-05-06T07:08:09"},
			{"city": "Bergen", "temp": null, "at": "2024-05-07T00:00:00"}],
			"total": 12345678901234567890.10}`, string(r.Body.Result))
		assert.Contains(t, string(r.Body.Result), "12345678901234567890.10", "the Decimal keeps its digits")
	})
	t.Run("a bare NaN stays invalid_result", func(t *testing.T) {
		r := s.run("def main():\n    return float('nan')\n", 0)
		assert.Equal(t, 200, r.Status)
		assert.Equal(t, "invalid_result", errType(r))
		assert.True(t, strings.HasPrefix(r.Body.Error.Message, "Returned value is not valid JSON: NaN and Infinity"), r.Body.Error.Message)
		s.healthy()
	})
	t.Run("a set says how to convert it", func(t *testing.T) {
		r := s.run("def main():\n    return {'ids': {1, 2}}\n", 0)
		assert.Equal(t, "invalid_result", errType(r))
		assert.Contains(t, r.Body.Error.Message, "Object of type set is not JSON serializable; use list(...)")
	})
}
