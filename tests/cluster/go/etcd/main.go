// Command etcd is etcd's own server entry point, built from the published
// go.etcd.io/etcd/server/v3 module (its go.mod has local replace lines, so it
// cannot be `go install`ed directly).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
