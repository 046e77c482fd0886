// Command promcheck judges Prometheus rules and PromQL with Prometheus's own code, for
// tests/monitoring.rs.
//
//	promcheck rules FILE...   what `promtool check rules` runs on each file: rulefmt.ParseFile
//	                          (the group and rule fields, every expression, label and annotation
//	                          templates), with promtool's default parser options
//	promcheck exprs           parses each expression of a JSON array of strings on stdin
//	promcheck scrape TYPE     reads a scrape's body on stdin as Prometheus does for the
//	                          Content-Type TYPE (no fallback protocol: Prometheus 3's default)
//	                          and prints each series' labels as a JSON object, one a line
//
// Errors go to stderr, one a line, with a non-zero exit. Not promtool itself: promtool links every
// service discovery (cloud SDKs, client-go), minutes of building for code never used here.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/promql/parser"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: promcheck rules FILE... | promcheck exprs < exprs.json | promcheck scrape CONTENT-TYPE < body")
		os.Exit(2)
	}
	// promtool's: no experimental functions, UTF-8 metric and label names.
	p := parser.NewParser(parser.Options{})
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	failed := false
	switch os.Args[1] {
	case "rules":
		for _, file := range os.Args[2:] {
			groups, errs := rulefmt.ParseFile(file, false, model.UTF8Validation, p, logger)
			for _, err := range errs {
				fmt.Fprintln(os.Stderr, err)
				failed = true
			}
			if groups != nil {
				rules := 0
				for _, g := range groups.Groups {
					rules += len(g.Rules)
				}
				fmt.Printf("%s: %d groups, %d rules\n", file, len(groups.Groups), rules)
			}
		}
	case "exprs":
		var exprs []string
		if err := json.NewDecoder(os.Stdin).Decode(&exprs); err != nil {
			fmt.Fprintln(os.Stderr, "stdin: a JSON array of strings expected:", err)
			os.Exit(2)
		}
		for _, e := range exprs {
			if _, err := p.ParseExpr(e); err != nil {
				fmt.Fprintf(os.Stderr, "%q: %v\n", e, err)
				failed = true
			}
		}
		fmt.Printf("%d expressions parsed\n", len(exprs))
	case "scrape":
		if len(os.Args) != 3 {
			fmt.Fprintln(os.Stderr, "usage: promcheck scrape CONTENT-TYPE < body")
			os.Exit(2)
		}
		failed = !scrape(os.Args[2])
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}

// scrape reads stdin as the scrape loop does (textparse.New with the target's Content-Type) and
// prints every series it yields. False when Prometheus would fail the scrape.
func scrape(contentType string) bool {
	body, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stdin:", err)
		return false
	}
	p, err := textparse.New(body, contentType, nil, textparse.ParserOptions{})
	if p == nil {
		fmt.Fprintf(os.Stderr, "Content-Type %q: Prometheus fails the scrape: %v\n", contentType, err)
		return false
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "warning:", err)
	}
	enc := json.NewEncoder(os.Stdout)
	for {
		entry, err := p.Next()
		if errors.Is(err, io.EOF) {
			return true
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "Prometheus fails the scrape:", err)
			return false
		}
		if entry == textparse.EntrySeries || entry == textparse.EntryHistogram {
			var ls labels.Labels
			p.Labels(&ls)
			if err := enc.Encode(ls.Map()); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return false
			}
		}
	}
}
