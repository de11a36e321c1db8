package wire

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pyexec/pyexec"
)

func TestResponseJSON(t *testing.T) {
	cases := []struct {
		name string
		resp *pyexec.Response
		want string
	}{
		{"success", &pyexec.Response{Result: json.RawMessage(`{"a":1}`), Stdout: "o", Stderr: "e", StdoutTruncated: true, Duration: 1500 * time.Microsecond, QueueWait: 250 * time.Microsecond},
			`{"result":{"a":1},"stdout":"o","stderr":"e","error":null,"meta":{"request_id":"id","duration_ms":1.5,"queue_ms":0.25,"stdout_truncated":true,"stderr_truncated":false}}`},
		{"nothing returned is a null result", &pyexec.Response{},
			`{"result":null,"stdout":"","stderr":"","error":null,"meta":{"request_id":"id","duration_ms":0,"queue_ms":0,"stdout_truncated":false,"stderr_truncated":false}}`},
		{"a failed script has a null result and no internal cause", &pyexec.Response{Result: json.RawMessage(`1`), Stdout: "before",
			Error: &pyexec.Error{Code: pyexec.CodeRuntime, Message: "ValueError: boom", Traceback: "tb", Err: assert.AnError}},
			`{"result":null,"stdout":"before","stderr":"","error":{"type":"runtime_error","message":"ValueError: boom","traceback":"tb"},"meta":{"request_id":"id","duration_ms":0,"queue_ms":0,"stdout_truncated":false,"stderr_truncated":false}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data, err := json.Marshal(NewResponse(tc.resp, "id"))
			require.NoError(t, err)
			assert.JSONEq(t, tc.want, string(data))

			var back Response
			require.NoError(t, json.Unmarshal(data, &back))
			got := back.Domain()
			assert.Equal(t, tc.resp.Stdout, got.Stdout)
			assert.Equal(t, tc.resp.StdoutTruncated, got.StdoutTruncated)
			assert.Equal(t, tc.resp.Duration, got.Duration)
			assert.Equal(t, tc.resp.QueueWait, got.QueueWait)
			if tc.resp.Error != nil {
				assert.Nil(t, got.Result)
				assert.Equal(t, &pyexec.Error{Code: tc.resp.Error.Code, Message: tc.resp.Error.Message, Traceback: tc.resp.Error.Traceback}, got.Error)
			} else {
				assert.Nil(t, got.Error)
			}
		})
	}
}

func TestErrorAnswerJSON(t *testing.T) {
	data, err := json.Marshal(Response{Error: NewError(pyexec.Errorf(pyexec.CodeOverloaded, "busy"))})
	require.NoError(t, err)
	assert.JSONEq(t, `{"result":null,"stdout":"","stderr":"","error":{"type":"overloaded","message":"busy"}}`, string(data))
}

func TestRequestJSON(t *testing.T) {
	data, err := json.Marshal(NewRequest(pyexec.Request{ID: "x", Script: "s", Timeout: 2500 * time.Millisecond}))
	require.NoError(t, err)
	assert.JSONEq(t, `{"script":"s","timeout":2.5}`, string(data))
	data, err = json.Marshal(NewRequest(pyexec.Request{Script: "s"}))
	require.NoError(t, err)
	assert.JSONEq(t, `{"script":"s"}`, string(data), "no timeout: the service's default")
}

func TestRequestJSONWithArgs(t *testing.T) {
	data, err := json.Marshal(NewRequest(pyexec.Request{Script: "s", Args: json.RawMessage(`{"city":"Oslo","n":12345678901234567890}`)}))
	require.NoError(t, err)
	assert.JSONEq(t, `{"script":"s","args":{"city":"Oslo","n":12345678901234567890}}`, string(data))
	assert.Contains(t, string(data), "12345678901234567890", "numbers as written")
}

func TestFilesRoundTrip(t *testing.T) {
	req := NewRequest(pyexec.Request{Script: "s", Files: []pyexec.File{
		{Path: "t.csv", Content: []byte("a,é\n")}, {Path: "b", Content: []byte{0, 0xff}}}})
	assert.Equal(t, []File{
		{Path: "t.csv", Encoding: EncodingUTF8, Content: "a,é\n"},
		{Path: "b", Encoding: EncodingBase64, Content: "AP8="},
	}, req.Files, "text as text, anything else base64")

	resp := NewResponse(&pyexec.Response{
		Files:          []pyexec.OutputFile{{Path: "o.png", MediaType: "image/png", Content: []byte{0x89, 'P'}}},
		FilesLeftOut:   []pyexec.LeftOutFile{{Path: "l", Reason: "r"}},
		FilesTruncated: true,
	}, "id")
	data, err := json.Marshal(resp)
	require.NoError(t, err)
	var back Response
	require.NoError(t, json.Unmarshal(data, &back))
	got := back.Domain()
	assert.Equal(t, []pyexec.OutputFile{{Path: "o.png", MediaType: "image/png", Content: []byte{0x89, 'P'}}}, got.Files)
	assert.Equal(t, []pyexec.LeftOutFile{{Path: "l", Reason: "r"}}, got.FilesLeftOut)
	assert.True(t, got.FilesTruncated)

	back.Files[0].Content = "!!"
	got = back.Domain()
	assert.Empty(t, got.Files)
	assert.Contains(t, got.FilesLeftOut[0].Reason, "not base64", "an undecodable file is named, not dropped")
}
