// helmcheck: renders helm/nhgw without Helm and checks the manifests, the alert rules and the
// Grafana dashboard (tests/helm/run.sh runs it).
//
//	helmcheck render [-f values.yaml]... [--set k=v]... [--name R] [--namespace N] CHART_DIR
//	helmcheck check  REPO_DIR       (chart cases, alert/dashboard consistency; "N passed, N failed")
//	helmcheck dashboard-exprs FILE  (the dashboard's PromQL as a rule file, for promtool)
package main

import (
	"fmt"
	"os"
	"strings"
)

func usage() {
	fmt.Fprintln(os.Stderr, "usage: helmcheck render [-f FILE]... [--set K=V]... [--name R] [--namespace N] CHART_DIR\n"+
		"       helmcheck check REPO_DIR\n       helmcheck dashboard-exprs DASHBOARD_JSON")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 3 {
		usage()
	}
	switch os.Args[1] {
	case "render":
		o := renderOptions{releaseName: "nhgw", namespace: "default"}
		var pos []string
		args := os.Args[2:]
		for i := 0; i < len(args); i++ {
			flag := args[i]
			if !strings.HasPrefix(flag, "-") {
				pos = append(pos, flag)
				continue
			}
			if i+1 >= len(args) {
				usage()
			}
			i++
			switch flag {
			case "-f", "--values":
				o.valueFiles = append(o.valueFiles, args[i])
			case "--set":
				o.sets = append(o.sets, args[i])
			case "--name":
				o.releaseName = args[i]
			case "--namespace", "-n":
				o.namespace = args[i]
			default:
				usage()
			}
		}
		if len(pos) != 1 {
			usage()
		}
		o.chartDir = pos[0]
		r, err := render(o)
		if err != nil {
			fmt.Fprintln(os.Stderr, "Error:", err)
			os.Exit(1)
		}
		if _, err := r.objects(); err != nil {
			fmt.Fprintln(os.Stderr, "Error:", err)
			os.Exit(1)
		}
		fmt.Print(r.stream())
	case "check":
		os.Exit(runChecks(os.Args[2]))
	case "dashboard-exprs":
		if err := dashboardExprRules(os.Args[2], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "Error:", err)
			os.Exit(1)
		}
	default:
		usage()
	}
}
