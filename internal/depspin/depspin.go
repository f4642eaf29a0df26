// Package depspin pins the modules the stages are built on while they are
// being written, so that concurrent work does not edit go.mod. Remove it once
// every module here is imported by real code.
package depspin

import (
	_ "github.com/6tail/lunar-go/calendar"
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/jackc/pglogrepl"
	_ "github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/kelseyhightower/envconfig"
	_ "github.com/nats-io/nats.go/jetstream"
	_ "github.com/prometheus/client_golang/prometheus/collectors"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/prometheus/client_golang/prometheus/testutil"
	_ "github.com/spf13/cobra"
	_ "go.uber.org/goleak"
	_ "golang.org/x/net/http2/h2c"
	_ "gopkg.in/yaml.v3"
	_ "pgregory.net/rapid"
)
