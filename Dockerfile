# shadowcube container image: `make image` (or docker build --build-arg VERSION=... .).
# deploy/docker_test.go runs this file's `go build` lines (with its ENV) on the
# host and checks the binaries are static and stamped, so keep every build in
# one RUN line of the form `go build ... -o /out/<name> ./<package>`.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
ENV CGO_ENABLED=0 GOFLAGS=-mod=readonly
RUN go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" -o /out/shadowcube ./cmd/shadowcube
RUN go build -trimpath -ldflags "-s -w" -o /out/healthprobe ./deploy/healthprobe
# The runtime image is scratch: a passwd entry for the non-root user, a
# writable /tmp (cdc spill files, SHADOWCUBE_CDC_SPILL_DIR default) and a home.
RUN mkdir -p /rootfs/etc /rootfs/tmp /rootfs/home/shadowcube && chmod 1777 /rootfs/tmp \
 && echo 'shadowcube:x:65532:65532:shadowcube:/home/shadowcube:/sbin/nologin' > /rootfs/etc/passwd \
 && echo 'shadowcube:x:65532:' > /rootfs/etc/group

FROM scratch
COPY --from=build /rootfs/ /
COPY --from=build --chown=65532:65532 /rootfs/home/shadowcube /home/shadowcube
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/shadowcube /out/healthprobe /usr/local/bin/
USER 65532:65532
# Time zones come from time/tzdata inside the binary. In a container the
# ops endpoint must listen on every interface for probes and scraping.
ENV PATH=/usr/local/bin HOME=/home/shadowcube TMPDIR=/tmp \
    SHADOWCUBE_METRICS_ADDR=:9090 SHADOWCUBE_LOG_FORMAT=json
EXPOSE 9090
# healthprobe GETs /healthz on SHADOWCUBE_METRICS_ADDR's port; demo-service
# containers override it with their own URL (deploy/compose). Kubernetes
# ignores HEALTHCHECK and uses the httpGet probes in deploy/k8s.
HEALTHCHECK --interval=10s --timeout=4s --start-period=30s --retries=3 CMD ["healthprobe"]
ENTRYPOINT ["shadowcube"]
CMD ["--help"]
