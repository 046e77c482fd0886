// Command oci-image writes an OCI image layout from gzipped layer tarballs and the image's
// configuration given as flags, with go-containerregistry (no container engine, no registry).
// scripts/image.sh prepares the layers; this program only assembles them.
//
//	oci-image -layout DIR -created RFC3339 -platform linux/amd64 -tag 0.1.0 \
//	  -user 65532:65532 -entrypoint /usr/local/bin/flotilla -cmd run -port 8080/tcp \
//	  -env PATH=... -workdir /home/nonroot -label k=v ... \
//	  -layer base.tar.gz=comment -layer app.tar.gz=comment
//
// DIR must not exist; it is written whole (oci-layout, index.json, blobs/sha256/*). The
// manifest's digest is printed on stdout.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "oci-image: error: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	var layers, labels, env, entrypoint, cmd, ports list
	dir := flag.String("layout", "", "directory to write the OCI layout to (must not exist)")
	created := flag.String("created", "", "creation time, RFC 3339 (e.g. from SOURCE_DATE_EPOCH)")
	platform := flag.String("platform", "", "os/arch[/variant] of the image")
	tag := flag.String("tag", "", "org.opencontainers.image.ref.name of the image in index.json")
	user := flag.String("user", "", "the config's User")
	workdir := flag.String("workdir", "", "the config's WorkingDir")
	flag.Var(&layers, "layer", "FILE=COMMENT: a gzipped layer tarball and its history comment, in order (repeatable)")
	flag.Var(&labels, "label", "KEY=VALUE label (repeatable)")
	flag.Var(&env, "env", "KEY=VALUE environment variable (repeatable)")
	flag.Var(&entrypoint, "entrypoint", "an Entrypoint element (repeatable)")
	flag.Var(&cmd, "cmd", "a Cmd element (repeatable)")
	flag.Var(&ports, "port", "an exposed port, e.g. 8080/tcp (repeatable)")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", flag.Args())
	}
	if *dir == "" || *created == "" || *platform == "" || *tag == "" || len(layers) == 0 {
		return fmt.Errorf("-layout, -created, -platform, -tag and at least one -layer are required")
	}
	if _, err := os.Stat(*dir); err == nil {
		return fmt.Errorf("%s exists; the layout is written whole into a new directory", *dir)
	}
	when, err := time.Parse(time.RFC3339, *created)
	if err != nil {
		return fmt.Errorf("-created: %w", err)
	}
	plat, err := v1.ParsePlatform(*platform)
	if err != nil {
		return fmt.Errorf("-platform: %w", err)
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, spec := range layers {
		file, comment, _ := strings.Cut(spec, "=")
		// A gzipped file is taken as it is (its bytes are the blob); the uncompressed digest is
		// computed by reading it through gunzip.
		layer, err := tarball.LayerFromFile(file, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return fmt.Errorf("layer %s: %w", file, err)
		}
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:     layer,
			MediaType: types.OCILayer,
			History:   v1.History{Created: v1.Time{Time: when}, CreatedBy: comment, Comment: comment},
		})
		if err != nil {
			return fmt.Errorf("layer %s: %w", file, err)
		}
	}

	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: when}
	cf.OS, cf.Architecture, cf.Variant = plat.OS, plat.Architecture, plat.Variant
	cf.Config.User = *user
	cf.Config.WorkingDir = *workdir
	cf.Config.Env = env
	cf.Config.Entrypoint = entrypoint
	cf.Config.Cmd = cmd
	if len(ports) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, p := range ports {
			cf.Config.ExposedPorts[p] = struct{}{}
		}
	}
	if len(labels) > 0 {
		cf.Config.Labels = map[string]string{}
		for _, kv := range labels {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return fmt.Errorf("-label %q: want KEY=VALUE", kv)
			}
			cf.Config.Labels[k] = v
		}
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return err
	}

	path, err := layout.Write(*dir, empty.Index)
	if err != nil {
		return err
	}
	if err := path.WriteImage(img); err != nil {
		return err
	}
	// The index entry is written by hand: AppendImage would also set artifactType to the config's
	// media type, which the image spec reserves for artifacts, not images.
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	size, err := img.Size()
	if err != nil {
		return err
	}
	if err := path.AppendDescriptor(v1.Descriptor{
		MediaType:   types.OCIManifestSchema1,
		Size:        size,
		Digest:      digest,
		Platform:    plat,
		Annotations: map[string]string{"org.opencontainers.image.ref.name": *tag},
	}); err != nil {
		return err
	}
	fmt.Println(digest.String())
	return nil
}
