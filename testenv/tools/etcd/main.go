// Command etcd is the upstream etcd server, built from go.etcd.io/etcd/server/v3.
// Debian bookworm ships etcd 3.4, older than what kube-apiserver 1.34 needs.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
