// netpol-engine evaluates Kubernetes NetworkPolicies with an independent engine, cyclonus's
// matcher, for the Flotilla tests (tests/netpol_engine.rs). It knows nothing of Flotilla: it
// reads policies, peers and queries as JSON on stdin and prints one verdict per query.
//
// Input:
//
//	{"policies": [<networking.k8s.io/v1 NetworkPolicy>...],
//	 "peers": {"<id>": {"ip": "10.0.0.1", "namespace": "shop",
//	                    "namespaceLabels": {...}, "podLabels": {...}}, ...},
//	 "queries": [{"src": "<id>", "dst": "<id>", "port": 8080, "portName": "http", "protocol": "TCP"}, ...]}
//
// A peer with a namespace is a pod; one without is an address outside the cluster.
//
// Output: {"verdicts": [{"allowed": true, "ingress": true, "egress": true}, ...]}, in query order.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/mattfenwick/cyclonus/pkg/matcher"
	v1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

type peer struct {
	IP              string            `json:"ip"`
	Namespace       string            `json:"namespace"`
	NamespaceLabels map[string]string `json:"namespaceLabels"`
	PodLabels       map[string]string `json:"podLabels"`
}

type query struct {
	Src      string `json:"src"`
	Dst      string `json:"dst"`
	Port     int    `json:"port"`
	PortName string `json:"portName"`
	Protocol string `json:"protocol"`
}

type input struct {
	Policies []*networkingv1.NetworkPolicy `json:"policies"`
	Peers    map[string]peer               `json:"peers"`
	Queries  []query                       `json:"queries"`
}

type verdict struct {
	Allowed bool `json:"allowed"`
	Ingress bool `json:"ingress"`
	Egress  bool `json:"egress"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "netpol-engine:", err)
		os.Exit(1)
	}
}

func run() error {
	dec := json.NewDecoder(bufio.NewReader(os.Stdin))
	dec.DisallowUnknownFields()
	var in input
	if err := dec.Decode(&in); err != nil {
		return fmt.Errorf("reading input: %w", err)
	}
	peers := map[string]*matcher.TrafficPeer{}
	for id, p := range in.Peers {
		if p.IP == "" {
			return fmt.Errorf("peer %q has no ip", id)
		}
		tp := &matcher.TrafficPeer{IP: p.IP}
		if p.Namespace != "" {
			tp.Internal = &matcher.InternalPeer{
				PodLabels:       p.PodLabels,
				NamespaceLabels: p.NamespaceLabels,
				Namespace:       p.Namespace,
			}
		}
		peers[id] = tp
	}
	policy := matcher.BuildNetworkPolicies(false, in.Policies)
	out := struct {
		Verdicts []verdict `json:"verdicts"`
	}{Verdicts: make([]verdict, 0, len(in.Queries))}
	for i, q := range in.Queries {
		src, dst := peers[q.Src], peers[q.Dst]
		if src == nil || dst == nil {
			return fmt.Errorf("query %d: unknown peer %q or %q", i, q.Src, q.Dst)
		}
		r := policy.IsTrafficAllowed(&matcher.Traffic{
			Source:           src,
			Destination:      dst,
			ResolvedPort:     q.Port,
			ResolvedPortName: q.PortName,
			Protocol:         v1.Protocol(q.Protocol),
		})
		out.Verdicts = append(out.Verdicts, verdict{
			Allowed: r.IsAllowed(),
			Ingress: r.Ingress.IsAllowed(),
			Egress:  r.Egress.IsAllowed(),
		})
	}
	w := bufio.NewWriter(os.Stdout)
	if err := json.NewEncoder(w).Encode(out); err != nil {
		return err
	}
	return w.Flush()
}
