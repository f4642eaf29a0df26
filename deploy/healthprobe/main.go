// Command healthprobe is the container image's HEALTHCHECK: the runtime
// image holds no shell, wget or curl, so this static binary asks a
// shadowcube process for /healthz and exits 0 on 200, 1 otherwise.
//
//	healthprobe            GET http://127.0.0.1:<port of SHADOWCUBE_METRICS_ADDR>/healthz
//	healthprobe URL        GET URL (e.g. a demo-service's http://127.0.0.1:8000/healthz)
//
// It uses nothing but the standard library so the image stays minimal.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv("SHADOWCUBE_METRICS_ADDR"), os.Stderr))
}

// run probes the URL (args[0]) or /healthz on the metrics address and
// returns the exit status.
func run(args []string, metricsAddr string, stderr io.Writer) int {
	url, err := target(args, metricsAddr)
	if err != nil {
		fmt.Fprintln(stderr, "healthprobe:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintln(stderr, "healthprobe:", err)
		return 1
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "healthprobe:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "healthprobe: %s: %s %s\n", url, resp.Status, body)
		return 1
	}
	return 0
}

// target is the URL to probe: the argument, else /healthz on the loopback
// address of SHADOWCUBE_METRICS_ADDR's port.
func target(args []string, metricsAddr string) (string, error) {
	switch {
	case len(args) > 1:
		return "", fmt.Errorf("want at most one argument, the URL to probe; got %d", len(args))
	case len(args) == 1:
		return args[0], nil
	case metricsAddr == "":
		return "", fmt.Errorf("SHADOWCUBE_METRICS_ADDR is empty: the process serves no /healthz (set HEALTHCHECK NONE for it)")
	}
	host, port, err := net.SplitHostPort(metricsAddr)
	if err != nil {
		return "", fmt.Errorf("SHADOWCUBE_METRICS_ADDR=%q: want host:port, e.g. :9090", metricsAddr)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz", nil
}
