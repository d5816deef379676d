// Command etcd is etcd's own server (go.etcd.io/etcd/server/v3/etcdmain), built from the
// Go module proxy for the Kubernetes integration tests. `go install` of the server module
// itself is refused (its go.mod has replace lines); as a dependency it builds.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
