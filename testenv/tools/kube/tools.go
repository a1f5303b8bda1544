//go:build tools

// Package tools pins k8s.io/kubernetes. That module requires every k8s.io/* staging
// module at v0.0.0 and replaces them with ./staging/...; a dependent module must replace
// them with their published versions instead (testenv/build adds them to go.mod with `go mod edit`).
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
