package main

// `mirrord-k8s cri ENDPOINT ps|cleanup`: a tiny CRI client (the test cluster has no crictl).
// cleanup stops and removes every pod sandbox through the runtime's CRI, which stops their
// containers and runs the CNI DEL that removes veths, IP leases and per-pod iptables rules.

import (
	"context"
	"fmt"
	"os"
	"time"

	cri "k8s.io/cri-client/pkg"
)

func criMain(args []string) int {
	if len(args) != 2 || (args[1] != "ps" && args[1] != "cleanup") {
		fmt.Fprintln(os.Stderr, "usage: mirrord-k8s cri unix:///PATH/containerd.sock ps|cleanup")
		return 64
	}
	rt, err := cri.NewRemoteRuntimeService(args[0], 30*time.Second, nil, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri: %v\n", err)
		return 1
	}
	ctx := context.Background()
	boxes, err := rt.ListPodSandbox(ctx, nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cri: list pod sandboxes: %v\n", err)
		return 1
	}
	if args[1] == "ps" {
		for _, b := range boxes {
			fmt.Printf("%s\t%s/%s\t%s\n", b.Id[:13], b.Metadata.Namespace, b.Metadata.Name, b.State)
		}
		return 0
	}
	code := 0
	for _, b := range boxes {
		if err := rt.StopPodSandbox(ctx, b.Id); err != nil {
			fmt.Fprintf(os.Stderr, "cri: stop %s/%s: %v\n", b.Metadata.Namespace, b.Metadata.Name, err)
			code = 1
			continue
		}
		if err := rt.RemovePodSandbox(ctx, b.Id); err != nil {
			fmt.Fprintf(os.Stderr, "cri: remove %s/%s: %v\n", b.Metadata.Namespace, b.Metadata.Name, err)
			code = 1
		}
	}
	return code
}
