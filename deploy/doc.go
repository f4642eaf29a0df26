// Package deploy holds what it takes to run shadowcube outside a laptop:
// the whole stack in docker compose (compose/), Kubernetes manifests with
// kustomize (k8s/), Prometheus rules (prometheus/) and Grafana dashboards
// (grafana/), plus healthprobe, the image's HEALTHCHECK binary. Its tests
// build the binary exactly as the root Dockerfile does, check it is static,
// and check every command, flag, variable, image, file and name the compose
// and Kubernetes files use against that binary and each other.
package deploy
