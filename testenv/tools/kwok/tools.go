//go:build tools

// Package tools pins sigs.k8s.io/kwok so `go build sigs.k8s.io/kwok/cmd/kwok` works here.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
