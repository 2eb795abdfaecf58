package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// ------------------------------------------------------------------ reporting

type suite struct{ passed, failed, skipped int }

func (s *suite) result(name string, errs []string) {
	if len(errs) == 0 {
		s.passed++
		fmt.Printf("ok   %s\n", name)
		return
	}
	s.failed++
	fmt.Printf("FAIL %s\n", name)
	for _, e := range errs {
		fmt.Printf("     - %s\n", e)
	}
}

func (s *suite) skip(name, why string) {
	s.skipped++
	fmt.Printf("skip %s: %s\n", name, why)
}

// errs collects the failures of one check.
type errs []string

func (e *errs) add(format string, a ...interface{}) { *e = append(*e, fmt.Sprintf(format, a...)) }
func (e *errs) expect(cond bool, format string, a ...interface{}) {
	if !cond {
		e.add(format, a...)
	}
}

// ------------------------------------------------------------------ navigating parsed YAML

// get walks maps by string key and slices by int index; nil when absent.
func get(v interface{}, p ...interface{}) interface{} {
	for _, k := range p {
		switch key := k.(type) {
		case string:
			m, ok := v.(map[string]interface{})
			if !ok {
				return nil
			}
			v = m[key]
		case int:
			a, ok := v.([]interface{})
			if !ok || key >= len(a) {
				return nil
			}
			v = a[key]
		}
	}
	return v
}

func getMap(v interface{}, p ...interface{}) map[string]interface{} {
	m, _ := get(v, p...).(map[string]interface{})
	return m
}
func getList(v interface{}, p ...interface{}) []interface{} {
	a, _ := get(v, p...).([]interface{})
	return a
}
func getStr(v interface{}, p ...interface{}) string {
	s, _ := get(v, p...).(string)
	return s
}

// getNum returns a number (YAML numbers parse as float64) and whether there was one.
func getNum(v interface{}, p ...interface{}) (float64, bool) {
	switch n := get(v, p...).(type) {
	case float64:
		return n, true
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	}
	return 0, false
}

func strMap(m map[string]interface{}) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = fmt.Sprint(v)
	}
	return out
}

// selects: every selector label is on the object (an empty selector selects nothing here).
func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// ------------------------------------------------------------------ units

// parseQuantity: Kubernetes quantities for memory (bytes) and CPU (cores).
func parseQuantity(s string) (float64, error) {
	suffixes := []struct {
		s string
		f float64
	}{
		{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
		{"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"m", 1e-3},
	}
	for _, x := range suffixes {
		if strings.HasSuffix(s, x.s) {
			n, err := strconv.ParseFloat(strings.TrimSuffix(s, x.s), 64)
			return n * x.f, err
		}
	}
	return strconv.ParseFloat(s, 64)
}

func portOf(hostport string) (int, error) {
	i := strings.LastIndexByte(hostport, ':')
	if i < 0 {
		return 0, fmt.Errorf("%q has no port", hostport)
	}
	return strconv.Atoi(hostport[i+1:])
}

// parseConf reads nhgw's `name = value` config file into name -> values (lists repeat names).
func parseConf(s string) (map[string][]string, error) {
	out := map[string][]string{}
	for i, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		eq := strings.IndexByte(l, '=')
		if eq < 0 {
			return nil, fmt.Errorf("line %d %q: expected name = value", i+1, l)
		}
		k, v := strings.TrimSpace(l[:eq]), strings.TrimSpace(l[eq+1:])
		out[k] = append(out[k], v)
	}
	return out, nil
}

func one(conf map[string][]string, k string) string {
	if len(conf[k]) == 0 {
		return ""
	}
	return conf[k][len(conf[k])-1]
}

// ------------------------------------------------------------------ metric names

type metricSet map[string]string // name -> type

func loadMetricNames(file string) (metricSet, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	ms := metricSet{}
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		f := strings.Fields(l)
		if len(f) != 2 {
			return nil, fmt.Errorf("%s: bad line %q", file, l)
		}
		ms[f[0]] = f[1]
	}
	return ms, nil
}

// known: a series name exposed for one of the metrics (histograms add _bucket/_sum/_count).
func (ms metricSet) known(series string) bool {
	if _, ok := ms[series]; ok {
		return true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base := strings.TrimSuffix(series, suf); base != series && ms[base] == "histogram" {
			return true
		}
	}
	return false
}

var metricRef = regexp.MustCompile(`\bnhgw_[a-z0-9_]+`)

// unknownMetrics lists nhgw_ names in text that are not series of the metric set. Names of the
// chart's own objects (nhgw_… never) and label values do not match the pattern's word boundary
// rules only by luck, so callers pass PromQL or JSON, not arbitrary text.
func (ms metricSet) unknownMetrics(text string) []string {
	seen := map[string]bool{}
	var bad []string
	for _, n := range metricRef.FindAllString(text, -1) {
		if !ms.known(n) && !seen[n] {
			seen[n] = true
			bad = append(bad, n)
		}
	}
	sort.Strings(bad)
	return bad
}

// ------------------------------------------------------------------ chart cases

type chartCase struct {
	name     string
	release  string
	files    []string // under tests/helm/values
	sets     []string
	wantErr  string // the render must fail with this in its message
	present  []string
	absent   []string
	workers  int // expected worker processes
	sessions int // sizing.expectedSessionsPerPod
	autoRate bool
	job      string
	conf     map[string]string // expected nhgw.conf values ("" = absent); lists joined by " | "
}

var allKinds = []string{
	"ServiceAccount/", "ConfigMap/gateway", "ConfigMap/dashboard", "Deployment/gateway",
	"Deployment/platform", "Service/gateway", "Service/admin", "PodDisruptionBudget/gateway",
	"HorizontalPodAutoscaler/gateway", "ServiceMonitor/admin", "PrometheusRule/alerts",
}

func without(all []string, drop ...string) []string {
	var out []string
	for _, k := range all {
		keep := true
		for _, d := range drop {
			if k == d {
				keep = false
			}
		}
		if keep {
			out = append(out, k)
		}
	}
	return out
}

func chartCases() []chartCase {
	return []chartCase{
		{
			name: "default values", release: "nhgw",
			present: without(allKinds, "ConfigMap/dashboard", "Deployment/platform"),
			absent:  []string{"ConfigMap/dashboard", "Deployment/platform"},
			workers: 2, sessions: 50000, autoRate: true, job: "nhgw",
			conf: map[string]string{"link": "nats", "nats-url": "nats://nats:4222", "redis": "redis-master:6379",
				"drain-timeout": "25s", "crl": "", "ticket-key-file": "", "cert": "/etc/nhgw/tls/server/tls.crt"},
		},
		{
			name:    "platform, all certificates, dashboard, long release name",
			release: "edge-gateway-production-eu-central-1-fleet-alpha-release",
			files:   []string{"platform.yaml"},
			present: allKinds,
			workers: 4, sessions: 120000, autoRate: true, job: "edge-gw",
			conf: map[string]string{"cert": "/etc/nhgw/tls/server/tls.crt | /etc/nhgw/tls/server-rsa/tls.crt",
				"device-ca": "/etc/nhgw/tls/device-ca/bundle.pem", "crl": "/etc/nhgw/tls/crl/crl.pem",
				"ticket-key-file": "/etc/nhgw/tls/ticket-keys/ticket.key", "link-prefix": "fleet1",
				"nats-url": "nats://nats-0.nats:4222,nats://nats-1.nats:4222"},
		},
		{
			name: "explicit resources, no autoscaling, no monitoring CRDs", release: "gw",
			files:   []string{"custom.yaml"},
			present: without(allKinds, "HorizontalPodAutoscaler/gateway", "ServiceMonitor/admin", "PrometheusRule/alerts", "ConfigMap/dashboard", "Deployment/platform"),
			absent:  []string{"HorizontalPodAutoscaler/gateway", "ServiceMonitor/admin", "PrometheusRule/alerts", "ConfigMap/dashboard", "Deployment/platform"},
			workers: 4, sessions: 20000, autoRate: false, job: "nhgw",
			conf: map[string]string{"drain-rate": "50", "drain-timeout": "60s", "idle-timeout": "300s", "accept-rate": "1000000"},
		},
		{
			name: "standalone (local link, no registry), no PDB", release: "lab",
			files:   []string{"minimal.yaml"},
			present: []string{"ServiceAccount/", "ConfigMap/gateway", "Deployment/gateway", "Service/gateway", "Service/admin"},
			absent:  []string{"PodDisruptionBudget/gateway", "HorizontalPodAutoscaler/gateway", "ServiceMonitor/admin", "PrometheusRule/alerts", "Deployment/platform"},
			workers: 1, sessions: 5000, autoRate: true, job: "nhgw",
			conf: map[string]string{"link": "local", "nats-url": "", "redis": ""},
		},
		{name: "refuses extraConfig that overrides the admin port", release: "x",
			sets: []string{"gateway.extraConfig.admin-listen=0.0.0.0:9999"}, wantErr: "chart sets this option"},
		{name: "refuses a grace period not longer than preStop + drain deadline", release: "x",
			sets: []string{"drain.terminationGracePeriodSeconds=35"}, wantErr: "must exceed"},
		{name: "refuses the platform without Redis", release: "x",
			sets: []string{"platform.enabled=true", "redis.address="}, wantErr: "redis.address is required"},
		{name: "refuses autoscaling with maxReplicas < minReplicas", release: "x",
			sets: []string{"autoscaling.minReplicas=5", "autoscaling.maxReplicas=3"}, wantErr: "maxReplicas"},
	}
}

func key(o object) string {
	return getStr(o.m, "kind") + "/" + getStr(o.m, "metadata", "labels", "app.kubernetes.io/component")
}

// env is what the checks need besides the rendered chart.
type env struct {
	repo        string
	metrics     metricSet
	alertsFile  []byte
	nhgwHelp    string // empty when build/nhgw is absent
	nhgwBin     string
	platformHlp string
}

func runChecks(repo string) int {
	s := &suite{}
	e := &env{repo: repo}
	var err error
	e.metrics, err = loadMetricNames(filepath.Join(repo, "tests/helm/metric-names.txt"))
	if err != nil {
		fmt.Println("FAIL loading metric names:", err)
		fmt.Println("0 passed, 1 failed")
		return 1
	}
	e.alertsFile, _ = os.ReadFile(filepath.Join(repo, "ops/prometheus/nhgw-alerts.yaml"))
	if b, err := exec.Command(filepath.Join(repo, "build/nhgw"), "--help").CombinedOutput(); err == nil {
		e.nhgwHelp = string(b)
		e.nhgwBin = filepath.Join(repo, "build/nhgw")
	}
	if b, err := exec.Command(filepath.Join(repo, "build/nhplatform"), "--help").CombinedOutput(); err == nil || len(b) > 0 {
		e.platformHlp = string(b)
	}

	for _, c := range chartCases() {
		o := renderOptions{chartDir: filepath.Join(repo, "helm/nhgw"), releaseName: c.release, namespace: "fleet", sets: c.sets}
		for _, f := range c.files {
			o.valueFiles = append(o.valueFiles, filepath.Join(repo, "tests/helm/values", f))
		}
		r, err := render(o)
		if c.wantErr != "" {
			var es errs
			if err == nil {
				es.add("rendered, expected an error containing %q", c.wantErr)
			} else {
				es.expect(strings.Contains(err.Error(), c.wantErr), "error %q does not contain %q", err, c.wantErr)
			}
			s.result(c.name, es)
			continue
		}
		if err != nil {
			s.result(c.name+": renders", []string{err.Error()})
			continue
		}
		objs, err := r.objects()
		if err != nil {
			s.result(c.name+": renders to valid YAML", []string{err.Error()})
			continue
		}
		s.result(c.name+": renders to valid YAML", nil)
		checkChart(s, e, c, r, objs)
	}

	checkFilesIdentical(s, repo, "ops/prometheus/nhgw-alerts.yaml", "helm/nhgw/files/nhgw-alerts.yaml")
	checkFilesIdentical(s, repo, "ops/grafana/nhgw-dashboard.json", "helm/nhgw/files/nhgw-dashboard.json")
	checkAlertRules(s, e)
	checkDashboard(s, e, filepath.Join(repo, "ops/grafana/nhgw-dashboard.json"))
	checkReadmeMetrics(s, e)

	fmt.Println()
	if s.skipped > 0 {
		fmt.Printf("%d passed, %d failed, %d skipped\n", s.passed, s.failed, s.skipped)
	} else {
		fmt.Printf("%d passed, %d failed\n", s.passed, s.failed)
	}
	if s.failed > 0 {
		return 1
	}
	return 0
}

func checkFilesIdentical(s *suite, repo, a, b string) {
	var es errs
	x, err1 := os.ReadFile(filepath.Join(repo, a))
	y, err2 := os.ReadFile(filepath.Join(repo, b))
	if err1 != nil || err2 != nil {
		es.add("read: %v %v", err1, err2)
	} else {
		es.expect(bytes.Equal(x, y), "%s differs from %s: copy it (cp %s %s)", b, a, a, b)
	}
	s.result(fmt.Sprintf("%s is the chart's copy of %s", b, a), es)
}

// ------------------------------------------------------------------ the manifests of one case

func checkChart(s *suite, e *env, c chartCase, r *rendered, objs []object) {
	name := func(what string) string { return c.name + ": " + what }
	byKey := map[string][]object{}
	for _, o := range objs {
		byKey[key(o)] = append(byKey[key(o)], o)
	}
	first := func(k string) map[string]interface{} {
		if l := byKey[k]; len(l) > 0 {
			return l[0].m
		}
		return nil
	}

	// Kinds
	{
		var es errs
		for _, k := range c.present {
			es.expect(len(byKey[k]) == 1, "want exactly one %s, got %d", k, len(byKey[k]))
		}
		for _, k := range c.absent {
			es.expect(len(byKey[k]) == 0, "want no %s, got %d", k, len(byKey[k]))
		}
		for k := range byKey {
			known := false
			for _, a := range allKinds {
				known = known || a == k
			}
			es.expect(known, "unexpected object %s", k)
		}
		s.result(name("expected kinds present, others absent"), es)
	}

	// Metadata and leftovers of templating
	{
		var es errs
		for _, o := range objs {
			n := getStr(o.m, "metadata", "name")
			es.expect(getStr(o.m, "apiVersion") != "", "%s: no apiVersion", o.source)
			es.expect(n != "" && len(n) <= 63, "%s: name %q empty or over 63 characters", o.source, n)
			es.expect(regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`).MatchString(n), "%s: name %q not a DNS label", o.source, n)
			l := strMap(getMap(o.m, "metadata", "labels"))
			es.expect(l["app.kubernetes.io/instance"] == c.release && l["app.kubernetes.io/managed-by"] == "Helm" &&
				l["app.kubernetes.io/name"] == "nhgw", "%s: standard labels missing: %v", o.source, l)
			es.expect(!strings.Contains(o.text, "<no value>") && !strings.Contains(o.text, "%!"), "%s: template leftovers", o.source)
		}
		es.expect(strings.TrimSpace(r.notes) != "" && !strings.Contains(r.notes, "<no value>"), "NOTES.txt empty or with leftovers")
		s.result(name("names are DNS labels <= 63, standard labels, no template leftovers"), es)
	}

	dep := first("Deployment/gateway")
	cm := first("ConfigMap/gateway")
	if dep == nil || cm == nil {
		s.result(name("gateway Deployment and ConfigMap"), []string{"missing"})
		return
	}
	pod := getMap(dep, "spec", "template")
	podLabels := strMap(getMap(pod, "metadata", "labels"))
	var ctr map[string]interface{}
	for _, x := range getList(pod, "spec", "containers") {
		if getStr(x, "name") == "nhgw" {
			ctr, _ = x.(map[string]interface{})
		}
	}
	if ctr == nil {
		s.result(name("gateway container"), []string{"no container named nhgw"})
		return
	}
	ports := map[string]int{}
	for _, p := range getList(ctr, "ports") {
		n, _ := getNum(p, "containerPort")
		ports[getStr(p, "name")] = int(n)
		if getStr(p, "protocol") != "TCP" {
			ports["!"+getStr(p, "name")] = 1
		}
	}
	resolve := func(port interface{}) int {
		switch p := port.(type) {
		case string:
			return ports[p]
		case float64:
			return int(p)
		}
		return 0
	}

	// The config file the container reads
	var conf map[string][]string
	{
		var es errs
		args := getList(ctr, "args")
		confPath := ""
		if len(args) == 2 && args[0] == "--config" {
			confPath, _ = args[1].(string)
		} else {
			es.add("args %v, want [--config PATH]", args)
		}
		var mount map[string]interface{}
		for _, m := range getList(ctr, "volumeMounts") {
			if getStr(m, "mountPath") == confPath {
				mount, _ = m.(map[string]interface{})
			}
		}
		if mount == nil {
			es.add("no volumeMount at %s", confPath)
		} else {
			vol := findVolume(pod, getStr(mount, "name"))
			es.expect(getStr(vol, "configMap", "name") == getStr(cm, "metadata", "name"), "config volume is not the ConfigMap %s", getStr(cm, "metadata", "name"))
			es.expect(getStr(mount, "subPath") == "nhgw.conf", "config mount subPath %q", getStr(mount, "subPath"))
		}
		var err error
		conf, err = parseConf(getStr(cm, "data", "nhgw.conf"))
		if err != nil {
			es.add("nhgw.conf: %v", err)
		}
		for _, k := range []string{"listen", "admin-listen", "workers", "drain-rate", "drain-timeout", "cert", "key", "device-ca", "link"} {
			es.expect(len(conf[k]) > 0, "nhgw.conf lacks %s", k)
		}
		for k, v := range conf {
			if k != "cert" && k != "key" {
				es.expect(len(v) == 1, "nhgw.conf sets %s %d times", k, len(v))
			}
		}
		es.expect(len(conf["cert"]) == len(conf["key"]), "cert/key counts differ")
		for k, want := range c.conf {
			got := strings.Join(conf[k], " | ")
			es.expect(got == want, "nhgw.conf %s = %q, want %q", k, got, want)
		}
		s.result(name("the container reads nhgw.conf from the ConfigMap, with the values set"), es)
	}
	if conf == nil {
		return
	}

	// Ports and probes agree with the gateway's config
	{
		var es errs
		lp, err1 := portOf(one(conf, "listen"))
		ap, err2 := portOf(one(conf, "admin-listen"))
		es.expect(err1 == nil && err2 == nil, "listen/admin-listen unparsable: %v %v", err1, err2)
		es.expect(lp == ports["device"] && lp > 1024, "listen port %d vs containerPort device %d (and > 1024, no privileges)", lp, ports["device"])
		es.expect(ap == ports["admin"] && ap != lp, "admin-listen port %d vs containerPort admin %d", ap, ports["admin"])
		es.expect(strings.HasPrefix(one(conf, "admin-listen"), "0.0.0.0:"), "admin-listen %q not reachable by the kubelet", one(conf, "admin-listen"))
		es.expect(ports["!device"] == 0 && ports["!admin"] == 0, "ports not TCP")
		for _, p := range []struct{ probe, path string }{
			{"livenessProbe", "/healthz"}, {"readinessProbe", "/readyz"}, {"startupProbe", "/healthz"},
		} {
			es.expect(getStr(ctr, p.probe, "httpGet", "path") == p.path, "%s path %q, want %s", p.probe, getStr(ctr, p.probe, "httpGet", "path"), p.path)
			es.expect(resolve(get(ctr, p.probe, "httpGet", "port")) == ap, "%s port %v is not the admin port %d", p.probe, get(ctr, p.probe, "httpGet", "port"), ap)
		}
		s.result(name("device/admin ports and /healthz, /readyz probes match nhgw.conf"), es)
	}

	// Drain deadline, preStop and the grace period
	{
		var es errs
		dt, err := time.ParseDuration(one(conf, "drain-timeout"))
		es.expect(err == nil, "drain-timeout %q: %v", one(conf, "drain-timeout"), err)
		grace, ok := getNum(pod, "spec", "terminationGracePeriodSeconds")
		es.expect(ok, "no terminationGracePeriodSeconds")
		pre := 0.0
		if cmd := getList(ctr, "lifecycle", "preStop", "exec", "command"); cmd != nil {
			es.expect(len(cmd) == 2 && cmd[0] == "/bin/sleep", "preStop %v, want [/bin/sleep N]", cmd)
			if len(cmd) == 2 {
				pre, err = strconv.ParseFloat(fmt.Sprint(cmd[1]), 64)
				es.expect(err == nil && pre > 0, "preStop sleep %v", cmd[1])
			}
		} else {
			es.add("no preStop hook")
		}
		// nhgw's master kills workers still alive 5 s after the drain deadline, then exits
		// (README.md "Drain"): all of it must fit in the grace period, which starts with preStop.
		es.expect(pre+dt.Seconds()+5 < grace, "preStop %.0fs + drain-timeout %.0fs + 5s must be < terminationGracePeriodSeconds %.0f", pre, dt.Seconds(), grace)
		rate, err := strconv.Atoi(one(conf, "drain-rate"))
		es.expect(err == nil && rate > 0, "drain-rate %q", one(conf, "drain-rate"))
		workers, _ := strconv.Atoi(one(conf, "workers"))
		if c.autoRate {
			// All expected sessions are closed before the deadline, and not all at once.
			capacity := rate * workers * int(dt.Seconds())
			es.expect(capacity >= c.sessions, "drain-rate %d x %d workers x %.0fs = %d < %d sessions", rate, workers, dt.Seconds(), capacity, c.sessions)
			es.expect(float64(c.sessions)/float64(rate*workers) >= dt.Seconds()/2, "drain too fast: %d sessions gone in %.1fs of %.0fs",
				c.sessions, float64(c.sessions)/float64(rate*workers), dt.Seconds())
		}
		su := getMap(dep, "spec", "strategy", "rollingUpdate")
		mu, _ := getNum(su, "maxUnavailable")
		es.expect(getStr(dep, "spec", "strategy", "type") == "RollingUpdate" && mu == 0, "rolling update must keep capacity (maxUnavailable 0): %v", su)
		s.result(name("drain deadline + preStop < terminationGracePeriodSeconds, rate drains the expected sessions"), es)
	}

	// Workers and resources
	{
		var es errs
		w, _ := strconv.Atoi(one(conf, "workers"))
		es.expect(w == c.workers, "workers = %d, want %d", w, c.workers)
		req := getMap(ctr, "resources", "requests")
		cpu, err := parseQuantity(getStr(req, "cpu"))
		es.expect(err == nil && cpu > 0, "cpu request %q", getStr(req, "cpu"))
		es.expect(w == int(math.Max(1, math.Ceil(cpu-1e-9))) || c.workers != int(math.Max(1, math.Ceil(cpu-1e-9))),
			"workers %d not ceil(cpu request %v)", w, cpu)
		mem, err := parseQuantity(getStr(req, "memory"))
		es.expect(err == nil, "memory request %q", getStr(req, "memory"))
		// bench/RESULTS.md: 4,060 B user space per idle session + ~5 KB kernel per socket.
		floor := float64(c.sessions) * (4060 + 5000)
		es.expect(mem >= floor, "memory request %.0f MiB below %d sessions x ~9 KB = %.0f MiB", mem/(1<<20), c.sessions, floor/(1<<20))
		lim, err := parseQuantity(getStr(ctr, "resources", "limits", "memory"))
		es.expect(err == nil && lim >= mem, "memory limit %q below the request", getStr(ctr, "resources", "limits", "memory"))
		s.result(name("workers sized from the CPU request, memory from bench/RESULTS.md"), es)
	}

	// Certificates: every path in nhgw.conf is a key of a Secret mounted read-only
	{
		var es errs
		mounts := map[string]map[string]interface{}{}
		for _, m := range getList(ctr, "volumeMounts") {
			mm, _ := m.(map[string]interface{})
			mounts[getStr(mm, "mountPath")] = mm
		}
		for _, k := range []string{"cert", "key", "device-ca", "crl", "ticket-key-file"} {
			for _, p := range conf[k] {
				dir, file := filepath.Dir(p), filepath.Base(p)
				m := mounts[dir]
				if m == nil {
					es.add("%s = %s: nothing mounted at %s", k, p, dir)
					continue
				}
				es.expect(get(m, "readOnly") == true, "%s mount %s not readOnly", k, dir)
				es.expect(getStr(m, "subPath") == "", "%s mount %s uses subPath (rotation would not reach it)", k, dir)
				vol := findVolume(pod, getStr(m, "name"))
				sec := getMap(vol, "secret")
				if sec == nil {
					es.add("%s: volume %s is not a Secret", k, getStr(m, "name"))
					continue
				}
				found := false
				for _, it := range getList(sec, "items") {
					found = found || getStr(it, "path") == file
				}
				es.expect(found, "%s: Secret %s has no item for %s", k, getStr(sec, "secretName"), file)
				mode, _ := getNum(sec, "defaultMode")
				es.expect(int(mode)&0o007 == 0, "%s: Secret %s is world-readable (defaultMode %o)", k, getStr(sec, "secretName"), int(mode))
			}
		}
		s.result(name("certificate paths in nhgw.conf come from read-only Secret mounts"), es)
	}

	// Security contexts (gateway, and the platform when present)
	checkSecurity := func(label string, pod, ctr map[string]interface{}) errs {
		var es errs
		psc := getMap(pod, "spec", "securityContext")
		csc := getMap(ctr, "securityContext")
		uid, _ := getNum(psc, "runAsUser")
		es.expect(get(psc, "runAsNonRoot") == true && uid > 0, "%s: pod not runAsNonRoot with a non-zero runAsUser: %v", label, psc)
		es.expect(get(csc, "readOnlyRootFilesystem") == true, "%s: readOnlyRootFilesystem not true", label)
		es.expect(get(csc, "allowPrivilegeEscalation") == false, "%s: allowPrivilegeEscalation not false", label)
		es.expect(get(csc, "privileged") != true, "%s: privileged", label)
		drop := getList(csc, "capabilities", "drop")
		es.expect(len(drop) == 1 && drop[0] == "ALL", "%s: capabilities.drop %v, want [ALL]", label, drop)
		es.expect(get(csc, "capabilities", "add") == nil, "%s: capabilities added", label)
		es.expect(getStr(psc, "seccompProfile", "type") == "RuntimeDefault", "%s: no RuntimeDefault seccomp", label)
		es.expect(get(pod, "spec", "automountServiceAccountToken") == false, "%s: service account token mounted", label)
		return es
	}
	{
		es := checkSecurity("gateway", pod, ctr)
		tmp := false
		for _, m := range getList(ctr, "volumeMounts") {
			if getStr(m, "mountPath") == "/tmp" {
				tmp = findVolume(pod, getStr(m, "name"))["emptyDir"] != nil
			}
		}
		es.expect(tmp, "gateway: /tmp is not an emptyDir (the root filesystem is read-only)")
		s.result(name("securityContext: non-root, read-only root, no capabilities"), es)
	}

	// Deployment selector, spread, rollout on config change
	{
		var es errs
		sel := strMap(getMap(dep, "spec", "selector", "matchLabels"))
		es.expect(selects(sel, podLabels), "Deployment selector %v does not match its pods %v", sel, podLabels)
		es.expect(sel["app.kubernetes.io/component"] == "gateway", "selector lacks the gateway component")
		tsc := getList(pod, "spec", "topologySpreadConstraints")
		es.expect(len(tsc) > 0, "no topologySpreadConstraints")
		for _, t := range tsc {
			es.expect(selects(strMap(getMap(t, "labelSelector", "matchLabels")), podLabels), "spread constraint %v does not select the pods", getStr(t, "topologyKey"))
			es.expect(getStr(t, "topologyKey") != "" && getStr(t, "whenUnsatisfiable") != "", "incomplete spread constraint %v", t)
		}
		sum := getStr(pod, "metadata", "annotations", "checksum/config")
		es.expect(regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(sum), "checksum/config annotation %q", sum)
		es.expect(getStr(pod, "spec", "serviceAccountName") != "", "no serviceAccountName")
		s.result(name("Deployment selector, topology spread and config checksum"), es)
	}

	// Services
	var adminSvc map[string]interface{}
	{
		var es errs
		lb := first("Service/gateway")
		adminSvc = first("Service/admin")
		var platformLabels map[string]string
		if p := first("Deployment/platform"); p != nil {
			platformLabels = strMap(getMap(p, "spec", "template", "metadata", "labels"))
		}
		if lb == nil || adminSvc == nil {
			es.add("services missing")
		} else {
			es.expect(getStr(lb, "spec", "type") == "LoadBalancer", "device Service type %q", getStr(lb, "spec", "type"))
			es.expect(getStr(lb, "spec", "externalTrafficPolicy") == "Local", "externalTrafficPolicy %q", getStr(lb, "spec", "externalTrafficPolicy"))
			lp := getList(lb, "spec", "ports")
			es.expect(len(lp) == 1 && getStr(lp, 0, "protocol") == "TCP", "device Service ports %v, want one TCP port", lp)
			lport, _ := portOf(one(conf, "listen"))
			es.expect(resolve(get(lp, 0, "targetPort")) == lport, "device Service targetPort %v is not the listen port %d", get(lp, 0, "targetPort"), lport)
			for _, svc := range []map[string]interface{}{lb, adminSvc} {
				sel := strMap(getMap(svc, "spec", "selector"))
				es.expect(selects(sel, podLabels), "Service %s selector %v does not match gateway pods", getStr(svc, "metadata", "name"), sel)
				es.expect(platformLabels == nil || !selects(sel, platformLabels), "Service %s also selects platform pods", getStr(svc, "metadata", "name"))
			}
			ap := getList(adminSvc, "spec", "ports")
			aport, _ := portOf(one(conf, "admin-listen"))
			es.expect(len(ap) == 1 && getStr(ap, 0, "name") == "admin" && resolve(get(ap, 0, "targetPort")) == aport,
				"admin Service ports %v do not reach admin-listen %d", ap, aport)
			es.expect(getStr(adminSvc, "spec", "type") != "LoadBalancer", "admin Service must not be exposed through a load balancer")
		}
		s.result(name("Services: LoadBalancer TCP passthrough with externalTrafficPolicy Local, selectors match gateway pods only"), es)
	}

	// ServiceMonitor
	if sm := first("ServiceMonitor/admin"); sm != nil && adminSvc != nil {
		var es errs
		sel := strMap(getMap(sm, "spec", "selector", "matchLabels"))
		adminLabels := strMap(getMap(adminSvc, "metadata", "labels"))
		es.expect(selects(sel, adminLabels), "ServiceMonitor selector %v does not match the admin Service %v", sel, adminLabels)
		if lb := first("Service/gateway"); lb != nil {
			es.expect(!selects(sel, strMap(getMap(lb, "metadata", "labels"))), "ServiceMonitor also selects the device Service")
		}
		eps := getList(sm, "spec", "endpoints")
		es.expect(len(eps) == 1 && getStr(eps, 0, "port") == "admin" && getStr(eps, 0, "path") == "/metrics", "endpoints %v", eps)
		jl := getStr(sm, "spec", "jobLabel")
		es.expect(jl != "" && adminLabels[jl] == c.job, "jobLabel %q gives job %q, want %q", jl, adminLabels[jl], c.job)
		ns := getList(sm, "spec", "namespaceSelector", "matchNames")
		es.expect(len(ns) == 1 && ns[0] == "fleet", "namespaceSelector %v", ns)
		s.result(name("ServiceMonitor scrapes the admin Service's /metrics with job "+c.job), es)
	}

	// PodDisruptionBudget
	if pdb := first("PodDisruptionBudget/gateway"); pdb != nil {
		var es errs
		sel := strMap(getMap(pdb, "spec", "selector", "matchLabels"))
		es.expect(selects(sel, podLabels), "PDB selector %v does not match the gateway pods", sel)
		_, hasMax := getNum(pdb, "spec", "maxUnavailable")
		_, hasMin := getNum(pdb, "spec", "minAvailable")
		es.expect(hasMax != hasMin, "PDB needs exactly one of maxUnavailable/minAvailable")
		s.result(name("PodDisruptionBudget selects the gateway pods"), es)
	}

	// HorizontalPodAutoscaler
	{
		var es errs
		_, hasReplicas := getNum(dep, "spec", "replicas")
		if hpa := first("HorizontalPodAutoscaler/gateway"); hpa != nil {
			ref := getMap(hpa, "spec", "scaleTargetRef")
			es.expect(getStr(ref, "kind") == "Deployment" && getStr(ref, "apiVersion") == "apps/v1" &&
				getStr(ref, "name") == getStr(dep, "metadata", "name"), "scaleTargetRef %v is not the gateway Deployment", ref)
			es.expect(!hasReplicas, "Deployment sets replicas while the HPA owns them")
			mn, _ := getNum(hpa, "spec", "minReplicas")
			mx, _ := getNum(hpa, "spec", "maxReplicas")
			es.expect(mn >= 1 && mx >= mn, "min/max replicas %v/%v", mn, mx)
			for _, m := range getList(hpa, "spec", "metrics") {
				if n := getStr(m, "pods", "metric", "name"); n != "" {
					es.expect(e.metrics.known(n), "HPA metric %s is not an nhgw metric", n)
				}
			}
			_, hasCPU := getNum(ctr, "resources", "requests", "cpu")
			es.expect(hasCPU || getStr(ctr, "resources", "requests", "cpu") != "", "HPA on CPU needs a CPU request")
		} else {
			es.expect(hasReplicas, "no HPA and no replicas")
		}
		s.result(name("HPA targets the gateway Deployment (or replicas are fixed)"), es)
	}

	// PrometheusRule = ops/prometheus/nhgw-alerts.yaml with the job selector
	if pr := first("PrometheusRule/alerts"); pr != nil {
		var es errs
		want := map[string]interface{}{}
		src := strings.ReplaceAll(string(e.alertsFile), `job="nhgw"`, fmt.Sprintf("job=%q", c.job))
		if err := yaml.Unmarshal([]byte(src), &want); err != nil {
			es.add("ops/prometheus/nhgw-alerts.yaml: %v", err)
		}
		es.expect(reflect.DeepEqual(getMap(pr, "spec"), want), "PrometheusRule spec differs from ops/prometheus/nhgw-alerts.yaml")
		text, _ := yaml.Marshal(getMap(pr, "spec"))
		es.expect(c.job == "nhgw" || !strings.Contains(string(text), `job="nhgw"`), "job selector not rewritten to %s", c.job)
		es.expect(strings.Contains(string(text), fmt.Sprintf("job=%q", c.job)), "rules do not select job %q", c.job)
		s.result(name("PrometheusRule carries ops/prometheus/nhgw-alerts.yaml"), es)
	}

	// Dashboard ConfigMap
	if d := first("ConfigMap/dashboard"); d != nil {
		var es errs
		want, _ := os.ReadFile(filepath.Join(e.repo, "ops/grafana/nhgw-dashboard.json"))
		got := getStr(d, "data", "nhgw-dashboard.json")
		es.expect(strings.TrimSpace(got) == strings.TrimSpace(string(want)), "dashboard ConfigMap differs from ops/grafana/nhgw-dashboard.json")
		es.expect(getStr(d, "metadata", "labels", "grafana_dashboard") == "1", "no grafana_dashboard label")
		s.result(name("Grafana dashboard ConfigMap carries ops/grafana/nhgw-dashboard.json"), es)
	}

	// Reference platform
	if p := first("Deployment/platform"); p != nil {
		ppod := getMap(p, "spec", "template")
		pctr := getMap(ppod, "spec", "containers", 0)
		es := checkSecurity("platform", ppod, pctr)
		sel := strMap(getMap(p, "spec", "selector", "matchLabels"))
		plabels := strMap(getMap(ppod, "metadata", "labels"))
		es.expect(selects(sel, plabels), "platform selector does not match its pods")
		es.expect(!selects(sel, podLabels), "platform selector matches gateway pods")
		cmd := getList(pctr, "command")
		es.expect(len(cmd) == 1 && cmd[0] == "/usr/local/bin/nhplatform", "platform command %v", cmd)
		args := map[string]string{}
		var flags []string
		a := getList(pctr, "args")
		for i := 0; i < len(a); i++ {
			f := fmt.Sprint(a[i])
			if !strings.HasPrefix(f, "--") {
				es.add("stray platform argument %q", f)
				continue
			}
			flags = append(flags, f)
			if i+1 < len(a) && !strings.HasPrefix(fmt.Sprint(a[i+1]), "--") {
				args[f] = fmt.Sprint(a[i+1])
				i++
			}
		}
		es.expect(args["--nats"] == strings.Split(one(conf, "nats-url"), ",")[0], "platform --nats %q vs gateway nats-url %q", args["--nats"], one(conf, "nats-url"))
		es.expect(args["--redis"] == one(conf, "redis") && args["--redis"] != "", "platform --redis %q vs gateway redis %q", args["--redis"], one(conf, "redis"))
		es.expect(args["--prefix"] == one(conf, "link-prefix"), "platform --prefix %q vs gateway link-prefix %q (the queue group is <prefix>.platform)", args["--prefix"], one(conf, "link-prefix"))
		r, _ := getNum(p, "spec", "replicas")
		es.expect(r >= 1, "platform replicas %v", r)
		if e.platformHlp != "" {
			for _, f := range flags {
				es.expect(strings.Contains(e.platformHlp, f+" ") || strings.Contains(e.platformHlp, f+"\n"), "build/nhplatform --help does not know %s", f)
			}
		}
		s.result(name("platform Deployment: same NATS, Redis and prefix as the gateway, options nhplatform knows"), es)
	}

	// The gateway itself accepts the rendered config
	checkWithGateway(s, e, name, conf)
}

func findVolume(pod map[string]interface{}, name string) map[string]interface{} {
	for _, v := range getList(pod, "spec", "volumes") {
		if getStr(v, "name") == name {
			m, _ := v.(map[string]interface{})
			return m
		}
	}
	return nil
}

// checkWithGateway runs `build/nhgw -t --config <rendered nhgw.conf>` and compares the effective
// configuration with what the manifests assume.
func checkWithGateway(s *suite, e *env, name func(string) string, conf map[string][]string) {
	what := name("build/nhgw -t accepts the rendered nhgw.conf with the same ports, workers and drain settings")
	if e.nhgwBin == "" {
		s.skip(what, "build/nhgw not built")
		return
	}
	for _, opt := range []string{"--admin-listen", "--drain-timeout", "--drain-rate"} {
		if !strings.Contains(e.nhgwHelp, opt+" ") {
			s.skip(what, "build/nhgw has no "+opt+" yet")
			return
		}
	}
	var es errs
	dir, _ := os.MkdirTemp("", "helmcheck")
	defer os.RemoveAll(dir)
	var b strings.Builder
	keys := make([]string, 0, len(conf))
	for k := range conf {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range conf[k] {
			fmt.Fprintf(&b, "%s = %s\n", k, v)
		}
	}
	f := filepath.Join(dir, "nhgw.conf")
	os.WriteFile(f, []byte(b.String()), 0o600)
	cmd := exec.Command(e.nhgwBin, "-t", "--config", f)
	cmd.Env = []string{"PATH=/usr/bin:/bin"} // no NHGW_* from the caller
	out, err := cmd.CombinedOutput()
	if err != nil && !strings.Contains(string(out), "listen") {
		es.add("nhgw -t: %v: %s", err, out)
	} else {
		eff, perr := parseConf(string(out))
		if perr != nil {
			es.add("nhgw -t output: %v", perr)
		}
		for _, k := range []string{"listen", "admin-listen", "workers", "drain-rate", "drain-timeout", "device-ca", "link", "nats-url", "redis", "link-prefix"} {
			if len(conf[k]) == 0 {
				continue
			}
			es.expect(sameValue(one(eff, k), one(conf, k)), "effective %s = %q, rendered %q", k, one(eff, k), one(conf, k))
		}
	}
	s.result(what, es)
}

// sameValue compares config values, durations by their length.
func sameValue(a, b string) bool {
	if a == b {
		return true
	}
	da, e1 := time.ParseDuration(a)
	db, e2 := time.ParseDuration(b)
	return e1 == nil && e2 == nil && da == db
}
