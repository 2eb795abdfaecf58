// The subset of Helm 3's template engine that helm/nhgw uses, so the chart can be checked on
// machines without Helm: text/template with sprig's functions (minus env/expandenv, as Helm),
// Helm's own include, tpl, required, toYaml/fromYaml/toJson/fromJson, lookup (always empty),
// .Values (values.yaml coalesced with override files and --set), .Release, .Chart, .Capabilities,
// .Template and .Files.Get; "missingkey=zero" with "<no value>" blanked, as `helm template` does.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"sigs.k8s.io/yaml"
)

type renderOptions struct {
	chartDir    string
	releaseName string
	namespace   string
	valueFiles  []string
	sets        []string // key.path=value
}

// A rendered chart: manifests by template name (e.g. "nhgw/templates/service.yaml"), NOTES.txt
// separately, and the values the templates saw.
type rendered struct {
	manifests map[string]string
	notes     string
	values    map[string]interface{}
}

// files is .Files: the chart's non-template files by path relative to the chart.
type files map[string][]byte

func (f files) Get(name string) string      { return string(f[name]) }
func (f files) GetBytes(name string) []byte { return f[name] }
func (f files) Lines(name string) []string {
	s := strings.TrimRight(string(f[name]), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

type apiVersions []string

func (a apiVersions) Has(v string) bool {
	for _, x := range a {
		if x == v {
			return true
		}
	}
	return false
}

type kubeVersion struct{ Version, Major, Minor, GitVersion string }

type capabilities struct {
	KubeVersion kubeVersion
	APIVersions apiVersions
}

func readYAMLMap(file string) (map[string]interface{}, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	m := map[string]interface{}{}
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	if m == nil {
		m = map[string]interface{}{}
	}
	return m, nil
}

// coalesce merges src over dst as Helm does for user values: maps merge key by key, anything
// else replaces, and a null removes the key.
func coalesce(dst, src map[string]interface{}) map[string]interface{} {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
			continue
		}
		sm, sok := v.(map[string]interface{})
		dm, dok := dst[k].(map[string]interface{})
		if sok && dok {
			dst[k] = coalesce(dm, sm)
		} else {
			dst[k] = v
		}
	}
	return dst
}

// setValue applies one --set a.b.c=v: true/false become bools, integers int64, null removes,
// anything else is a string (Helm's strvals, without list indexes).
func setValue(vals map[string]interface{}, expr string) error {
	eq := strings.IndexByte(expr, '=')
	if eq <= 0 {
		return fmt.Errorf("--set %q: expected key=value", expr)
	}
	keys := strings.Split(expr[:eq], ".")
	raw := expr[eq+1:]
	var v interface{} = raw
	switch {
	case raw == "true":
		v = true
	case raw == "false":
		v = false
	case raw == "null":
		v = nil
	default:
		if n, err := strconv.ParseInt(raw, 10, 64); err == nil {
			v = n
		}
	}
	m := vals
	for _, k := range keys[:len(keys)-1] {
		next, ok := m[k].(map[string]interface{})
		if !ok {
			next = map[string]interface{}{}
			m[k] = next
		}
		m = next
	}
	last := keys[len(keys)-1]
	if v == nil {
		delete(m, last)
	} else {
		m[last] = v
	}
	return nil
}

func toYAML(v interface{}) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(b), "\n")
}

func fromYAML(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromYAMLArray(s string) []interface{} {
	var a []interface{}
	if err := yaml.Unmarshal([]byte(s), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

func toJSON(v interface{}) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func required(msg string, v interface{}) (interface{}, error) {
	if v == nil {
		return v, fmt.Errorf("%s", msg)
	}
	if s, ok := v.(string); ok && s == "" {
		return v, fmt.Errorf("%s", msg)
	}
	return v, nil
}

func render(o renderOptions) (*rendered, error) {
	chartMeta, err := readYAMLMap(filepath.Join(o.chartDir, "Chart.yaml"))
	if err != nil {
		return nil, err
	}
	chartName, _ := chartMeta["name"].(string)
	if chartName == "" {
		return nil, fmt.Errorf("Chart.yaml has no name")
	}
	vals, err := readYAMLMap(filepath.Join(o.chartDir, "values.yaml"))
	if err != nil {
		return nil, err
	}
	for _, f := range o.valueFiles {
		over, err := readYAMLMap(f)
		if err != nil {
			return nil, err
		}
		vals = coalesce(vals, over)
	}
	for _, s := range o.sets {
		if err := setValue(vals, s); err != nil {
			return nil, err
		}
	}

	// Templates and other files of the chart.
	tmplSrc := map[string]string{}
	chartFiles := files{}
	err = filepath.Walk(o.chartDir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(o.chartDir, p)
		rel = filepath.ToSlash(rel)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasPrefix(rel, "templates/") {
			tmplSrc[path.Join(chartName, rel)] = string(b)
		} else {
			chartFiles[rel] = b
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	var t *template.Template
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = fromYAML
	funcs["fromYamlArray"] = fromYAMLArray
	funcs["toJson"] = toJSON
	funcs["fromJson"] = fromJSON
	funcs["required"] = required
	funcs["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var b strings.Builder
		err := t.ExecuteTemplate(&b, name, data)
		return b.String(), err
	}
	funcs["tpl"] = func(src string, data interface{}) (string, error) {
		c, err := t.Clone()
		if err != nil {
			return "", err
		}
		if _, err := c.New("tpl").Parse(src); err != nil {
			return "", err
		}
		var b strings.Builder
		err = c.ExecuteTemplate(&b, "tpl", data)
		return strings.ReplaceAll(b.String(), "<no value>", ""), err
	}

	names := make([]string, 0, len(tmplSrc))
	for n := range tmplSrc {
		names = append(names, n)
	}
	sort.Strings(names)
	t = template.New("chart").Funcs(funcs).Option("missingkey=zero")
	for _, n := range names {
		if _, err := t.New(n).Parse(tmplSrc[n]); err != nil {
			return nil, err
		}
	}

	str := func(k string) string { s, _ := chartMeta[k].(string); return s }
	top := map[string]interface{}{
		"Values": vals,
		"Release": map[string]interface{}{
			"Name": o.releaseName, "Namespace": o.namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Chart": map[string]interface{}{
			"Name": chartName, "Version": str("version"), "AppVersion": str("appVersion"),
			"Description": str("description"), "Type": str("type"), "KubeVersion": str("kubeVersion"),
		},
		"Capabilities": capabilities{
			KubeVersion: kubeVersion{"v1.29.0", "1", "29", "v1.29.0"},
			APIVersions: apiVersions{"v1", "apps/v1", "policy/v1", "autoscaling/v2", "monitoring.coreos.com/v1"},
		},
		"Files": chartFiles,
	}

	out := &rendered{manifests: map[string]string{}, values: vals}
	for _, n := range names {
		base := path.Base(n)
		if strings.HasPrefix(base, "_") {
			continue
		}
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{"Name": n, "BasePath": path.Join(chartName, "templates")}
		var b bytes.Buffer
		if err := t.ExecuteTemplate(&b, n, data); err != nil {
			return nil, fmt.Errorf("execution error in %s: %v", n, err)
		}
		s := strings.ReplaceAll(b.String(), "<no value>", "")
		if base == "NOTES.txt" {
			out.notes = s
		} else {
			out.manifests[n] = s
		}
	}
	return out, nil
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

// objects splits the manifests into YAML documents (skipping empty ones) and parses each.
type object struct {
	source string
	text   string
	m      map[string]interface{}
}

func (r *rendered) objects() ([]object, error) {
	var objs []object
	names := make([]string, 0, len(r.manifests))
	for n := range r.manifests {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, doc := range docSep.Split(r.manifests[n], -1) {
			empty := true
			for _, l := range strings.Split(doc, "\n") {
				l = strings.TrimSpace(l)
				if l != "" && !strings.HasPrefix(l, "#") {
					empty = false
					break
				}
			}
			if empty {
				continue
			}
			m := map[string]interface{}{}
			if err := yaml.UnmarshalStrict([]byte(doc), &m); err != nil {
				return nil, fmt.Errorf("%s: invalid YAML: %v\n%s", n, err, doc)
			}
			objs = append(objs, object{source: n, text: doc, m: m})
		}
	}
	return objs, nil
}

// stream prints the manifests the way `helm template` does.
func (r *rendered) stream() string {
	var b strings.Builder
	names := make([]string, 0, len(r.manifests))
	for n := range r.manifests {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if strings.TrimSpace(r.manifests[n]) == "" {
			continue
		}
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", n, strings.TrimSpace(r.manifests[n]))
	}
	return b.String()
}
