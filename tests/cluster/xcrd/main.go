// Command xcrd prints the claim CRD that Crossplane generates from a CompositeResourceDefinition
// (XRD): the same xcrd.ForCompositeResourceClaim that Crossplane's "offered" controller calls
// (internal/controller/apiextensions/offered in github.com/crossplane/crossplane/v2), so the
// cluster tests judge a Crossplane claim by the schema a real Crossplane would install.
//
//	xcrd XRD.yaml > claim-crd.yaml
//
// No API server sees the XRD here: it is decoded strictly (an unknown field is an error rather
// than dropped) and must spell out the fields the XRD CRD would default. The generated CRD is
// owned by the XRD in a real cluster; that owner reference is left out, as no XRD object exists
// (a reference without a uid is refused, and one to a missing owner is garbage-collected).
package main

import (
	"fmt"
	"os"

	"github.com/crossplane/crossplane-runtime/v2/pkg/xcrd"
	v1 "github.com/crossplane/crossplane/apis/v2/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "xcrd: error: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) != 2 {
		return fmt.Errorf("usage: %s XRD.yaml", os.Args[0])
	}
	in, err := os.ReadFile(os.Args[1])
	if err != nil {
		return err
	}
	xrd := &v1.CompositeResourceDefinition{}
	if err := yaml.UnmarshalStrict(in, xrd); err != nil {
		return fmt.Errorf("%s: %w", os.Args[1], err)
	}
	if gvk := xrd.GroupVersionKind(); gvk != v1.CompositeResourceDefinitionGroupVersionKind {
		return fmt.Errorf("%s: want a %s, found %s", os.Args[1], v1.CompositeResourceDefinitionGroupVersionKind, gvk)
	}
	if xrd.Spec.DefaultCompositeDeletePolicy == nil {
		// The XRD CRD defaults it (Background) and the claim CRD carries it as a default.
		return fmt.Errorf("%s: spec.defaultCompositeDeletePolicy must be set: no API server defaults it here", os.Args[1])
	}
	crd, err := xcrd.ForCompositeResourceClaim(xrd)
	if err != nil {
		return err
	}
	// Only what an apply body carries: no owner reference (see above), no status, no
	// `creationTimestamp: null`.
	meta := map[string]any{"name": crd.Name}
	if len(crd.Labels) > 0 {
		meta["labels"] = crd.Labels
	}
	if len(crd.Annotations) > 0 {
		meta["annotations"] = crd.Annotations
	}
	out, err := yaml.Marshal(map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": meta, "spec": crd.Spec,
	})
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(out)
	return err
}
