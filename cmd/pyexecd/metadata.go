package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
)

// metadataTimeout bounds the start-up's question to the metadata server,
// which on Google Cloud answers within milliseconds.
const metadataTimeout = time.Second

// traceProject is the project request logs link traces to: the one
// configured, else, on Google Cloud, the one the metadata server names
// (Cloud Run sets no variable for it). It is "" when neither is known;
// request lines then carry the trace id unlinked.
func traceProject(ctx context.Context, c Config, log *zap.Logger) string {
	if c.TraceProject != "" || !c.GoogleCloud {
		return c.TraceProject
	}
	project, err := metadataProject(ctx, c.MetadataHost, metadataTimeout)
	if err != nil {
		log.Warn("request logs are not linked to traces: no project (set PYEXEC_TRACE_PROJECT)", zap.Error(err))
		return ""
	}
	log.Info("trace project read from the metadata server", zap.String("project", project))
	return project
}

// metadataProject asks the metadata server at host (host[:port]) for the
// project id, within timeout.
func metadataProject(ctx context.Context, host string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	url := "http://" + host + "/computeMetadata/v1/project/project-id"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("metadata server: %w", err)
	}
	req.Header.Set("Metadata-Flavor", "Google")
	// The server is on the host's own link: never through a proxy, and no
	// connection is kept once the answer is read.
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	res, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("metadata server: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("metadata server: %s answered %s", url, res.Status)
	}
	// Google's metadata server marks its answers; anything else on that
	// address is not it.
	if res.Header.Get("Metadata-Flavor") != "Google" {
		return "", fmt.Errorf("metadata server: %s answered without Metadata-Flavor: Google", url)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, 256))
	if err != nil {
		return "", fmt.Errorf("metadata server: %w", err)
	}
	project := strings.TrimSpace(string(body))
	if !validProjectID(project) {
		return "", errors.New("metadata server: the project id it answered is not one")
	}
	return project, nil
}

// validProjectID accepts Google Cloud project ids, the older domain-scoped
// ones ("example.com:project") included: lowercase letters, digits, '-',
// '.' and ':'. Nothing that would change the trace name it goes into.
func validProjectID(id string) bool {
	if id == "" || len(id) > 100 {
		return false
	}
	for i := 0; i < len(id); i++ {
		ch := id[i]
		if !('a' <= ch && ch <= 'z' || '0' <= ch && ch <= '9' || ch == '-' || ch == '.' || ch == ':') {
			return false
		}
	}
	return true
}
