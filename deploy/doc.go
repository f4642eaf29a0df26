// Package deploy holds what it takes to run shadowcube outside a laptop:
// docker compose for a local stack (compose/), and, as the stages land,
// Kubernetes manifests, Prometheus rules and Grafana dashboards. The Go
// package only carries the test that every YAML file here parses.
package deploy
