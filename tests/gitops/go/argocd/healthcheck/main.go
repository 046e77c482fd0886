// healthcheck runs a resource health script in Argo CD's own Lua engine (util/lua, gopher-lua,
// Lua 5.1, the same sandbox and time limit as the application-controller) against every case of
// an Argo CD health_test.yaml, and prints one JSON line per case:
// {"inputPath": ..., "status": ..., "message": ..., "deletionMessage": ..., "error": ...}.
//
//	healthcheck SCRIPT.lua DIR/health_test.yaml
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/argoproj/argo-cd/v3/util/lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

type testFile struct {
	Tests []struct {
		InputPath string `json:"inputPath"`
	} `json:"tests"`
}

type result struct {
	InputPath       string `json:"inputPath"`
	Status          string `json:"status,omitempty"`
	Message         string `json:"message,omitempty"`
	DeletionMessage string `json:"deletionMessage,omitempty"`
	Error           string `json:"error,omitempty"`
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: healthcheck SCRIPT.lua health_test.yaml")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	must(err)
	raw, err := os.ReadFile(os.Args[2])
	must(err)
	var tests testFile
	must(yaml.Unmarshal(raw, &tests))
	vm := lua.VM{}
	out := json.NewEncoder(os.Stdout)
	for _, t := range tests.Tests {
		r := result{InputPath: t.InputPath}
		obj, err := readObject(filepath.Join(filepath.Dir(os.Args[2]), t.InputPath))
		if err == nil {
			h, herr := vm.ExecuteHealthLua(obj, string(script))
			if herr != nil {
				err = herr
			} else {
				r.Status, r.Message, r.DeletionMessage = string(h.Status), h.Message, h.DeletionMessage
			}
		}
		if err != nil {
			r.Error = err.Error()
		}
		must(out.Encode(r))
	}
}

func readObject(path string) (*unstructured.Unstructured, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	obj := map[string]any{}
	if err := yaml.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &unstructured.Unstructured{Object: obj}, nil
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(1)
	}
}
