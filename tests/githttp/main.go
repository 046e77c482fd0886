// githttp serves the bare Git repositories under a directory over smart HTTP on 127.0.0.1, as
// Flux's source-controller and Argo CD's repo-server clone them: `git http-backend` behind
// net/http/cgi. It prints the address it listens on, then serves until killed.
//
//	githttp -root DIR [-addr 127.0.0.1:0]
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"strings"
)

func main() {
	root := flag.String("root", "", "directory holding the bare repositories (NAME.git)")
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	flag.Parse()
	if *root == "" {
		log.Fatal("githttp: -root is required")
	}
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		log.Fatalf("githttp: git --exec-path: %v", err)
	}
	backend := &cgi.Handler{
		Path: strings.TrimSpace(string(out)) + "/git-http-backend",
		Env:  []string{"GIT_PROJECT_ROOT=" + *root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("githttp: listen %s: %v", *addr, err)
	}
	fmt.Fprintln(os.Stdout, listener.Addr().String())
	os.Stdout.Sync()
	log.Fatal(http.Serve(listener, backend))
}
