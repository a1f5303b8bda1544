//go:build tools

// Package tools pins istio.io/istio (kept apart from the Kubernetes helper module so
// the two k8s.io library versions never collide).
package tools

import (
	_ "istio.io/istio/istioctl/cmd/istioctl"
	_ "istio.io/istio/pilot/cmd/pilot-discovery"
)
