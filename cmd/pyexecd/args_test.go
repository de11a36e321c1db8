package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec"
	"github.com/pyexec/pyexec/jail"
	"github.com/pyexec/pyexec/wire"
)

// runArgs runs script with args (nil: none) and returns its status and
// outcome, a refusal as an outcome whose Error is the refusal.
func (s *service) runArgs(script, args string) (int, *pyexec.Response) {
	s.t.Helper()
	req := pyexec.Request{Script: script}
	if args != "" {
		req.Args = json.RawMessage(args)
	}
	return s.runRequest(req)
}

func TestE2E_Args(t *testing.T) { inEveryMode(t, testE2EArgs) }

func testE2EArgs(t *testing.T, iso jail.Isolation) {
	s := startService(t, iso, nil)
	const weather = "def main(city, days=7):\n    print('forecast for', city)\n    return {'city': city, 'days': days}\n"

	t.Run("main is called with args as keyword arguments", func(t *testing.T) {
		status, r := s.runArgs(weather, `{"city": "Oslo"}`)
		assert.Equal(t, 200, status)
		require.Nil(t, r.Error)
		assert.JSONEq(t, `{"city": "Oslo", "days": 7}`, string(r.Result), "the default is used")
		assert.Equal(t, "forecast for Oslo\n", r.Stdout)

		status, r = s.runArgs(weather, `{"city": "Bergen", "days": 3}`)
		assert.Equal(t, 200, status)
		require.Nil(t, r.Error)
		assert.JSONEq(t, `{"city": "Bergen", "days": 3}`, string(r.Result))
	})
	t.Run("the README example with args, verbatim", func(t *testing.T) {
		body := `{"script": "def main(city, days=7):\n    return {\"city\": city, \"days\": days}", "args": {"city": "Oslo"}}`
		res, err := http.Post(s.base+"/execute", "application/json", strings.NewReader(body))
		require.NoError(t, err)
		defer res.Body.Close()
		var out wire.Response
		require.NoError(t, json.NewDecoder(res.Body).Decode(&out))
		assert.Equal(t, 200, res.StatusCode)
		assert.Nil(t, out.Error)
		assert.JSONEq(t, `{"city": "Oslo", "days": 7}`, string(out.Result))
	})
	t.Run("the README example is unchanged without args", func(t *testing.T) {
		status, r := s.runArgs("def main():\n    print(\"hello from sandbox\")\n    return {\"message\": \"success\"}", "")
		assert.Equal(t, 200, status)
		require.Nil(t, r.Error)
		assert.JSONEq(t, `{"message": "success"}`, string(r.Result))
		assert.Equal(t, "hello from sandbox\n", r.Stdout)
	})
	t.Run("a required parameter missing from args is a validation_error naming it", func(t *testing.T) {
		status, r := s.runArgs(weather, `{"days": 3}`)
		assert.Equal(t, 400, status)
		require.NotNil(t, r.Error)
		assert.Equal(t, pyexec.CodeValidation, r.Error.Code)
		assert.Equal(t, "args is missing main()'s required parameter: city", r.Error.Message)
		s.healthy()
	})
	t.Run("a member main does not accept is a validation_error naming it", func(t *testing.T) {
		status, r := s.runArgs(weather, `{"city": "Oslo", "country": "NO"}`)
		assert.Equal(t, 400, status)
		require.NotNil(t, r.Error)
		assert.Equal(t, pyexec.CodeValidation, r.Error.Code)
		assert.Equal(t, "main() has no parameter 'country' given in args (it accepts: city, days)", r.Error.Message)
		assert.Empty(t, r.Stdout, "nothing of the script ran")
		s.healthy()
	})
	t.Run("**kwargs accepts any member, with its JSON type", func(t *testing.T) {
		status, r := s.runArgs("def main(**kw):\n    return {k: [type(v).__name__, v] for k, v in kw.items()}\n",
			`{"n": 12345678901234567890, "x": 1.5, "s": "é", "l": [1, null], "o": {"k": true}, "not an identifier": null}`)
		assert.Equal(t, 200, status)
		require.Nil(t, r.Error)
		assert.JSONEq(t, `{"n": ["int", 12345678901234567890], "x": ["float", 1.5], "s": ["str", "é"],
			"l": ["list", [1, null]], "o": ["dict", {"k": true}], "not an identifier": ["NoneType", null]}`, string(r.Result))
		assert.Contains(t, string(r.Result), "12345678901234567890", "a large integer is not rounded on the way")
	})
	t.Run("a positional-only parameter cannot be given", func(t *testing.T) {
		status, r := s.runArgs("def main(a, /):\n    return a\n", `{"a": 1}`)
		assert.Equal(t, 400, status)
		require.NotNil(t, r.Error)
		assert.Equal(t, pyexec.CodeValidation, r.Error.Code)
		assert.Contains(t, r.Error.Message, "positional-only")
	})
	t.Run("without args, main with required parameters is still refused", func(t *testing.T) {
		status, r := s.runArgs(weather, "")
		assert.Equal(t, 400, status)
		require.NotNil(t, r.Error)
		assert.Equal(t, pyexec.CodeValidation, r.Error.Code)
		assert.Contains(t, r.Error.Message, "main() must take no required arguments (it has: city)")
	})
	t.Run("args that are not an object are invalid_request", func(t *testing.T) {
		status, r := s.runArgs(weather, `["Oslo"]`)
		assert.Equal(t, 400, status)
		require.NotNil(t, r.Error)
		assert.Equal(t, pyexec.CodeInvalidRequest, r.Error.Code)
		assert.Contains(t, r.Error.Message, `"args" must be a JSON object`)
	})
}
