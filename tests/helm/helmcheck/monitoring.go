package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// The alerts issue 6 asks for, by name.
var requiredAlerts = []string{"NhgwDown", "NhgwSessionsDroppingSharply", "NhgwPlatformCallErrors", "NhgwHandshakeFailures"}

func checkAlertRules(s *suite, e *env) {
	var es errs
	doc := map[string]interface{}{}
	if err := yaml.UnmarshalStrict(e.alertsFile, &doc); err != nil {
		s.result("alert rules parse", []string{err.Error()})
		return
	}
	alerts := map[string]bool{}
	for _, g := range getList(doc, "groups") {
		for _, r := range getList(g, "rules") {
			name := getStr(r, "alert")
			if name == "" {
				es.add("group %s: a rule without alert name (recording rules belong elsewhere)", getStr(g, "name"))
				continue
			}
			es.expect(!alerts[name], "alert %s defined twice", name)
			alerts[name] = true
			expr := getStr(r, "expr")
			for _, m := range e.metrics.unknownMetrics(expr) {
				es.add("%s: unknown metric %s", name, m)
			}
			es.expect(strings.Contains(expr, `job="nhgw"`), "%s: expr does not select job=\"nhgw\" (the chart rewrites that selector)", name)
			sev := getStr(r, "labels", "severity")
			es.expect(sev == "critical" || sev == "warning" || sev == "info", "%s: severity %q", name, sev)
			es.expect(getStr(r, "annotations", "summary") != "" && getStr(r, "annotations", "description") != "", "%s: summary/description missing", name)
			es.expect(getStr(r, "for") != "", "%s: no `for` (fires on one bad scrape)", name)
		}
	}
	for _, a := range requiredAlerts {
		es.expect(alerts[a], "alert %s missing", a)
	}
	s.result(fmt.Sprintf("alert rules: %d alerts incl. %s; known metrics only", len(alerts), strings.Join(requiredAlerts, ", ")), es)
}

type panel struct {
	ID         float64                  `json:"id"`
	Type       string                   `json:"type"`
	Title      string                   `json:"title"`
	Datasource map[string]interface{}   `json:"datasource"`
	Targets    []map[string]interface{} `json:"targets"`
	Panels     []panel                  `json:"panels"`
}

type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []map[string]interface{} `json:"list"`
	} `json:"templating"`
}

func loadDashboard(file string) (*dashboard, []panel, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, err
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		return nil, nil, fmt.Errorf("%s: invalid JSON: %v", file, err)
	}
	var all []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			all = append(all, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return &d, all, nil
}

// Grafana's variables, replaced by values PromQL accepts so promtool can parse the queries.
var grafanaVars = strings.NewReplacer(
	"$__rate_interval", "5m", "${__rate_interval}", "5m", "$__interval", "1m", "$__range", "1h",
	"$job", "nhgw", "${job}", "nhgw", "$instance", ".+", "${instance}", ".+",
	"$call", ".+", "${call}", ".+",
)

func checkDashboard(s *suite, e *env, file string) {
	var es errs
	d, panels, err := loadDashboard(file)
	if err != nil {
		s.result("Grafana dashboard is valid JSON", []string{err.Error()})
		return
	}
	es.expect(d.Title != "" && d.UID != "", "title/uid missing")
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		vars[fmt.Sprint(v["name"])] = true
	}
	es.expect(vars["datasource"] && vars["job"], "templating needs datasource and job variables, has %v", vars)
	ids := map[float64]bool{}
	var exprs []string
	for _, p := range panels {
		es.expect(!ids[p.ID], "panel id %v used twice", p.ID)
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		es.expect(len(p.Targets) > 0, "panel %q has no queries", p.Title)
		es.expect(fmt.Sprint(p.Datasource["uid"]) == "${datasource}", "panel %q datasource %v is not ${datasource}", p.Title, p.Datasource)
		for _, t := range p.Targets {
			expr, _ := t["expr"].(string)
			es.expect(expr != "", "panel %q: target without expr", p.Title)
			es.expect(strings.Contains(expr, `job="$job"`) || strings.Contains(expr, `job=~"$job"`), "panel %q: %q does not select the job", p.Title, expr)
			for _, m := range e.metrics.unknownMetrics(expr) {
				es.add("panel %q: unknown metric %s", p.Title, m)
			}
			exprs = append(exprs, expr)
		}
	}
	all := strings.Join(exprs, "\n")
	// What issue 6 asks the dashboard to show.
	for _, want := range []struct{ what, re string }{
		{"sessions", `nhgw_sessions\b`},
		{"handshake rate and failures", `nhgw_tls_handshakes_total`},
		{"handshake latency", `nhgw_tls_handshake_duration_seconds_bucket`},
		{"upgrades by status", `sum by \(status\)\s*\(\s*rate\(nhgw_upgrades_total`},
		{"platform call rate by call", `sum by \(call\)\s*\(\s*rate\(nhgw_platform_calls_total`},
		{"platform call errors", `nhgw_platform_calls_total\{[^}]*result=~"[^"]*timeout`},
		{"platform latency p99", `histogram_quantile\(0\.99,[^\n]*nhgw_platform_call_duration_seconds_bucket`},
		{"NATS connectivity", `nhgw_nats_connected`},
		{"Redis connectivity", `nhgw_redis_connected`},
		{"worker restarts", `nhgw_worker_restarts_total`},
		{"drain state", `nhgw_draining`},
		{"certificate reloads", `nhgw_config_reloads_total`},
	} {
		es.expect(regexp.MustCompile(want.re).MatchString(all), "no panel shows %s (/%s/)", want.what, want.re)
	}
	s.result(fmt.Sprintf("Grafana dashboard: valid JSON, %d panels, all topics, known metrics only", len(panels)), es)
}

// dashboardExprRules writes the dashboard's queries as recording rules (Grafana variables
// substituted), so `promtool check rules` parses every one of them.
func dashboardExprRules(file string, w io.Writer) error {
	_, panels, err := loadDashboard(file)
	if err != nil {
		return err
	}
	var rules []map[string]interface{}
	for _, p := range panels {
		for i, t := range p.Targets {
			expr, _ := t["expr"].(string)
			if expr == "" {
				continue
			}
			rules = append(rules, map[string]interface{}{
				"record": fmt.Sprintf("dashboard:panel_%d_%d", int(p.ID), i),
				"expr":   grafanaVars.Replace(expr),
			})
		}
	}
	if len(rules) == 0 {
		return fmt.Errorf("no queries in %s", file)
	}
	b, err := yaml.Marshal(map[string]interface{}{"groups": []interface{}{
		map[string]interface{}{"name": "nhgw-dashboard-queries", "rules": rules},
	}})
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// checkReadmeMetrics: README.md's metrics table and tests/helm/metric-names.txt name the same
// metrics (skipped while the README has none).
func checkReadmeMetrics(s *suite, e *env) {
	what := "README.md's metrics and tests/helm/metric-names.txt name the same set"
	b, err := os.ReadFile(filepath.Join(e.repo, "README.md"))
	if err != nil {
		s.skip(what, "no README.md")
		return
	}
	inReadme := map[string]bool{}
	for _, n := range metricRef.FindAllString(string(b), -1) {
		inReadme[n] = true
	}
	if len(inReadme) == 0 {
		s.skip(what, "README.md has no metrics table yet")
		return
	}
	var es errs
	var missing, extra []string
	for n := range e.metrics {
		if !inReadme[n] {
			missing = append(missing, n)
		}
	}
	for n := range inReadme {
		if !e.metrics.known(n) {
			extra = append(extra, n)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	es.expect(len(missing) == 0, "not in README.md: %v", missing)
	es.expect(len(extra) == 0, "in README.md but not in metric-names.txt: %v", extra)
	s.result(what, es)
}
